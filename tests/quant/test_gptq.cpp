// GPTQ solver: against the textbook implementation in naive_gptq.h, identities, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/naive_gptq.h"
#include "quant/quantizer.h"
#include "quant/test_util.h"

using gptq::Error;
using gptq::ErrorKind;
using gptq::quant::QuantParams;
using gptq::quant::QuantResult;

namespace {

// dequant must be exactly scales[g_idx[k], n] * (codes - zeros), computed in fp32.
void expect_dequant_identity(const QuantResult& r) {
  for (int64_t row = 0; row < r.n; ++row) {
    for (int64_t c = 0; c < r.k; ++c) {
      const size_t gi = static_cast<size_t>(r.g_idx[c] * r.n + row);
      const float want =
          r.scales[gi] * static_cast<float>(static_cast<int32_t>(r.codes[row * r.k + c]) - r.zeros[gi]);
      ASSERT_EQ(r.dequant[row * r.k + c], want) << "row " << row << " col " << c;
    }
  }
}

void expect_fp16_scales(const QuantResult& r) {
  for (float s : r.scales) {
    ASSERT_EQ(s, gptq::core::fp16_to_fp32(gptq::core::fp32_to_fp16(s)));
    ASSERT_GT(s, 0.0f);
  }
}

struct Config {
  std::string name;
  int64_t n, k;
  int bits, group_size;
  bool sym, desc_act, static_groups, mse;
  int block_size;
  double rho;              // correlation of neighbouring inputs
  int64_t tokens;          // calibration tokens (< k: rank-deficient H)
  std::vector<int64_t> dead;
  double indefinite = 0;   // subtract this * mean(diag) from the diagonal
};

std::string config_name(const testing::TestParamInfo<Config>& info) { return info.param.name; }

class AgainstNaive : public testing::TestWithParam<Config> {};

// The library and the textbook solver agree on every code, scale, zero and g_idx, up to
// near-ties (naive_gptq.h): the naive solver must find no difference that is not a near-tie, and
// near-ties may be at most 0.5% of the decisions (typically there are none or a handful). The
// loss agrees to 1e-3 relative (fp32 vs double feedback).
TEST_P(AgainstNaive, SameCodesScalesZeros) {
  const Config& c = GetParam();
  QuantParams p;
  p.bits = c.bits;
  p.group_size = c.group_size;
  p.sym = c.sym;
  p.desc_act = c.desc_act;
  p.static_groups = c.static_groups;
  p.mse = c.mse;
  p.block_size = c.block_size;
  const std::vector<float> w = qtest::random_weight(c.n, c.k, 11);
  std::vector<double> h = qtest::correlated_hessian(c.k, c.tokens, c.rho, 12, c.dead);
  if (c.indefinite > 0) {
    double mean = 0;
    for (int64_t i = 0; i < c.k; ++i) mean += h[i * c.k + i];
    mean /= c.k;
    for (int64_t i = 0; i < c.k; ++i) {
      if (h[i * c.k + i] != 0) h[i * c.k + i] -= c.indefinite * mean;
    }
  }

  const QuantResult r = gptq::quant::gptq_quantize(w.data(), c.n, c.k, h, p);
  const std::vector<double> wd(w.begin(), w.end());
  const naive::Result ref = naive::gptq(wd, c.n, c.k, h, p, r);
  ASSERT_TRUE(ref.factored);

  for (const auto& f : ref.report.failures) ADD_FAILURE() << f;
  EXPECT_LE(ref.report.ties, std::max<int64_t>(2, ref.report.decisions / 200))
      << "near-ties: " << ref.report.ties << " of " << ref.report.decisions;
  if (ref.report.ties > 0) {
    std::printf("  [%s] %lld near-ties of %lld decisions, worst %.2e from the boundary\n",
                c.name.c_str(), static_cast<long long>(ref.report.ties),
                static_cast<long long>(ref.report.decisions), ref.report.worst_tie);
  }
  EXPECT_EQ(r.damp_used, ref.damp_used);
  EXPECT_EQ(r.dead_columns, static_cast<int64_t>(c.dead.size()));
  EXPECT_EQ(r.g_idx, ref.g_idx);
  EXPECT_EQ(r.scales, ref.scales);
  EXPECT_EQ(r.zeros, ref.zeros);
  int64_t code_diff = 0;
  for (size_t i = 0; i < r.codes.size(); ++i) code_diff += r.codes[i] != ref.codes[i];
  EXPECT_EQ(code_diff, 0);
  EXPECT_NEAR(r.loss, ref.loss, 1e-3 * ref.loss);
  expect_dequant_identity(r);
  expect_fp16_scales(r);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, AgainstNaive,
    testing::Values(
        //      name                  n   k   bits g    sym   act    static mse   blk rho  tok
        Config{"b4_perrow_sym", 48, 256, 4, -1, true, false, false, false, 128, 0.6, 512, {}},
        Config{"b4_g32_asym_act", 48, 256, 4, 32, false, true, false, false, 128, 0.6, 512, {}},
        Config{"b3_g64_sym_act_static", 40, 256, 3, 64, true, true, true, false, 128, 0.6, 512,
               {}},
        Config{"b2_g64_asym", 40, 256, 2, 64, false, false, false, false, 128, 0.6, 512, {}},
        Config{"b8_g32_sym_act", 40, 256, 8, 32, true, true, false, false, 128, 0.6, 512, {}},
        Config{"b8_perrow_asym", 40, 256, 8, -1, false, false, false, false, 128, 0.6, 512, {}},
        Config{"b4_g128_asym_static", 40, 256, 4, 128, false, false, true, false, 128, 0.6, 512,
               {}},
        Config{"b3_g64_asym_act", 40, 256, 3, 64, false, true, false, false, 128, 0.6, 512, {}},
        // Groups that straddle blocks and superblocks (g = 96, blocks of 32, K = 600 > 512).
        Config{"b3_g96_asym_act_blk32", 32, 600, 3, 96, false, true, false, false, 32, 0.6, 1200,
               {}},
        Config{"b4_g96_sym_blk128_k600", 32, 600, 4, 96, true, false, false, false, 128, 0.6, 1200,
               {}},
        Config{"b4_perrow_sym_act_k600", 32, 600, 4, -1, true, true, false, false, 128, 0.6, 1200,
               {}},
        Config{"b2_g1024_asym_blk16", 24, 600, 2, 1024, false, false, false, false, 16, 0.6, 1200,
               {}},
        Config{"b4_g32_asym_mse", 40, 256, 4, 32, false, false, false, true, 128, 0.6, 512, {}},
        Config{"b3_g64_sym_mse_act", 40, 256, 3, 64, true, true, false, true, 128, 0.6, 512, {}},
        Config{"b4_g64_dead_act", 40, 256, 4, 64, false, true, false, false, 128, 0.6, 512,
               {0, 5, 77, 200, 255}},
        // Strongly correlated inputs, fewer tokens than inputs: H is singular before damping.
        Config{"b4_g32_illcond_act", 40, 256, 4, 32, true, true, false, false, 128, 0.98, 96, {}},
        // Indefinite H: damping must rise to 0.03 before Cholesky succeeds.
        Config{"b4_g64_indefinite", 40, 256, 4, 64, false, false, false, false, 128, 0.6, 128,
               {}, 0.025}),
    config_name);

// GPTQ on weights built on exact rounding ties (qtest::tie_weights: a third of the groups on a
// grid of half quantization steps), against the double-precision transcription: at a tie the
// fp32 library and the double solver may round either way, so those are the only differences
// allowed, and they must stay below 1% of the decisions (measured: well under).
TEST(Gptq, TieWeightsAgainstNaive) {
  for (const bool sym : {true, false}) {
    for (const int bits : {3, 4}) {
      const int64_t n = 64, k = 256, g = 64;
      const std::vector<float> w = qtest::tie_weights(n, k, g, bits, sym, 41);
      const std::vector<double> h = qtest::correlated_hessian(k, 512, 0.6, 42);
      QuantParams p;
      p.bits = bits;
      p.group_size = g;
      p.sym = sym;
      const QuantResult r = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
      const std::vector<double> wd(w.begin(), w.end());
      const naive::Result ref = naive::gptq(wd, n, k, h, p, r);
      ASSERT_TRUE(ref.factored);
      SCOPED_TRACE(testing::Message() << "bits " << bits << " sym " << sym);
      for (const auto& f : ref.report.failures) ADD_FAILURE() << f;
      EXPECT_LE(ref.report.ties, ref.report.decisions / 100);
      EXPECT_EQ(r.codes, ref.codes);
      EXPECT_EQ(r.scales, ref.scales);
      EXPECT_EQ(r.zeros, ref.zeros);
      std::printf("  [tie weights, %d-bit %s] %lld near-ties of %lld decisions\n", bits,
                  sym ? "sym" : "asym", static_cast<long long>(ref.report.ties),
                  static_cast<long long>(ref.report.decisions));
    }
  }
}

// With a diagonal H, every off-diagonal entry of the factor is exactly 0, so GPTQ feeds nothing
// forward and must equal RTN bit for bit (act-order only with static groups: otherwise groups
// form in a different order).
TEST(Gptq, EqualsRtnForDiagonalHessian) {
  const int64_t n = 40, k = 256;
  const std::vector<float> w = qtest::random_weight(n, k, 21);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  std::mt19937 gen(22);
  std::uniform_real_distribution<double> ud(0.1, 10.0);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = ud(gen);
  for (int bits : {2, 3, 4, 8}) {
    for (int g : {-1, 32, 128}) {
      for (bool sym : {true, false}) {
        for (int mode = 0; mode < 3; ++mode) {  // plain, act-order + static groups, MSE
          QuantParams p;
          p.bits = bits;
          p.group_size = g;
          p.sym = sym;
          p.desc_act = mode == 1;
          p.static_groups = mode == 1;
          p.mse = mode == 2;
          SCOPED_TRACE(testing::Message() << "bits " << bits << " g " << g << " sym " << sym
                                          << " mode " << mode);
          const QuantResult a = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
          const QuantResult b = gptq::quant::rtn_quantize(w.data(), n, k, p);
          EXPECT_EQ(a.codes, b.codes);
          EXPECT_EQ(a.scales, b.scales);
          EXPECT_EQ(a.zeros, b.zeros);
          EXPECT_EQ(a.g_idx, b.g_idx);
          EXPECT_EQ(a.dequant, b.dequant);
        }
      }
    }
  }
}

// GPTQ minimizes tr((W-Q) H (W-Q)^T) greedily; on correlated inputs it must beat RTN clearly.
TEST(Gptq, OutputErrorBelowRtn) {
  const int64_t n = 64, k = 256;
  const std::vector<float> w = qtest::random_weight(n, k, 31);
  const std::vector<double> h = qtest::correlated_hessian(k, 1024, 0.8, 32);
  for (int bits : {3, 4}) {
    for (int g : {-1, 64}) {
      for (bool act : {false, true}) {
        QuantParams p;
        p.bits = bits;
        p.group_size = g;
        p.desc_act = act;
        const QuantResult a = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
        const QuantResult b = gptq::quant::rtn_quantize(w.data(), n, k, p);
        const double ea = qtest::output_error(w, a.dequant, n, k, h);
        const double eb = qtest::output_error(w, b.dequant, n, k, h);
        EXPECT_LT(ea, 0.8 * eb) << "bits " << bits << " g " << g << " act " << act;
        expect_dequant_identity(a);
        expect_dequant_identity(b);
      }
    }
  }
}

TEST(Gptq, DeadColumnsGiveZeroWeights) {
  const int64_t n = 32, k = 128;
  const std::vector<int64_t> dead = {3, 4, 64, 127};
  const std::vector<float> w = qtest::random_weight(n, k, 41);
  const std::vector<double> h = qtest::correlated_hessian(k, 300, 0.5, 42, dead);
  for (bool act : {false, true}) {
    for (bool sym : {false, true}) {
      QuantParams p;
      p.group_size = 32;
      p.desc_act = act;
      p.sym = sym;
      const QuantResult r = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
      EXPECT_EQ(r.dead_columns, 4);
      for (int64_t c : dead)
        for (int64_t row = 0; row < n; ++row) EXPECT_EQ(r.dequant[row * k + c], 0.0f);
    }
  }
}

TEST(Gptq, DampingIsRaisedUntilCholeskySucceeds) {
  const int64_t n = 16, k = 64;
  const std::vector<float> w = qtest::random_weight(n, k, 51);
  // Rank 32 (32 tokens), then shifted down by 2.5% of the mean diagonal: the smallest
  // eigenvalue is -0.025 * mean0, and damping t * mean (mean = 0.975 * mean0) needs t > 0.0256.
  std::vector<double> h = qtest::correlated_hessian(k, 32, 0.3, 52);
  double mean = 0;
  for (int64_t i = 0; i < k; ++i) mean += h[i * k + i];
  mean /= k;
  for (int64_t i = 0; i < k; ++i) h[i * k + i] -= 0.025 * mean;
  QuantParams p;
  p.group_size = 32;
  testing::internal::CaptureStderr();
  const QuantResult r = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_GT(r.damp_used, p.damp_percent);
  EXPECT_NEAR(r.damp_used, 0.03, 1e-12);
  EXPECT_NE(log.find("retrying with damp_percent 0.0200"), std::string::npos) << log;
  EXPECT_NE(log.find("retrying with damp_percent 0.0300"), std::string::npos) << log;
}

TEST(Gptq, NeverPositiveDefiniteIsNumericError) {
  const int64_t n = 8, k = 32;
  const std::vector<float> w = qtest::random_weight(n, k, 61);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = -1.0;  // damping only makes it worse
  QuantParams p;
  p.group_size = -1;
  testing::internal::CaptureStderr();
  try {
    gptq::quant::gptq_quantize(w.data(), n, k, h, p);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNumeric);
    EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos) << e.what();
  }
  testing::internal::GetCapturedStderr();
  p.damp_step = 0;  // no retries: fails at once, silently
  testing::internal::CaptureStderr();
  EXPECT_THROW(gptq::quant::gptq_quantize(w.data(), n, k, h, p), Error);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Gptq, GIdxFollowsActOrderAndStaticGroups) {
  const int64_t n = 16, k = 256, g = 32;
  const std::vector<float> w = qtest::random_weight(n, k, 71);
  const std::vector<double> h = qtest::correlated_hessian(k, 512, 0.5, 72);
  std::vector<int64_t> perm(k);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return h[a * k + a] > h[b * k + b]; });
  ASSERT_FALSE(std::is_sorted(perm.begin(), perm.end()));
  QuantParams p;
  p.group_size = g;
  p.desc_act = true;
  const QuantResult act = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  for (int64_t j = 0; j < k; ++j) EXPECT_EQ(act.g_idx[perm[j]], j / g);
  p.static_groups = true;
  const QuantResult st = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  for (int64_t c = 0; c < k; ++c) EXPECT_EQ(st.g_idx[c], c / g);
  // Static groups take their parameters from the original W: same as RTN's.
  const QuantResult rtn = gptq::quant::rtn_quantize(w.data(), n, k, p);
  EXPECT_EQ(st.scales, rtn.scales);
  EXPECT_EQ(st.zeros, rtn.zeros);
  p.desc_act = false;
  p.static_groups = false;
  const QuantResult plain = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  for (int64_t c = 0; c < k; ++c) EXPECT_EQ(plain.g_idx[c], c / g);
}

// Group-aware act-order is plain GPTQ on the columns taken in its order: the order computed here
// from H's diagonal (within groups descending, groups by their largest entry, a short last group
// last), the problem permuted by it and solved without any act-order must give the same codes,
// scales and zeros, with the scales of processing group j stored at the original group's row.
TEST(Gptq, GroupAwareOrderIsPlainGptqOnPermutedColumns) {
  const int64_t n = 32, k = 224, g = 64;  // 3 full groups and a short one of 32
  const std::vector<float> w = qtest::random_weight(n, k, 75);
  const std::vector<double> h = qtest::correlated_hessian(k, 512, 0.5, 76);
  const int64_t groups = (k + g - 1) / g, full = k / g;
  std::vector<int64_t> perm;
  std::vector<std::pair<double, int64_t>> gmax;
  for (int64_t grp = 0; grp < full; ++grp) {
    double m = 0;
    for (int64_t c = grp * g; c < (grp + 1) * g; ++c) m = std::max(m, h[c * k + c]);
    gmax.push_back({m, grp});
  }
  std::stable_sort(gmax.begin(), gmax.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::vector<int64_t> group_order;
  for (auto& [m, grp] : gmax) group_order.push_back(grp);
  group_order.push_back(full);  // the short group
  ASSERT_FALSE(std::is_sorted(group_order.begin(), group_order.end()));
  for (int64_t grp : group_order) {
    std::vector<int64_t> cols;
    for (int64_t c = grp * g; c < std::min(k, (grp + 1) * g); ++c) cols.push_back(c);
    std::stable_sort(cols.begin(), cols.end(), [&](int64_t a, int64_t b) { return h[a * k + a] > h[b * k + b]; });
    perm.insert(perm.end(), cols.begin(), cols.end());
  }
  std::vector<float> wp(static_cast<size_t>(n * k));
  std::vector<double> hp(static_cast<size_t>(k * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) wp[r * k + j] = w[r * k + perm[j]];
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) hp[i * k + j] = h[perm[i] * k + perm[j]];
  QuantParams p;
  p.group_size = g;
  const QuantResult plain = gptq::quant::gptq_quantize(wp.data(), n, k, hp, p);
  p.act_group_aware = true;
  const QuantResult gar = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  for (int64_t c = 0; c < k; ++c) EXPECT_EQ(gar.g_idx[c], c / g);
  int64_t diff = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) diff += gar.codes[r * k + perm[j]] != plain.codes[r * k + j];
  EXPECT_EQ(diff, 0);
  for (int64_t j = 0; j < groups; ++j) {
    const int64_t orig = perm[j * g] / g;
    for (int64_t r = 0; r < n; ++r) {
      EXPECT_EQ(gar.scales[orig * n + r], plain.scales[j * n + r]) << "group " << j;
      EXPECT_EQ(gar.zeros[orig * n + r], plain.zeros[j * n + r]) << "group " << j;
    }
  }
  // And it is not plain GPTQ on the original order, nor full act-order.
  p.act_group_aware = false;
  EXPECT_NE(gptq::quant::gptq_quantize(w.data(), n, k, h, p).codes, gar.codes);
  p.desc_act = true;
  p.act_group_aware = true;
  EXPECT_THROW(gptq::quant::gptq_quantize(w.data(), n, k, h, p), Error);
}

TEST(Gptq, TiesInActOrderKeepIndexOrder) {
  // All diagonals equal: a stable sort keeps 0..K-1, so act-order changes nothing.
  const int64_t n = 16, k = 64;
  const std::vector<float> w = qtest::random_weight(n, k, 81);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    h[i * k + i] = 2.0;
    if (i + 1 < k) h[i * k + i + 1] = h[(i + 1) * k + i] = 0.5;
  }
  QuantParams p;
  p.group_size = 16;
  const QuantResult a = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  p.desc_act = true;
  const QuantResult b = gptq::quant::gptq_quantize(w.data(), n, k, h, p);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.g_idx, b.g_idx);
  EXPECT_EQ(a.scales, b.scales);
}

TEST(Gptq, SharedFactorGivesTheSameResult) {
  const int64_t n = 24, k = 192;
  const std::vector<float> w1 = qtest::random_weight(n, k, 91), w2 = qtest::random_weight(8, k, 92);
  const std::vector<double> h = qtest::correlated_hessian(k, 400, 0.7, 93);
  QuantParams p;
  p.group_size = 64;
  p.desc_act = true;
  const gptq::quant::HessianFactor f = gptq::quant::prepare_hessian(h, k, p);
  for (const auto* w : {&w1, &w2}) {
    const int64_t rows = static_cast<int64_t>(w->size()) / k;
    const QuantResult a = gptq::quant::gptq_quantize(w->data(), rows, k, h, p);
    const QuantResult b = gptq::quant::gptq_quantize(w->data(), rows, k, f, p);
    EXPECT_EQ(a.codes, b.codes);
    EXPECT_EQ(a.scales, b.scales);
    EXPECT_EQ(a.loss, b.loss);
  }
  QuantParams other = p;
  other.desc_act = false;
  EXPECT_THROW(gptq::quant::gptq_quantize(w1.data(), n, k, f, other), Error);
  EXPECT_THROW(gptq::quant::gptq_quantize(w1.data(), n, k - 1, f, p), Error);
}

// Identical bits at 1, 2 and 3 threads. N = 600 is three row tiles (256, 256, 88), so the
// threads split them differently each time; the Hessian factorization (threaded dpotrf) and
// the whole pipeline from H on are covered.
TEST(Gptq, DeterministicAcrossThreadCounts) {
  const int64_t n = 600, k = 1024;
  const std::vector<float> w = qtest::random_weight(n, k, 101);
  const std::vector<double> h = qtest::correlated_hessian(k, 2048, 0.7, 102);
  QuantParams p;
  p.group_size = 96;  // groups straddle blocks: the textbook conversion runs at most blocks
  p.desc_act = true;
  const int before = gptq::core::num_threads();
  std::vector<QuantResult> runs;
  for (int threads : {1, 2, 3}) {
    gptq::core::set_num_threads(threads);
    runs.push_back(gptq::quant::gptq_quantize(w.data(), n, k, h, p));
  }
  gptq::core::set_num_threads(before);
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_EQ(runs[0].codes, runs[i].codes);
    EXPECT_EQ(runs[0].scales, runs[i].scales);
    EXPECT_EQ(runs[0].zeros, runs[i].zeros);
    EXPECT_EQ(runs[0].dequant, runs[i].dequant);
    EXPECT_EQ(runs[0].loss, runs[i].loss);  // bitwise
  }
}

TEST(Gptq, RejectsNonFiniteInputs) {
  const int64_t n = 4, k = 32;
  std::vector<float> w = qtest::random_weight(n, k, 111);
  std::vector<double> h = qtest::correlated_hessian(k, 64, 0.5, 112);
  QuantParams p;
  p.group_size = -1;
  auto expect_numeric = [&](const char* needle) {
    try {
      gptq::quant::gptq_quantize(w.data(), n, k, h, p);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kNumeric);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  w[2 * k + 5] = NAN;
  expect_numeric("weight");
  w[2 * k + 5] = 0.1f;
  w[7] = INFINITY;
  expect_numeric("Inf at row 0, column 7");
  w[7] = 0.1f;
  h[3 * k + 4] = NAN;
  expect_numeric("Hessian");
  h[3 * k + 4] = INFINITY;
  expect_numeric("Hessian");
  w[9] = NAN;
  try {
    gptq::quant::rtn_quantize(w.data(), n, k, p);
    ADD_FAILURE() << "RTN accepted a NaN weight";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNumeric);
  }
}

TEST(Gptq, RejectsBadParamsNamingTheField) {
  const int64_t n = 4, k = 32;
  const std::vector<float> w = qtest::random_weight(n, k, 121);
  const std::vector<double> h = qtest::correlated_hessian(k, 64, 0.5, 122);
  struct Case {
    void (*mutate)(QuantParams&);
    const char* needle;
  };
  const Case cases[] = {
      {[](QuantParams& p) { p.bits = 5; }, "bits = 5"},
      {[](QuantParams& p) { p.bits = 1; }, "bits"},
      {[](QuantParams& p) { p.group_size = 8; }, "group_size = 8"},
      {[](QuantParams& p) { p.group_size = 2048; }, "16..1024"},
      {[](QuantParams& p) { p.group_size = 0; }, "group_size"},
      {[](QuantParams& p) { p.damp_percent = 0; }, "damp_percent = 0"},
      {[](QuantParams& p) { p.damp_percent = 1; }, "(0, 1)"},
      {[](QuantParams& p) { p.damp_percent = NAN; }, "damp_percent"},
      {[](QuantParams& p) { p.damp_step = -0.1; }, "damp_step"},
      {[](QuantParams& p) { p.block_size = 0; }, "block_size"},
  };
  for (const Case& c : cases) {
    QuantParams p;
    c.mutate(p);
    for (int which = 0; which < 2; ++which) {
      try {
        if (which == 0) {
          gptq::quant::gptq_quantize(w.data(), n, k, h, p);
        } else {
          gptq::quant::rtn_quantize(w.data(), n, k, p);
        }
        ADD_FAILURE() << "expected an error for " << c.needle;
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kArgument);
        EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("QuantParams."), std::string::npos) << e.what();
      }
    }
  }
  QuantParams ok;
  EXPECT_THROW(gptq::quant::gptq_quantize(w.data(), n, k, std::vector<double>(10), ok), Error);
  EXPECT_THROW(gptq::quant::gptq_quantize(w.data(), 0, k, h, ok), Error);
}

}  // namespace
