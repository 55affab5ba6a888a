// The library's thread pool. Set once from -t; every parallel loop in the library splits work over
// output elements only, so results do not depend on the thread count or on which thread ran which
// chunk.
//
// Why our own pool and not OpenMP: an OpenMP parallel region ends at a barrier that every thread
// of the team must reach, and libgomp's threads spin between regions. When another process takes
// one of two cores, the descheduled thread holds the other at every barrier (a decode step has
// hundreds), and the spinning threads compete with the thread that has work: decode fell from
// ~38 to ~1.2 tok/s on two cores. Here the work of a call is cut into chunks that the calling
// thread and the workers claim from a shared counter; the caller waits only for chunks that a
// worker has started, never for a worker that has not arrived, so a descheduled worker's share is
// taken by the threads that run. Workers spin for a few microseconds after a call (the next one
// usually follows at once during decode), yielding the core, then sleep on a futex.
#pragma once

#include <cstdint>
#include <type_traits>

namespace gptq::core {

// n <= 0 picks $GPTQ_NUM_THREADS when set, else the number of CPUs the process may use. The
// count includes the calling thread: n - 1 workers are started on the next parallel call.
void set_num_threads(int n);
int num_threads();

namespace detail {
using ChunkFn = void (*)(void* ctx, int64_t chunk);
// Calls fn(ctx, c) once for every c in [0, chunks), on the calling thread and the pool's workers.
// Returns when all calls have returned; rethrows the first exception one of them threw (the
// chunks not yet started are then skipped). Runs everything on the calling thread when it is
// itself inside a call (nested loops), when the pool is busy with another thread's call, or when
// num_threads() is 1.
void run_chunks(int64_t chunks, ChunkFn fn, void* ctx);

// Chunks parallel_for cuts a loop into, per thread: more than one, so that a thread that loses
// its core leaves work the others can take.
inline constexpr int64_t kChunksPerThread = 4;
}  // namespace detail

// Runs fn(begin, end) over [0, n) in contiguous ranges (kChunksPerThread per thread, fewer for
// small n) that the threads take in turn. fn may be called any number of times, with ranges that
// cover [0, n) exactly once.
template <typename Fn>
void parallel_for(int64_t n, Fn&& fn) {
  if (n <= 0) return;
  const int nt = num_threads();
  if (nt <= 1 || n == 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t chunks = n < nt * detail::kChunksPerThread ? n : nt * detail::kChunksPerThread;
  struct Ctx {
    std::remove_reference_t<Fn>* fn;
    int64_t n, chunks;
  } ctx{&fn, n, chunks};
  detail::run_chunks(
      chunks,
      [](void* p, int64_t c) {
        auto* x = static_cast<Ctx*>(p);
        (*x->fn)(x->n * c / x->chunks, x->n * (c + 1) / x->chunks);
      },
      &ctx);
}

// Runs fn(begin, end) over [0, n) in chunks of `grain` (the last may be shorter) that the
// threads take in turn as they finish their previous one. For loops whose chunks are independent
// (each writes its own outputs), so results do not depend on which thread ran a chunk.
template <typename Fn>
void parallel_for_dynamic(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const int64_t chunks = (n + grain - 1) / grain;
  if (num_threads() <= 1 || chunks <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  struct Ctx {
    std::remove_reference_t<Fn>* fn;
    int64_t n, grain;
  } ctx{&fn, n, grain};
  detail::run_chunks(
      chunks,
      [](void* p, int64_t c) {
        auto* x = static_cast<Ctx*>(p);
        const int64_t begin = c * x->grain;
        (*x->fn)(begin, begin + x->grain < x->n ? begin + x->grain : x->n);
      },
      &ctx);
}

}  // namespace gptq::core
