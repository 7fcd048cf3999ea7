// The closed set of IR operations. The X-macro is the single list: the Op enum, the name
// table and the registry (ir/registry.cc) are generated from it, and a static_assert there
// ties the registry to it.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#define AUTOSP_OPS(X)                                                                  \
  /* forward ops a model uses */                                                       \
  X(embedding) X(matmul) X(add) X(sub) X(mul) X(div) X(scale) X(rms_norm)              \
  X(layer_norm) X(rope) X(silu) X(gelu) X(swiglu) X(reshape) X(permute) X(attention)  \
  X(cross_entropy) X(sum) X(mean) X(broadcast) X(cast)                                 \
  /* backward ops emitted by VJP rules */                                              \
  X(embedding_backward) X(rms_norm_backward) X(layer_norm_backward) X(silu_backward)   \
  X(gelu_backward) X(swiglu_backward) X(attention_backward) X(cross_entropy_backward)  \
  /* collectives over a mesh group, inserted by the SP compiler */                     \
  X(all_to_all) X(all_gather) X(reduce_scatter) X(all_reduce) X(send_recv)             \
  X(ring_attention) X(ring_attention_backward)                                          \
  /* flat parameter buckets (ZeRO) */                                                  \
  X(pack) X(unpack)                                                                    \
  /* sequence chunking (chunked MLP) */                                                \
  X(split) X(concat)                                                                    \
  /* activations parked in host memory between forward and backward */               \
  X(offload) X(fetch)

namespace autosp::ir {

enum class Op : uint8_t {
#define AUTOSP_OP_ENUM(name) name,
  AUTOSP_OPS(AUTOSP_OP_ENUM)
#undef AUTOSP_OP_ENUM
};

#define AUTOSP_OP_COUNT(name) +1
inline constexpr int kNumOps = 0 AUTOSP_OPS(AUTOSP_OP_COUNT);
#undef AUTOSP_OP_COUNT

std::string_view op_name(Op op);
// The collectives a communication stream runs (not ring attention, which is compute with its
// exchange inside).
bool is_collective(Op op);
// Copies between device and host memory (offload, fetch): the communication stream runs them
// like collectives, but over the host link, with no mesh.
bool is_transfer(Op op);
std::optional<Op> op_from_name(std::string_view name);

}  // namespace autosp::ir
