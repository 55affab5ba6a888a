// HessianAccumulator: value, batching independence, thread independence, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/isa.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/quantizer.h"
#include "quant/test_util.h"

using gptq::Error;
using gptq::ErrorKind;
using gptq::backend::Isa;
using gptq::quant::CalibDtype;
using gptq::quant::HessianAccumulator;

namespace {

// Against a double-precision sum: fp32 sums of 512 products, so 1e-5 relative to the diagonal
// scale (sqrt(H_ii H_jj)) is a loose bound.
TEST(Hessian, MatchesDoubleSum) {
  const int64_t k = 300, tokens = 1300;
  const auto x = qtest::correlated_tokens(tokens, k, 0.5, 1);
  HessianAccumulator acc(k);
  acc.add(x.data(), tokens);
  EXPECT_EQ(acc.tokens(), tokens);
  const auto h = acc.hessian();
  const auto ref = qtest::hessian_of(x, tokens, k);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const double tol = 1e-5 * std::sqrt(ref[i * k + i] * ref[j * k + j]);
      ASSERT_NEAR(h[i * k + j], ref[i * k + j], tol) << i << ", " << j;
      ASSERT_EQ(h[i * k + j], h[j * k + i]);
    }
  }
}

TEST(Hessian, SameBitsHoweverTheTokensAreSplit) {
  const int64_t k = 96, tokens = 1300;
  const auto x = qtest::correlated_tokens(tokens, k, 0.5, 2);
  HessianAccumulator one(k), many(k);
  one.add(x.data(), tokens);
  const int64_t pieces[] = {1, 7, 600, 0, 100, 592};
  int64_t at = 0;
  for (int64_t p : pieces) {
    many.add(x.data() + at * k, p);
    at += p;
  }
  ASSERT_EQ(at, tokens);
  EXPECT_EQ(one.hessian(), many.hessian());
  EXPECT_EQ(one.tokens(), many.tokens());
}

TEST(Hessian, SameBitsForAnyThreadCount) {
  const int64_t k = 512, tokens = 1100;
  const auto x = qtest::correlated_tokens(tokens, k, 0.5, 3);
  const int before = gptq::core::num_threads();
  gptq::core::set_num_threads(1);
  HessianAccumulator a(k);
  a.add(x.data(), tokens);
  const auto ha = a.hessian();
  gptq::core::set_num_threads(2);
  HessianAccumulator b(k);
  b.add(x.data(), tokens);
  const auto hb = b.hessian();
  gptq::core::set_num_threads(before);
  EXPECT_EQ(ha, hb);
}

// The fp32 path on AMX tiles (hessian_amx.cpp): x split in two bf16 parts, three products of
// four. K = 300 (not a multiple of the 32-feature blocks), an odd token count (a half pair in the
// buffered tail), against the double sum with the fp32 path's bound (worst seen 3.6e-6 of the
// diagonal scale), bit for bit on 1 and 3 threads.
TEST(Hessian, AmxTilesMatchDoubleSumOnAnyThreadCount) {
  if (!gptq::backend::cpu_supports(Isa::kAmx)) GTEST_SKIP() << "CPU lacks amx";
  const Isa saved_isa = gptq::backend::active_isa();
  gptq::backend::set_isa_for_testing(Isa::kAmx);
  const int saved = gptq::core::num_threads();
  const int64_t k = 300, tokens = 1301;
  const auto x = qtest::correlated_tokens(tokens, k, 0.5, 11);
  const auto ref = qtest::hessian_of(x, tokens, k);
  std::vector<double> first;
  double worst = 0;
  for (int threads : {1, 3}) {
    gptq::core::set_num_threads(threads);
    HessianAccumulator acc(k);
    acc.add(x.data(), 700);
    acc.add(x.data() + 700 * k, tokens - 700);
    const auto h = acc.hessian();
    if (!first.empty()) {
      EXPECT_EQ(h, first);
      continue;
    }
    first = h;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        const double scale = std::sqrt(ref[i * k + i] * ref[j * k + j]);
        worst = std::max(worst, std::fabs(h[i * k + j] - ref[i * k + j]) / scale);
        ASSERT_NEAR(h[i * k + j], ref[i * k + j], 1e-5 * scale) << i << ", " << j;
        ASSERT_EQ(h[i * k + j], h[j * k + i]);
      }
    }
  }
  gptq::core::set_num_threads(saved);
  gptq::backend::set_isa_for_testing(saved_isa);
  std::printf("amx Hessian: worst error %.3g of the diagonal scale\n", worst);
}

TEST(Hessian, EmptyIsZeroAndBadInputIsRefused) {
  HessianAccumulator acc(8);
  EXPECT_EQ(acc.hessian(), std::vector<double>(64, 0.0));
  acc.add(nullptr, 0);
  EXPECT_EQ(acc.tokens(), 0);
  std::vector<float> x(16, 1.0f);
  x[11] = NAN;
  try {
    acc.add(x.data(), 2);
    ADD_FAILURE() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNumeric);
    EXPECT_NE(std::string(e.what()).find("token 1, feature 3"), std::string::npos) << e.what();
  }
  EXPECT_EQ(acc.tokens(), 0);
  x[11] = 1.0f;
  acc.add(x.data(), 2);
  // Two tokens of all ones: H = 2/2 * 2 * ones = 2 everywhere.
  EXPECT_EQ(acc.hessian(), std::vector<double>(64, 2.0));
  EXPECT_THROW(HessianAccumulator(0), Error);
}

// ---- the bf16 path ----

// bf16 rounding written independently of hessian.cpp: the two bf16 neighbours of v (truncation
// and one ulp up in magnitude), the nearer one, ties to the even mantissa. Denormals -> 0.
float round_bf16(float v) {
  if (std::fabs(v) < 1.17549435e-38f) return std::copysign(0.0f, v);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint32_t down = u & 0xFFFF0000u, up = down + 0x10000u;
  float fd, fu;
  std::memcpy(&fd, &down, 4);
  std::memcpy(&fu, &up, 4);
  const double dd = std::fabs(double(v) - fd), du = std::fabs(double(fu) - v);
  if (dd < du) return fd;
  if (du < dd) return fu;
  return ((down >> 16) & 1u) ? fu : fd;
}

class IsaScope {
 public:
  explicit IsaScope(Isa isa) : saved_(gptq::backend::active_isa()) { gptq::backend::set_isa_for_testing(isa); }
  ~IsaScope() { gptq::backend::set_isa_for_testing(saved_); }

 private:
  Isa saved_;
};

// H from bf16 operands equals the double-precision H of x rounded to bf16, up to the fp32 sums
// (the same 1e-5 bound as the fp32 path), and is not the fp32 H (the rounding took place). On
// both the AVX512-BF16 kernel and the scalar emulation.
TEST(HessianBf16, MatchesDoubleSumOfRoundedX) {
  const int64_t k = 300, tokens = 1301;  // K not a multiple of 16 or 32; an odd tail
  const auto x = qtest::correlated_tokens(tokens, k, 0.5, 4);
  std::vector<float> xr(x.size());
  for (size_t i = 0; i < x.size(); ++i) xr[i] = round_bf16(x[i]);
  const auto ref = qtest::hessian_of(xr, tokens, k);
  HessianAccumulator f32(k);
  f32.add(x.data(), tokens);
  const auto h32 = f32.hessian();
  for (Isa isa : {Isa::kScalar, Isa::kAvx512Bf16}) {
    if (!gptq::backend::cpu_supports(isa)) {
      std::printf("note: %s bf16 Hessian not tested: this CPU lacks it\n",
                  std::string(gptq::backend::isa_name(isa)).c_str());
      continue;
    }
    IsaScope scope(isa);
    HessianAccumulator acc(k, CalibDtype::kBf16);
    acc.add(x.data(), tokens);
    EXPECT_EQ(acc.dtype(), CalibDtype::kBf16);
    const auto h = acc.hessian();
    double max_vs_fp32 = 0;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        const double scale = std::sqrt(ref[i * k + i] * ref[j * k + j]);
        ASSERT_NEAR(h[i * k + j], ref[i * k + j], 1e-5 * scale) << i << ", " << j;
        ASSERT_EQ(h[i * k + j], h[j * k + i]);
        max_vs_fp32 = std::max(max_vs_fp32, std::fabs(h[i * k + j] - h32[i * k + j]) / scale);
      }
    }
    // bf16 keeps 8 significant bits: H moves by ~1e-3 of its scale somewhere.
    EXPECT_GT(max_vs_fp32, 1e-4) << gptq::backend::isa_name(isa);
  }
}

// vdpbf16ps and the scalar emulation compute the same fp32 sums, step by step: bit for bit.
TEST(HessianBf16, Avx512Bf16KernelEqualsScalarEmulation) {
  if (!gptq::backend::cpu_supports(Isa::kAvx512Bf16)) GTEST_SKIP() << "CPU lacks avx512bf16";
  for (int64_t k : {16, 33, 96, 300}) {
    const int64_t tokens = 1031;
    const auto x = qtest::correlated_tokens(tokens, k, 0.3, static_cast<uint32_t>(k));
    std::vector<double> a, b;
    {
      IsaScope scope(Isa::kScalar);
      HessianAccumulator acc(k, CalibDtype::kBf16);
      acc.add(x.data(), tokens);
      a = acc.hessian();
    }
    {
      IsaScope scope(Isa::kAvx512Bf16);
      HessianAccumulator acc(k, CalibDtype::kBf16);
      acc.add(x.data(), tokens);
      b = acc.hessian();
    }
    int64_t diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff += a[i] != b[i];
    EXPECT_EQ(diff, 0) << "K = " << k;
  }
}

TEST(HessianBf16, SameBitsForAnyThreadCountAndSplit) {
  const int64_t k = 200, tokens = 1100;
  const auto x = qtest::correlated_tokens(tokens, k, 0.5, 5);
  const int before = gptq::core::num_threads();
  gptq::core::set_num_threads(1);
  HessianAccumulator a(k, CalibDtype::kBf16);
  a.add(x.data(), tokens);
  const auto ha = a.hessian();
  gptq::core::set_num_threads(2);
  HessianAccumulator b(k, CalibDtype::kBf16);
  b.add(x.data(), 3);
  b.add(x.data() + 3 * k, tokens - 3);
  const auto hb = b.hessian();
  gptq::core::set_num_threads(before);
  EXPECT_EQ(ha, hb);
}

}  // namespace
