// The AMX GEMM of fp32 dense linears (src/backend/cpu/dense_amx.cpp), reached through
// backend::dense_linear at the amx level for m >= 32 rows, against a naive double product.
//
// Error allowed per output: 3e-5 * sum_k |w x| (x and w split into two bf16 parts each, three
// products of the four, fp32 sums; the worst seen is printed as a property), the same bound as
// the quantized AMX GEMM's (qlinear_test.cpp). Shapes cover N not a multiple of 16 (a partial
// column tile), an odd number of 16-column tiles, K not a multiple of 32 (a partial step) and
// K past one 256-input chunk; weights that are exact bf16 values (one part) and general fp32
// ones (two parts); rows at every edge of the 32-row blocks and 256-row chunks; 1, 2 and 4
// threads bit for bit; with and without a scratch arena.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/buffer.h"
#include "backend/cpu/dense_kernels.h"
#include "backend/cpu/isa.h"
#include "backend/linear.h"
#include "core/parallel.h"

namespace gptq::backend {
namespace {

class AmxScope {
 public:
  AmxScope() : saved_(active_isa()) { set_isa_for_testing(Isa::kAmx); }
  ~AmxScope() { set_isa_for_testing(saved_); }

 private:
  Isa saved_;
};

std::vector<float> random_values(size_t count, uint32_t seed, bool bf16_exact) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) {
    x = d(rng);
    if (bf16_exact) {
      uint32_t b;
      std::memcpy(&b, &x, sizeof b);
      b &= 0xffff0000u;
      std::memcpy(&x, &b, sizeof b);
    }
  }
  return v;
}

struct Case {
  int64_t n, k;
  bool bf16_exact;
};

TEST(DenseAmx, MatchesDoubleReferenceOnEveryEdge) {
  if (!cpu_supports(Isa::kAmx)) GTEST_SKIP() << "CPU lacks amx: the AMX dense GEMM is not tested here";
  AmxScope scope;
  const int saved = core::num_threads();
  double worst = 0;
  for (const Case c : {Case{100, 70, false}, Case{48, 640, true}, Case{48, 640, false}, Case{160, 96, true},
                       Case{32, 2048, false}}) {
    const std::vector<float> w = random_values(static_cast<size_t>(c.n * c.k), static_cast<uint32_t>(c.n + c.k), c.bf16_exact);
    std::vector<float> bias(static_cast<size_t>(c.n));
    for (int64_t j = 0; j < c.n; ++j) bias[j] = 0.01f * static_cast<float>(j);
    const LinearPtr lin = dense_linear(Device::kCpu, c.n, c.k, w, bias);
    for (int64_t m : {32, 33, 47, 64, 255, 256, 257, 300}) {
      const std::vector<float> x = random_values(static_cast<size_t>(m * c.k), static_cast<uint32_t>(m * 7 + c.k), false);
      std::vector<float> first;
      for (int threads : {1, 2, 4}) {
        core::set_num_threads(threads);
        const std::string what = "n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
                                 (c.bf16_exact ? " bf16-exact" : " fp32") + " m=" + std::to_string(m) +
                                 " threads=" + std::to_string(threads);
        std::vector<float> y(static_cast<size_t>(m * c.n), std::nanf(""));
        if (threads == 2) {
          Arena arena;
          arena.reserve(lin->scratch_bytes(m));
          ASSERT_GT(arena.capacity(), 0u) << what;
          lin->forward(x.data(), m, y.data(), &arena);
          EXPECT_EQ(arena.used(), 0u) << what;
        } else {
          lin->forward(x.data(), m, y.data(), nullptr);
        }
        if (!first.empty()) {
          EXPECT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << what;
          continue;
        }
        first = y;
        int bad = 0;
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t j = 0; j < c.n; ++j) {
            double ref = bias[j], mag = std::fabs(bias[j]);
            for (int64_t i = 0; i < c.k; ++i) {
              const double t = double{w[j * c.k + i]} * x[r * c.k + i];
              ref += t;
              mag += std::fabs(t);
            }
            const double err = std::fabs(y[r * c.n + j] - ref);
            worst = std::max(worst, err / mag);
            if (!(err <= 3e-5 * mag) && bad++ < 5) {
              ADD_FAILURE() << what << ": y[" << r << ", " << j << "] = " << y[r * c.n + j] << ", expected " << ref;
            }
          }
        }
        EXPECT_EQ(bad, 0) << what;
      }
    }
  }
  core::set_num_threads(saved);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", worst);
  ::testing::Test::RecordProperty("worst_relative_error", buf);
  std::printf("worst relative error %s\n", buf);
}

// Below kAmxDenseMinRows the sgemm path runs: bit for bit OpenBLAS's result at every level.
TEST(DenseAmx, FewRowsKeepTheSgemmPath) {
  if (!cpu_supports(Isa::kAmx)) GTEST_SKIP() << "CPU lacks amx";
  const int64_t n = 64, k = 96, m = detail::kAmxDenseMinRows - 1;
  const std::vector<float> w = random_values(static_cast<size_t>(n * k), 3, false);
  const std::vector<float> x = random_values(static_cast<size_t>(m * k), 4, false);
  const LinearPtr lin = dense_linear(Device::kCpu, n, k, w, {});
  std::vector<float> a(static_cast<size_t>(m * n)), b(a.size());
  AmxScope scope;  // restores the ISA at the end
  lin->forward(x.data(), m, a.data(), nullptr);
  set_isa_for_testing(Isa::kAvx2);
  lin->forward(x.data(), m, b.data(), nullptr);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

}  // namespace
}  // namespace gptq::backend
