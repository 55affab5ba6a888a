#include "core/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

extern "C" void openblas_set_num_threads(int);

namespace gptq::core {
namespace {

std::atomic<int> g_threads{0};

// ---- waiting on a 32-bit word ----

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
#ifdef __linux__
  // Returns at once when the word no longer holds `expected` (no lost wake-up), on a wake-up, or
  // spuriously; callers re-check in a loop.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
#else
  word.wait(expected);
#endif
}

void futex_wake_all(std::atomic<uint32_t>& word) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
#else
  word.notify_all();
#endif
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How long a thread spins before it sleeps. Between the parallel loops of a decode step the
// calling thread runs for a few microseconds (norms, activation rounding), so a short spin
// catches the next loop without a sleep and a wake-up (each costs the woken thread 5-50 us);
// spinning longer only takes the core from other processes. After the first microseconds the
// spinning thread yields its core on every round, so a runnable process beside it is not held
// off.
constexpr auto kSpin = std::chrono::microseconds(50);
constexpr int kPauseRounds = 64;  // pause-only rounds before the first clock read and yield

// Spins, then sleeps, until `word` no longer holds `value`. `sleepers` counts the threads asleep
// on the word so that the thread that changes it issues a wake-up only when one is needed.
void wait_while_equal(std::atomic<uint32_t>& word, uint32_t value,
                      std::atomic<uint32_t>& sleepers) {
  for (int i = 0; i < kPauseRounds; ++i) {
    if (word.load(std::memory_order_acquire) != value) return;
    cpu_relax();
  }
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  while (std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 16; ++i) {
      if (word.load(std::memory_order_acquire) != value) return;
      cpu_relax();
    }
    sched_yield();
  }
  while (word.load(std::memory_order_seq_cst) == value) {
    // seq_cst pairs with the writer's store then load of `sleepers`: either it sees this thread
    // counted, or this thread's check below sees its new value.
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (word.load(std::memory_order_seq_cst) == value) futex_wait(word, value);
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
}

// Set while a thread runs chunks of a call, so a parallel loop inside a chunk runs inline.
thread_local bool t_in_call = false;

// One call at a time. `state_` = epoch * 2 + open: a call opens with a new epoch, a worker takes
// part only while the state still says open with the epoch it woke for, and the caller closes it
// once every chunk is claimed, then waits for the workers counted in `active_`. A worker counts
// itself before it checks the state and the caller closes before it reads the count (both
// seq_cst), so a worker that arrives late either is waited for or sees the call closed and
// leaves without touching it.
class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool;  // never destroyed: workers may outlive static destructors
    return *pool;
  }

  void run(int nt, int64_t chunks, detail::ChunkFn fn, void* ctx) {
    std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      run_inline(chunks, fn, ctx);
      return;
    }
    resize(nt - 1);
    fn_ = fn;
    ctx_ = ctx;
    chunks_ = chunks;
    next_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    const uint32_t open = state_.load(std::memory_order_relaxed) + 1u;  // closed is even: odd
    state_.store(open, std::memory_order_seq_cst);
    if (state_sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(state_);

    t_in_call = true;
    work();
    t_in_call = false;

    state_.store(open + 1, std::memory_order_seq_cst);  // closed, same epoch
    if (active_.load(std::memory_order_seq_cst) != 0) wait_until_zero(active_, active_sleepers_);
    if (error_) std::rethrow_exception(error_);
  }

  // A forked child has none of the parent's threads: forget them (their memory is the parent's
  // copy) and start afresh on the next call.
  void after_fork_in_child() {
    for (auto& t : threads_) t.release();  // NOLINT: deliberately leaked, there is no thread
    threads_.clear();
    new (&run_mu_) std::mutex;
    state_.store(0);
    active_.store(0);
    state_sleepers_.store(0);
    active_sleepers_.store(0);
    stop_.store(false);
  }

 private:
  Pool() {
    pthread_atfork(nullptr, nullptr, [] { Pool::instance().after_fork_in_child(); });
  }

  static void run_inline(int64_t chunks, detail::ChunkFn fn, void* ctx) {
    for (int64_t c = 0; c < chunks; ++c) fn(ctx, c);
  }

  // Claims and runs chunks until none is left.
  void work() {
    for (;;) {
      const int64_t c = next_.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks_) return;
      try {
        fn_(ctx_, c);
      } catch (...) {
        std::lock_guard<std::mutex> g(error_mu_);
        if (!failed_.exchange(true)) error_ = std::current_exception();
        next_.store(chunks_, std::memory_order_relaxed);  // skip what is not started
      }
    }
  }

  static void wait_until_zero(std::atomic<uint32_t>& word, std::atomic<uint32_t>& sleepers) {
    for (;;) {
      const uint32_t v = word.load(std::memory_order_seq_cst);
      if (v == 0) return;
      wait_while_equal(word, v, sleepers);
    }
  }

  void worker_loop() {
    // Stop is set before the state changes, so it is checked after each read of the state this
    // worker will wait on: a worker never sleeps on the value that told it to stop (nor on the
    // one a resize stored before this thread got to run).
    uint32_t seen = state_.load(std::memory_order_acquire);
    for (;;) {
      if (stop_.load(std::memory_order_acquire)) return;
      if (seen & 1u) {  // open: take part unless it closed meanwhile
        active_.fetch_add(1, std::memory_order_seq_cst);
        if (state_.load(std::memory_order_seq_cst) == seen) {
          t_in_call = true;
          work();
          t_in_call = false;
        }
        if (active_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
            active_sleepers_.load(std::memory_order_seq_cst) > 0) {
          futex_wake_all(active_);
        }
      }
      wait_while_equal(state_, seen, state_sleepers_);
      seen = state_.load(std::memory_order_acquire);
    }
  }

  // Called with run_mu_ held, so no call is in flight.
  void resize(int workers) {
    if (static_cast<int>(threads_.size()) == workers) return;
    if (!threads_.empty()) {
      stop_.store(true, std::memory_order_seq_cst);
      state_.store(state_.load() + 2u, std::memory_order_seq_cst);  // new epoch, closed
      futex_wake_all(state_);
      for (auto& t : threads_) t->join();
      threads_.clear();
      stop_.store(false, std::memory_order_seq_cst);
    }
    for (int i = 0; i < workers; ++i)
      threads_.push_back(std::make_unique<std::thread>([this] { worker_loop(); }));
  }

  std::mutex run_mu_;
  std::vector<std::unique_ptr<std::thread>> threads_;
  detail::ChunkFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t chunks_ = 0;
  std::mutex error_mu_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> stop_{false};
  // Each on its own cache line: workers poll state_, claim from next_ and count in active_.
  alignas(64) std::atomic<uint32_t> state_{0};
  alignas(64) std::atomic<int64_t> next_{0};
  alignas(64) std::atomic<uint32_t> active_{0};
  alignas(64) std::atomic<uint32_t> state_sleepers_{0};
  std::atomic<uint32_t> active_sleepers_{0};
};

// The CPUs this process may run on (taskset, cgroup cpusets), else all online CPUs.
int usable_cpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

void set_num_threads(int n) {
  if (n <= 0) {
    // GPTQ_NUM_THREADS sets the default (the test scripts run tests side by side with 1 each).
    const char* env = std::getenv("GPTQ_NUM_THREADS");
    n = env ? std::atoi(env) : 0;
  }
  if (n <= 0) n = usable_cpus();
  g_threads = n;
  openblas_set_num_threads(n);
}

int num_threads() {
  int n = g_threads;
  if (n <= 0) {
    set_num_threads(0);
    n = g_threads;
  }
  return n;
}

namespace detail {

void run_chunks(int64_t chunks, ChunkFn fn, void* ctx) {
  if (chunks <= 0) return;
  const int nt = num_threads();
  if (nt <= 1 || chunks == 1 || t_in_call) {
    for (int64_t c = 0; c < chunks; ++c) fn(ctx, c);
    return;
  }
  Pool::instance().run(nt, chunks, fn, ctx);
}

}  // namespace detail
}  // namespace gptq::core
