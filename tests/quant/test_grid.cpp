// The quantizer grid (SPEC §3 quantizer) against its textbook formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "gptq/error.h"
#include "quant/grid.h"
#include "quant/quantizer.h"

namespace d = gptq::quant::detail;

namespace {

TEST(Grid, RoundHalfEvenMatchesNearbyint) {
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> ud(-600.0f, 600.0f);
  for (int i = 0; i < 100000; ++i) {
    const float v = ud(gen);
    ASSERT_EQ(d::round_half_even(v), std::nearbyint(v)) << v;
  }
  for (float v = -20.5f; v <= 20.5f; v += 0.5f) ASSERT_EQ(d::round_half_even(v), std::nearbyint(v));
  EXPECT_EQ(d::round_half_even(2.5f), 2.0f);
  EXPECT_EQ(d::round_half_even(3.5f), 4.0f);
  EXPECT_EQ(d::round_half_even(-2.5f), -2.0f);
}

TEST(Grid, QuantCodeRoundsHalfToEvenAndClamps) {
  EXPECT_EQ(d::quant_code(2.5f, 1.0f, 8, 15), 10);   // 2.5 -> 2, + 8
  EXPECT_EQ(d::quant_code(3.5f, 1.0f, 8, 15), 12);   // 3.5 -> 4
  EXPECT_EQ(d::quant_code(-100.0f, 1.0f, 8, 15), 0);
  EXPECT_EQ(d::quant_code(100.0f, 1.0f, 8, 15), 15);
  EXPECT_EQ(d::quant_code(1e30f, 1e-30f, 0, 255), 255);
  EXPECT_EQ(d::quant_code(NAN, 1.0f, 3, 7), 0);  // defined, never UB
}

// Errors of pow_2p4 against std::pow in double: 2e-6 relative from 1e-12 to 1e6.
TEST(Grid, Pow2p4IsAccurate) {
  double worst = 0;
  for (double e = -12; e <= 6; e += 0.001) {
    const float v = static_cast<float>(std::pow(10.0, e));
    const double want = std::pow(static_cast<double>(v), 2.4);
    const double got = d::pow_2p4(v);
    worst = std::max(worst, std::fabs(got - want) / want);
    ASSERT_EQ(d::pow_2p4(-v), d::pow_2p4(v));
  }
  EXPECT_LT(worst, 2e-6);
  EXPECT_EQ(d::pow_2p4(0.0f), 0.0f);
}

// find_params computes in fp32 exactly as the reference does (no fp16 rounding of the scale).
TEST(Grid, TextbookParams) {
  const d::Grid sym4 = d::make_grid(4, true, false), asym4 = d::make_grid(4, false, false);
  {  // symmetric: range [-1, 1] from max |w|; zero 2^(b-1)
    const float x[] = {-1.0f, 0.5f, 0.25f};
    const auto p = d::find_params(x, 3, sym4);
    EXPECT_EQ(p.scale, 2.0f / 15);
    EXPECT_EQ(p.zero, 8);
  }
  {  // symmetric with no negative value keeps xmin = 0 (the Python tools' behaviour)
    const float x[] = {0.0f, 1.5f};
    const auto p = d::find_params(x, 2, sym4);
    EXPECT_EQ(p.scale, 1.5f / 15);
    EXPECT_EQ(p.zero, 8);
  }
  {  // asymmetric: range includes 0, zero = round(-xmin / scale) with the fp32 scale
    const float x[] = {-0.3f, 1.2f};
    const auto p = d::find_params(x, 2, asym4);
    const float s = (1.2f - -0.3f) / 15;
    EXPECT_EQ(p.scale, s);
    EXPECT_EQ(p.zero, static_cast<int32_t>(std::nearbyint(0.3f / s)));
  }
  {  // all zero -> [-1, 1]
    const float x[] = {0.0f, 0.0f, 0.0f};
    EXPECT_EQ(d::find_params(x, 3, asym4).scale, 2.0f / 15);
    // round(1 / (2/15)) in fp32: 1 / 0.13333334f = 7.4999995f rounds to 7, as in PyTorch.
    EXPECT_EQ(d::find_params(x, 3, asym4).zero, 7);
    EXPECT_EQ(d::find_params(x, 3, sym4).zero, 8);
  }
  {  // tiny weights: the fp32 scale is used as is; only storage floors it at 2^-24
    const float x[] = {1e-9f, -2e-9f};
    const auto p = d::find_params(x, 2, sym4);
    EXPECT_EQ(p.scale, 4e-9f / 15);
    EXPECT_EQ(d::scale_to_fp16(p.scale), std::ldexp(1.0f, -24));
  }
  {  // huge weights overflow fp16 when stored
    const float x[] = {1e7f};
    EXPECT_TRUE(std::isinf(d::scale_to_fp16(d::find_params(x, 1, asym4).scale)));
  }
}

// MSE never does worse than the plain range on its own criterion, and shrinks when an outlier
// dominates the range.
TEST(Grid, MseSearchShrinksForOutliers) {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(128);
  for (auto& v : x) v = nd(gen);
  x[17] = 12.0f;
  for (bool sym : {true, false}) {
    const auto plain = d::find_params(x.data(), 128, d::make_grid(3, sym, false));
    const auto mse = d::find_params(x.data(), 128, d::make_grid(3, sym, true));
    EXPECT_LT(mse.scale, plain.scale);
    auto err = [&](d::GroupParams p) {
      double e = 0;
      for (float v : x) {
        const float q = d::dequant_value(d::quant_code(v, p.scale, p.zero, 7), p.scale, p.zero);
        e += std::pow(std::fabs(static_cast<double>(q) - v), 2.4);
      }
      return e;
    };
    EXPECT_LT(err(mse), err(plain));
  }
}

TEST(Rtn, ScaleOverflowIsNumericError) {
  std::vector<float> w(64, 0.1f);
  w[40] = 3e7f;
  gptq::quant::QuantParams p;
  p.group_size = 32;
  try {
    gptq::quant::rtn_quantize(w.data(), 1, 64, p);
    ADD_FAILURE() << "expected an error";
  } catch (const gptq::Error& e) {
    EXPECT_EQ(e.kind(), gptq::ErrorKind::kNumeric);
    EXPECT_NE(std::string(e.what()).find("row 0, group 1"), std::string::npos) << e.what();
  }
}

}  // namespace
