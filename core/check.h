// AUTOSP_CHECK(cond) << "message": invariant checks. A failure is a bug in autosp, not in
// the user's input, so it aborts with file:line instead of returning a Status.
#pragma once
#include <sstream>
#include <string>

namespace autosp::detail {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond);
  [[noreturn]] ~CheckFailure();
  template <class T>
  CheckFailure& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  std::ostringstream os_;
};

// Lets `AUTOSP_CHECK(c) << x;` parse as a statement with a void branch.
struct Voidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace autosp::detail

#define AUTOSP_CHECK(cond)                                 \
  (cond) ? (void)0                                         \
         : ::autosp::detail::Voidify() &                   \
               ::autosp::detail::CheckFailure(__FILE__, __LINE__, #cond)

#define AUTOSP_CHECK_EQ(a, b) AUTOSP_CHECK((a) == (b)) << #a " = " << (a) << ", " #b " = " << (b) << " "
