// Element types of tensors and IR values.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace autosp {

enum class DType : uint8_t { f32, bf16, i32, i64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

inline std::optional<DType> parse_dtype(std::string_view s) {
  for (DType t : {DType::f32, DType::bf16, DType::i32, DType::i64})
    if (dtype_name(t) == s) return t;
  return std::nullopt;
}

constexpr bool is_float(DType t) { return t == DType::f32 || t == DType::bf16; }

}  // namespace autosp
