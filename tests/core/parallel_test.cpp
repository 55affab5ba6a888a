// The thread pool behind core::parallel_for: every index exactly once, results bit-identical to a
// serial loop at any thread count, exceptions carried to the caller, nested and concurrent calls,
// and a stalled worker's share taken by the caller (the property that keeps decode going when a
// core is taken by another process). No test depends on timing.
#include "core/parallel.h"
#include "core/gemm.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace gptq::core {
namespace {

// Restores the thread count the test process started with.
class ParallelTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = num_threads(); }
  void TearDown() override { set_num_threads(saved_); }
  int saved_ = 1;
};

const int kThreadCounts[] = {1, 2, 3, 4, 8};

TEST_F(ParallelTest, ParallelForCoversEveryIndexOnce) {
  for (int nt : kThreadCounts) {
    set_num_threads(nt);
    for (int64_t n : {0, 1, 2, 3, 5, 31, 32, 33, 1000, 65537}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      std::atomic<int64_t> calls{0};
      parallel_for(n, [&](int64_t b, int64_t e) {
        ASSERT_LE(0, b);
        ASSERT_LT(b, e);  // no empty ranges
        ASSERT_LE(e, n);
        calls.fetch_add(1);
        for (int64_t i = b; i < e; ++i) seen[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(seen[i].load(), 1) << "nt " << nt << " n " << n << " i " << i;
      // At most kChunksPerThread ranges per thread, and at least one per thread when n allows.
      EXPECT_LE(calls.load(), std::max<int64_t>(1, nt * detail::kChunksPerThread));
      if (n > 0) {
        EXPECT_GE(calls.load(), std::min<int64_t>(n, nt));
      }
    }
  }
}

TEST_F(ParallelTest, ParallelForDynamicRangesAreGrainAligned) {
  for (int nt : kThreadCounts) {
    set_num_threads(nt);
    for (int64_t n : {0, 1, 7, 100, 1001}) {
      for (int64_t grain : {1, 3, 16, 5000}) {
        const int64_t chunks = (n + grain - 1) / grain;
        std::vector<std::atomic<int>> seen(static_cast<size_t>(chunks));
        parallel_for_dynamic(n, grain, [&](int64_t b, int64_t e) {
          // Serial runs pass the whole range at once; pooled runs pass one chunk per call.
          ASSERT_EQ(b % grain, 0);
          ASSERT_TRUE(e == n || e % grain == 0);
          for (int64_t c = b / grain; c < (e + grain - 1) / grain; ++c) seen[c].fetch_add(1);
        });
        for (int64_t c = 0; c < chunks; ++c)
          ASSERT_EQ(seen[c].load(), 1) << nt << " " << n << " " << grain;
      }
    }
  }
}

// A float computation whose per-output order of additions is fixed: the parallel result must equal
// the serial one bit for bit.
std::vector<float> row_sums(int64_t rows, int64_t cols, const std::vector<float>& a,
                            bool parallel) {
  std::vector<float> out(static_cast<size_t>(rows));
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float s = 0;
      for (int64_t c = 0; c < cols; ++c) s += a[r * cols + c] * std::sin(static_cast<float>(c));
      out[r] = s;
    }
  };
  if (parallel) {
    parallel_for(rows, body);
  } else {
    body(0, rows);
  }
  return out;
}

TEST_F(ParallelTest, ResultsEqualSerialBitForBit) {
  const int64_t rows = 777, cols = 129;
  std::mt19937 rng(7);
  std::normal_distribution<float> d;
  std::vector<float> a(static_cast<size_t>(rows * cols));
  for (auto& v : a) v = d(rng);
  const auto serial = row_sums(rows, cols, a, false);
  for (int nt : kThreadCounts) {
    set_num_threads(nt);
    for (int rep = 0; rep < 5; ++rep) {
      const auto par = row_sums(rows, cols, a, true);
      ASSERT_EQ(0, std::memcmp(par.data(), serial.data(), serial.size() * sizeof(float))) << nt;
    }
  }
}

TEST_F(ParallelTest, ManyCallsInARow) {
  // Thousands of back-to-back small calls, as a decode step makes: every call complete, none lost
  // between a worker's spin and its sleep.
  set_num_threads(3);
  std::vector<int64_t> out(64);
  for (int call = 0; call < 20000; ++call) {
    parallel_for_dynamic(64, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = call + i;
    });
    for (int64_t i = 0; i < 64; i += 21) ASSERT_EQ(out[i], call + i);
  }
}

TEST_F(ParallelTest, ExceptionReachesTheCallerAndThePoolStaysUsable) {
  for (int nt : {2, 4}) {
    set_num_threads(nt);
    EXPECT_THROW(parallel_for(1000,
                              [&](int64_t b, int64_t e) {
                                if (b <= 500 && 500 < e) throw std::runtime_error("chunk failed");
                              }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};
    parallel_for(1000, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum.load(), 999 * 1000 / 2);
  }
}

TEST_F(ParallelTest, NestedCallsRunInline) {
  set_num_threads(4);
  std::vector<std::atomic<int>> seen(50 * 40);
  parallel_for(50, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      parallel_for(40, [&](int64_t b2, int64_t e2) {
        for (int64_t j = b2; j < e2; ++j) seen[i * 40 + j].fetch_add(1);
      });
    }
  });
  for (auto& s : seen) ASSERT_EQ(s.load(), 1);
}

TEST_F(ParallelTest, ConcurrentCallersGetCorrectResults) {
  // Several application threads (as Python threads releasing the GIL do) call at once: one uses
  // the pool, the others run inline; all results are right.
  set_num_threads(3);
  const int64_t rows = 300, cols = 64;
  std::vector<float> a(static_cast<size_t>(rows * cols));
  std::iota(a.begin(), a.end(), 0.0f);
  const auto serial = row_sums(rows, cols, a, false);
  std::atomic<int> bad{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) {
        if (row_sums(rows, cols, a, true) != serial) bad.fetch_add(1);
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(ParallelTest, ThreadCountChangesBetweenCalls) {
  for (int nt : {4, 2, 8, 1, 3, 2}) {
    set_num_threads(nt);
    EXPECT_EQ(num_threads(), nt);
    std::atomic<int64_t> sum{0};
    parallel_for(10000, [&](int64_t b, int64_t e) {
      int64_t s = 0;
      for (int64_t i = b; i < e; ++i) s += i;
      sum += s;
    });
    EXPECT_EQ(sum.load(), int64_t{9999} * 10000 / 2) << nt;
  }
}

TEST_F(ParallelTest, CallerTakesTheShareOfAStalledWorker) {
  // The first chunk a worker claims stalls until every other chunk is done, as a worker that lost
  // its core would. Under an even split (an OpenMP static schedule) that worker would own half the
  // chunks and this would never finish; here the caller runs all the others. The caller waits for
  // a worker to have claimed its chunk before doing any work, so the stall really happens.
  set_num_threads(2);
  const int64_t chunks = 64;
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> worker_started{false};
  std::atomic<int64_t> done{0}, by_caller{0}, by_worker{0};
  parallel_for_dynamic(chunks, 1, [&](int64_t, int64_t) {
    if (std::this_thread::get_id() == caller) {
      while (!worker_started.load()) std::this_thread::yield();
      by_caller.fetch_add(1);
      done.fetch_add(1);
      return;
    }
    if (!worker_started.exchange(true)) {
      while (done.load() < chunks - 1) std::this_thread::yield();
    }
    by_worker.fetch_add(1);
    done.fetch_add(1);
  });
  EXPECT_EQ(done.load(), chunks);
  EXPECT_EQ(by_worker.load(), 1);
  EXPECT_EQ(by_caller.load(), chunks - 1);
}

TEST_F(ParallelTest, WorksInAForkedChild) {
  set_num_threads(3);
  std::atomic<int64_t> warm{0};
  parallel_for(100, [&](int64_t b, int64_t e) { warm += e - b; });  // the parent's workers exist
  ASSERT_EQ(warm.load(), 100);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int64_t> sum{0};
    for (int rep = 0; rep < 100; ++rep) {
      parallel_for(1000, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i;
      });
    }
    _exit(sum.load() == int64_t{100} * 999 * 1000 / 2 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace gptq::core

extern "C" int openblas_get_num_threads(void);

namespace gptq::core {
namespace {

// ctest runs each test in a process of its own, so here num_threads() has not been called yet:
// its first call (the pool's, inside the scope) must not put OpenBLAS's threads back.
TEST(ScopedSingleThreadedBlas, HoldsWhenTheThreadCountIsFirstReadInsideIt) {
  {
    const ScopedSingleThreadedBlas one;
    EXPECT_GE(num_threads(), 1);
    EXPECT_EQ(openblas_get_num_threads(), 1);
  }
  EXPECT_EQ(openblas_get_num_threads(), num_threads());
}

}  // namespace
}  // namespace gptq::core
