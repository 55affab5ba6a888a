// The 16-bit dense kernels (src/backend/cpu/dense.h) on every ISA against an independent
// reference: a naive product in double of the widened weights. Weights are random fp32 values
// rounded to bf16 / fp16 (with some fp16 subnormals), x uniform in [-1, 1).
//
// Tolerance: every output y[i] must be within 1e-5 * sum_j |W[i,j] x[j]| of the double reference.
// Both kernels accumulate in fp32; the longest chain of additions in these cases is k / 8 = 125
// terms (scalar: eight partial sums), so the worst case of recursive summation is about
// 125 * 2^-24 = 7.5e-6 of that sum, and the typical error is far below it.

#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/dense.h"
#include "backend/cpu/isa.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "gptq/error.h"

namespace gptq::backend {
namespace {

constexpr double kRelTol = 1e-5;

class Dense16IsaScope {
 public:
  explicit Dense16IsaScope(Isa isa) : saved_(active_isa()) { set_isa_for_testing(isa); }
  ~Dense16IsaScope() { set_isa_for_testing(saved_); }

 private:
  Isa saved_;
};

class ThreadScope {
 public:
  explicit ThreadScope(int n) : saved_(core::num_threads()) { core::set_num_threads(n); }
  ~ThreadScope() { core::set_num_threads(saved_); }

 private:
  int saved_;
};

float widen(DType t, uint16_t v) {
  return t == DType::kBF16 ? core::bf16_to_fp32(v) : core::fp16_to_fp32(v);
}

std::vector<uint16_t> random_weights(DType t, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<uint16_t> w(static_cast<size_t>(n * k));
  for (size_t i = 0; i < w.size(); ++i) {
    float v = d(rng);
    // Every 13th weight tiny: fp16 subnormals (|v| < 6.1e-5), which vcvtph2ps must widen exactly.
    if (i % 13 == 5) v *= 1e-5f;
    w[i] = t == DType::kBF16 ? core::fp32_to_bf16(v) : core::fp32_to_fp16(v);
  }
  return w;
}

std::vector<float> random_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  return x;
}

// y[r, i] in double, and sum_j |W[i,j] x[r,j]| for the tolerance.
void naive(DType t, const std::vector<uint16_t>& w, int64_t n, int64_t k, const std::vector<float>& x,
           int64_t m, std::vector<double>* y, std::vector<double>* mag) {
  y->assign(static_cast<size_t>(m * n), 0.0);
  mag->assign(static_cast<size_t>(m * n), 0.0);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0, a = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double p = static_cast<double>(widen(t, w[i * k + j])) * x[r * k + j];
        s += p;
        a += std::abs(p);
      }
      (*y)[r * n + i] = s;
      (*mag)[r * n + i] = a;
    }
  }
}

void expect_near_ref(const std::vector<float>& y, const std::vector<double>& ref,
                     const std::vector<double>& mag, const std::string& what) {
  ASSERT_EQ(y.size(), ref.size());
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double err = std::abs(y[i] - ref[i]);
    const double rel = mag[i] > 0 ? err / mag[i] : err;
    worst = std::max(worst, rel);
    if (!(err <= kRelTol * mag[i] + 1e-30)) ++bad;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << y.size()
                    << " outputs out of tolerance; worst error / sum|w x| = " << worst;
}

struct Shape2 {
  int64_t n, k;
};

using Params = std::tuple<Isa, DType, Shape2>;

class Dense16VsReference : public ::testing::TestWithParam<Params> {};

// GEMV (m = 1) on one and two threads: within tolerance of the double reference, and the same
// bits on both thread counts (rows are split, never the sum of one row).
TEST_P(Dense16VsReference, GemvMatchesNaiveOnOneAndTwoThreads) {
  const auto [isa, dtype, s] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << "CPU lacks " << isa_name(isa);
  Dense16IsaScope scope(isa);
  const auto w = random_weights(dtype, s.n, s.k, 7);
  const auto x = random_x(s.k, 8);
  std::vector<double> ref, mag;
  naive(dtype, w, s.n, s.k, x, 1, &ref, &mag);
  std::vector<float> y1(static_cast<size_t>(s.n), NAN), y2(static_cast<size_t>(s.n), NAN);
  {
    ThreadScope ts(1);
    dense16_gemv(dtype, w.data(), s.n, s.k, x.data(), y1.data());
  }
  {
    ThreadScope ts(2);
    dense16_gemv(dtype, w.data(), s.n, s.k, x.data(), y2.data());
  }
  expect_near_ref(y1, ref, mag, "1 thread");
  for (int64_t i = 0; i < s.n; ++i) {
    ASSERT_EQ(std::memcmp(&y1[i], &y2[i], sizeof(float)), 0)
        << "row " << i << ": 1 thread " << y1[i] << ", 2 threads " << y2[i];
  }
}

// GEMM (m > 1, the panel + sgemm path): within tolerance of the double reference.
TEST_P(Dense16VsReference, GemmMatchesNaive) {
  const auto [isa, dtype, s] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << "CPU lacks " << isa_name(isa);
  Dense16IsaScope scope(isa);
  const auto w = random_weights(dtype, s.n, s.k, 9);
  for (int64_t m : {2, 5}) {
    const auto x = random_x(m * s.k, 10);
    std::vector<double> ref, mag;
    naive(dtype, w, s.n, s.k, x, m, &ref, &mag);
    for (int threads : {1, 2}) {
      ThreadScope ts(threads);
      std::vector<float> y(static_cast<size_t>(m * s.n), NAN);
      dense16_gemm(dtype, w.data(), s.n, s.k, x.data(), m, y.data());
      expect_near_ref(y, ref, mag, "m = " + std::to_string(m) + ", threads " + std::to_string(threads));
    }
  }
}

// n and k around the kernels' steps (4 rows per pass, 8 and 16 inputs per step, 16-row chunks,
// 256-row panels), including n = 1 and k = 1.
const Shape2 kShapes[] = {{1, 1},   {1, 7},    {3, 1},     {1, 1000}, {5, 9},   {4, 16},
                          {7, 24},  {17, 15},  {33, 31},   {64, 64},  {130, 257}, {300, 40},
                          {257, 100}, {600, 33}, {1000, 17}};

INSTANTIATE_TEST_SUITE_P(
    All, Dense16VsReference,
    ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2),
                       ::testing::Values(DType::kBF16, DType::kF16), ::testing::ValuesIn(kShapes)),
    [](const ::testing::TestParamInfo<Params>& i) {
      const Shape2 s = std::get<2>(i.param);
      return std::string(isa_name(std::get<0>(i.param))) + "_" +
             std::string(dtype_name(std::get<1>(i.param))) + "_n" + std::to_string(s.n) + "_k" +
             std::to_string(s.k);
    });

// The AVX2 kernel against the scalar one directly (both within kRelTol of the exact sum, so
// within 2 * kRelTol of each other).
class Dense16Avx2VsScalar : public ::testing::TestWithParam<std::tuple<DType, Shape2>> {};

TEST_P(Dense16Avx2VsScalar, GemvAgrees) {
  const auto [dtype, s] = GetParam();
  if (!cpu_supports(Isa::kAvx2)) GTEST_SKIP() << "CPU lacks avx2";
  const auto w = random_weights(dtype, s.n, s.k, 11);
  const auto x = random_x(s.k, 12);
  std::vector<double> ref, mag;
  naive(dtype, w, s.n, s.k, x, 1, &ref, &mag);
  std::vector<float> ys(static_cast<size_t>(s.n)), ya(static_cast<size_t>(s.n));
  {
    Dense16IsaScope scope(Isa::kScalar);
    dense16_gemv(dtype, w.data(), s.n, s.k, x.data(), ys.data());
  }
  {
    Dense16IsaScope scope(Isa::kAvx2);
    dense16_gemv(dtype, w.data(), s.n, s.k, x.data(), ya.data());
  }
  for (int64_t i = 0; i < s.n; ++i) {
    EXPECT_LE(std::abs(static_cast<double>(ya[i]) - ys[i]), 2 * kRelTol * mag[i] + 1e-30)
        << "row " << i << ": avx2 " << ya[i] << ", scalar " << ys[i];
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, Dense16Avx2VsScalar,
    ::testing::Combine(::testing::Values(DType::kBF16, DType::kF16), ::testing::ValuesIn(kShapes)),
    [](const ::testing::TestParamInfo<std::tuple<DType, Shape2>>& i) {
      const Shape2 s = std::get<1>(i.param);
      return std::string(dtype_name(std::get<0>(i.param))) + "_n" + std::to_string(s.n) + "_k" +
             std::to_string(s.k);
    });

// The panel path against sgemm on the whole widened W: within 2 * kRelTol of sum |w x| (both are
// fp32 sums). Usually they agree bit for bit, but OpenBLAS 0.3.21 picks another kernel for some
// small panels (n = 320, k = 128, m = 12 here: the last panel of 64 rows), so exact equality is
// not its contract; the count of differing outputs is recorded.
TEST(Dense16, GemmMatchesSgemmOnWidenedWeights) {
  struct Case {
    int64_t n, k, m;
  };
  for (const Case c : {Case{700, 96, 9}, Case{320, 128, 12}, Case{2048, 256, 64}}) {
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      const auto w = random_weights(dtype, c.n, c.k, 13);
      const auto x = random_x(c.m * c.k, 14);
      std::vector<float> wf(w.size());
      for (size_t i = 0; i < w.size(); ++i) wf[i] = widen(dtype, w[i]);
      std::vector<float> want(static_cast<size_t>(c.m * c.n)), got(static_cast<size_t>(c.m * c.n));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(c.m),
                  static_cast<int>(c.n), static_cast<int>(c.k), 1.0f, x.data(), static_cast<int>(c.k),
                  wf.data(), static_cast<int>(c.k), 0.0f, want.data(), static_cast<int>(c.n));
      dense16_gemm(dtype, w.data(), c.n, c.k, x.data(), c.m, got.data());
      std::vector<double> ref, mag;
      naive(dtype, w, c.n, c.k, x, c.m, &ref, &mag);
      int differing = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        differing += got[i] != want[i];
        ASSERT_LE(std::abs(static_cast<double>(got[i]) - want[i]), 2 * kRelTol * mag[i] + 1e-30)
            << dtype_name(dtype) << " n " << c.n << " output " << i;
      }
      ::testing::Test::RecordProperty(
          "differing_" + std::string(dtype_name(dtype)) + "_n" + std::to_string(c.n),
          std::to_string(differing));
    }
  }
}

// widen16 on every 16-bit pattern, on every ISA, against core's conversions: exact (NaNs only need
// to stay NaN: vcvtph2ps quiets a signalling NaN).
TEST(Dense16, WidenEveryBitPattern) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (!cpu_supports(isa)) {
      std::printf("note: %s not tested: this CPU lacks it\n", std::string(isa_name(isa)).c_str());
      continue;
    }
    Dense16IsaScope scope(isa);
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      // An odd count and offset, so the vector loop's tail and unaligned loads are covered.
      std::vector<float> out(all.size() - 1);
      widen16(dtype, all.data() + 1, static_cast<int64_t>(out.size()), out.data());
      for (size_t i = 0; i < out.size(); ++i) {
        const float want = widen(dtype, all[i + 1]);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(out[i])) << isa_name(isa) << " " << dtype_name(dtype) << " " << i + 1;
        } else {
          ASSERT_EQ(std::memcmp(&out[i], &want, 4), 0)
              << isa_name(isa) << " " << dtype_name(dtype) << " bits " << i + 1 << ": got " << out[i]
              << ", want " << want;
        }
      }
    }
  }
}

TEST(Dense16, RefusesOtherDtypesAndNegativeSizes) {
  const uint16_t w[4] = {0, 0, 0, 0};
  const float x[2] = {1, 2};
  float y[2];
  try {
    dense16_gemv(DType::kF32, w, 2, 2, x, y);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kArgument);
    EXPECT_NE(std::string(e.what()).find("F32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dense16_gemm(DType::kI8, w, 2, 2, x, 2, y), Error);
  EXPECT_THROW(dense16_gemv(DType::kBF16, w, -1, 2, x, y), Error);
}

TEST(Dense16, EmptyShapes) {
  const uint16_t w[1] = {0};
  const float x[4] = {1, 2, 3, 4};
  float y[4] = {5, 5, 5, 5};
  dense16_gemm(DType::kBF16, w, 2, 0, x, 2, y);  // k = 0: y = 0
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i], 0.0f);
  dense16_gemv(DType::kF16, w, 0, 4, x, y);  // n = 0: nothing written, nothing read
}

// The fp32 dense product (one row: the pool's GEMV; several: sgemm) and the bias add against a
// naive double product, same tolerance as above.
TEST(DenseF32, GemmAndBiasMatchNaive) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t m : {1, 3, 17}) {
    const int64_t n = 37, k = 70;
    std::vector<float> w(n * k), x(m * k), b(n), y(m * n, 123.0f);
    for (auto& v : w) v = u(rng);
    for (auto& v : x) v = u(rng);
    for (auto& v : b) v = u(rng);
    dense_gemm(w.data(), n, k, x.data(), m, y.data());
    add_bias(y.data(), b.data(), m, n);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double ref = b[j], mag = std::fabs(b[j]);
        for (int64_t c = 0; c < k; ++c) {
          ref += double{w[j * k + c]} * x[i * k + c];
          mag += std::fabs(double{w[j * k + c]} * x[i * k + c]);
        }
        EXPECT_NEAR(y[i * n + j], ref, kRelTol * mag) << "m " << m << " row " << i << " col " << j;
      }
    }
  }
  float y[4] = {5, 5, 5, 5};
  const float x[4] = {1, 2, 3, 4};
  dense_gemm(nullptr, 2, 0, x, 2, y);  // k = 0: y = 0
  for (float v : y) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(dense_gemm(nullptr, -1, 2, x, 1, y), Error);
}

}  // namespace
}  // namespace gptq::backend
