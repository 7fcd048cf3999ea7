// Logging with a global verbosity. AUTOSP_LOG(1) << "..." prints when verbosity >= 1.
// Level 0 is always printed (warnings a user must see); passes log their decisions at 1.
#pragma once
#include <sstream>
#include <string>

namespace autosp {

int log_verbosity();
void set_log_verbosity(int v);
// Rank printed in the prefix; set once the communicator exists.
void set_log_rank(int rank);

namespace detail {
class LogLine {
 public:
  explicit LogLine(int level) : level_(level) {}
  ~LogLine();
  template <class T>
  LogLine& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  int level_;
  std::ostringstream os_;
};
// Lets AUTOSP_LOG be an expression, safe inside an unbraced if/else.
struct LogVoidify {
  void operator&(const LogLine&) {}
};
}  // namespace detail

}  // namespace autosp

#define AUTOSP_LOG(level)                                     \
  (level) > ::autosp::log_verbosity() ? (void)0                \
                                      : ::autosp::detail::LogVoidify() & ::autosp::detail::LogLine(level)
