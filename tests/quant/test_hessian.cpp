// HessianAccumulator: value, batching independence, thread independence, bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/quantizer.h"
#include "quant/test_util.h"

using gptq::Error;
using gptq::ErrorKind;
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

}  // namespace
