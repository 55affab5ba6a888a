// Damping chosen by cross-validation (quant/damp_search.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gptq/error.h"
#include "quant/damp_search.h"
#include "quant/quantizer.h"
#include "quant/test_util.h"

namespace {

using gptq::quant::QuantParams;

// Naive tr(E H E^T) / N in double, E = W - Q.
double naive_output_error(const std::vector<float>& w, const std::vector<float>& q, int64_t n, int64_t k,
                          const std::vector<double>& h) {
  double total = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j)
        total += (static_cast<double>(w[r * k + i]) - q[r * k + i]) * h[i * k + j] *
                 (static_cast<double>(w[r * k + j]) - q[r * k + j]);
  return total / static_cast<double>(n);
}

TEST(DampSearch, OutputErrorMatchesNaiveSum) {
  const int64_t n = 24, k = 96, t = 300;
  const auto w = qtest::random_weight(n, k, 5);
  const auto h = qtest::hessian_of(qtest::correlated_tokens(t, k, 0.6, 6), t, k);
  QuantParams p;
  p.group_size = 32;
  const auto r = gptq::quant::rtn_quantize(w.data(), n, k, p);
  const double want = naive_output_error(w, r.dequant, n, k, h);
  EXPECT_NEAR(gptq::quant::output_error(w.data(), r.dequant.data(), n, k, h), want, 1e-5 * want);
  // The identity: with Q = W the error is 0.
  EXPECT_EQ(gptq::quant::output_error(w.data(), w.data(), n, k, h), 0.0);
}

TEST(DampSearch, PicksTheCandidateWithTheLeastHeldOutError) {
  const int64_t n = 32, k = 128, t = 160;  // few tokens per fold: H is noisy, damping matters
  const auto w = qtest::random_weight(n, k, 7);
  const auto ha = qtest::hessian_of(qtest::correlated_tokens(t, k, 0.9, 8), t, k);
  const auto hb = qtest::hessian_of(qtest::correlated_tokens(t, k, 0.9, 9), t, k);
  QuantParams p;
  p.group_size = 32;
  p.bits = 3;
  const std::vector<double> cands = {0.001, 0.01, 0.1, 0.5};
  const auto choice = gptq::quant::choose_damp(w.data(), n, k, ha, hb, p, cands);
  ASSERT_EQ(choice.errors.size(), cands.size());
  // Recompute every candidate's score independently: solve on one fold, score on the other.
  std::vector<double> indep;
  for (size_t i = 0; i < cands.size(); ++i) {
    QuantParams pc = p;
    pc.damp_percent = cands[i];
    const auto ra = gptq::quant::gptq_quantize(w.data(), n, k, ha, pc);
    const auto rb = gptq::quant::gptq_quantize(w.data(), n, k, hb, pc);
    indep.push_back(naive_output_error(w, ra.dequant, n, k, hb) + naive_output_error(w, rb.dequant, n, k, ha));
    EXPECT_NEAR(choice.errors[i], indep[i], 1e-5 * indep[i]) << "candidate " << cands[i];
  }
  const size_t best = static_cast<size_t>(std::min_element(indep.begin(), indep.end()) - indep.begin());
  EXPECT_EQ(choice.damp_percent, cands[best]);
  // Not a degenerate problem: the candidates' scores differ.
  EXPECT_GT(*std::max_element(indep.begin(), indep.end()), 1.01 * indep[best]);
}

TEST(DampSearch, RejectsBadCandidates) {
  const int64_t n = 4, k = 32;
  const auto w = qtest::random_weight(n, k, 1);
  const auto h = qtest::hessian_of(qtest::correlated_tokens(64, k, 0.5, 2), 64, k);
  QuantParams p;
  p.group_size = 32;
  EXPECT_THROW(gptq::quant::choose_damp(w.data(), n, k, h, h, p, {}), gptq::Error);
  EXPECT_THROW(gptq::quant::choose_damp(w.data(), n, k, h, h, p, {0.01, 1.5}), gptq::Error);
  EXPECT_THROW(gptq::quant::output_error(w.data(), w.data(), n, k, std::vector<double>(10)), gptq::Error);
}

}  // namespace
