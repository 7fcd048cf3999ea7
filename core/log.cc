#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace autosp {

static std::atomic<int> g_verbosity{0};
static std::atomic<int> g_rank{-1};

int log_verbosity() { return g_verbosity.load(std::memory_order_relaxed); }
void set_log_verbosity(int v) { g_verbosity.store(v); }
void set_log_rank(int rank) { g_rank.store(rank); }

detail::LogLine::~LogLine() {
  std::string s = os_.str();
  int r = g_rank.load();
  // One fprintf per line so lines from ranks/threads do not interleave mid-line.
  if (r >= 0)
    std::fprintf(stderr, "[autosp r%d v%d] %s\n", r, level_, s.c_str());
  else
    std::fprintf(stderr, "[autosp v%d] %s\n", level_, s.c_str());
}

}  // namespace autosp
