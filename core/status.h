// Status / StatusOr: errors a user can cause (config, data, shapes, sizes). They carry a
// message that names what the user wrote and what was expected. Broken invariants use
// AUTOSP_CHECK (core/check.h) instead.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "core/check.h"

namespace autosp {

enum class StatusCode { ok, invalid_argument, not_found, io_error, failed_precondition, internal };

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode c, std::string msg) : code_(c), msg_(std::move(msg)) {}
  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return msg_; }
  // Prefix context ("while reading config x.json: ...").
  Status with_context(const std::string& ctx) const {
    return ok() ? *this : Status(code_, ctx + ": " + msg_);
  }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string msg_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::invalid_argument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::not_found, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::io_error, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::failed_precondition, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::internal, std::move(m)}; }

template <class T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status s) : v_(std::move(s)) { AUTOSP_CHECK(!std::get<Status>(v_).ok()) << "StatusOr from OK status"; }
  StatusOr(T v) : v_(std::move(v)) {}
  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & {
    AUTOSP_CHECK(ok()) << std::get<Status>(v_).message();
    return std::get<T>(v_);
  }
  const T& value() const& {
    AUTOSP_CHECK(ok()) << std::get<Status>(v_).message();
    return std::get<T>(v_);
  }
  T&& value() && {
    AUTOSP_CHECK(ok()) << std::get<Status>(v_).message();
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace autosp

#define AUTOSP_CONCAT_INNER(a, b) a##b
#define AUTOSP_CONCAT(a, b) AUTOSP_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::autosp::Status _st = (expr);            \
    if (!_st.ok()) return _st;                \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(AUTOSP_CONCAT(_so_, __LINE__), lhs, expr)
