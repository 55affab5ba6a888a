// Thread count shared by our OpenMP loops and OpenBLAS. Set once from -t; every parallel loop
// in the library splits work over output elements only, so results do not depend on it.
#pragma once

#include <omp.h>

#include <cstdint>

namespace gptq::core {

// n <= 0 picks $GPTQ_NUM_THREADS when set, else the number of CPUs the process may use.
void set_num_threads(int n);
int num_threads();

// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread.
template <typename Fn>
void parallel_for(int64_t n, Fn&& fn) {
  const int nt = num_threads();
  if (nt <= 1 || n <= 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t begin = n * t / T, end = n * (t + 1) / T;
    if (begin < end) fn(begin, end);
  }
}

}  // namespace gptq::core
