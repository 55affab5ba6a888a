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

// Runs fn(begin, end) over [0, n) in chunks of `grain` (the last may be shorter) that the
// threads take in turn as they finish their previous one. For loops whose chunks are independent
// (each writes its own outputs), so results do not depend on which thread ran a chunk. A thread
// that loses its core for a while (another process, an interrupt) then costs the others a chunk,
// not the rest of an even split: with static halves on two cores, every stall of one core made
// the other spin at the barrier.
template <typename Fn>
void parallel_for_dynamic(int64_t n, int64_t grain, Fn&& fn) {
  const int nt = num_threads();
  if (grain < 1) grain = 1;
  const int64_t chunks = (n + grain - 1) / grain;
  if (nt <= 1 || chunks <= 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * grain;
    fn(begin, begin + grain < n ? begin + grain : n);
  }
}

}  // namespace gptq::core
