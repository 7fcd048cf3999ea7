// Helpers shared by the kernel tests.
#pragma once
#include <omp.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/rng.h"

namespace autosp::testing {

// Sets the OpenMP team size for one scope; restores it even when a REQUIRE throws.
struct OmpThreads {
  int saved = omp_get_max_threads();
  explicit OmpThreads(int n) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved); }
};

// n floats uniform in [lo, hi) from std::mt19937(seed).
inline std::vector<float> random_vec(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// n standard normals: element i is Rng(seed, stream).normal(i).
inline std::vector<float> normal_vec(int64_t n, uint64_t seed, uint64_t stream) {
  autosp::Rng rng(seed, stream);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = rng.normal(i);
  return x;
}

}  // namespace autosp::testing
