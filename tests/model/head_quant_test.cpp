// LoadOptions::lm_head_bits = 8: the output projection rounded to 8 bits at load.
//  - round_to_8bit keeps every weight within half a step of its group's scale (symmetric RTN,
//    bound derived below), checked on the dequantized copy against each group's max computed
//    here;
//  - stories260k (tied embeddings, so the 8-bit copy is separate from the 16/32-bit embedding
//    used for lookups): perplexity on the evaluation text within 0.5% of the stored head, and
//    greedy generation still runs; other values are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cpu/qlinear.h"
#include "common/test_util.h"
#include "gptq/gptq.h"
#include "pipeline/head_quant.h"

namespace gptq {
namespace {

TEST(HeadQuant, EveryWeightWithinHalfAStep) {
  const int64_t n = 96, k = 256;  // two groups of 128 per row
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = d(rng);
  w[5] = 0.9f;  // an outlier widens its group's range only
  const auto q = pipeline::round_to_8bit(w.data(), n, k, "lm_head");
  const std::vector<float> deq = q->to_fp32();
  int64_t bad = 0;
  double worst = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < k / 128; ++g) {
      float mx = 0;
      for (int64_t i = g * 128; i < (g + 1) * 128; ++i) mx = std::max(mx, std::fabs(w[r * k + i]));
      // Symmetric 8-bit (SPEC §3): scale s = 2 max / 255, zero 128, codes 0..255, so values
      // s (q - 128) reach -128 s .. 127 s and the largest positive weight, 127.5 steps up, is
      // clipped by half a step: every error is at most s / 2 = max / 255. Rounding s to fp16
      // (relative 2^-11) moves a value up to 128 steps out by 128 s 2^-11 more.
      const double s = 2.0 * mx / 255.0;
      const double half_step = s / 2 + 128 * s * std::ldexp(1.0, -11) + 1e-12;
      for (int64_t i = g * 128; i < (g + 1) * 128; ++i) {
        const double err = std::fabs(double{deq[r * k + i]} - w[r * k + i]);
        worst = std::max(worst, err / s);
        bad += err > half_step;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "worst error " << worst << " steps";
  EXPECT_THROW(pipeline::round_to_8bit(w.data(), 95, k, "lm_head"), Error);
}

TEST(HeadQuant, Stories260kPerplexityWithinHalfAPercent) {
  PerplexityOptions po;
  po.ctx = 256;
  po.max_windows = 64;
  const std::string text = test::read_file(test::data_dir() / "text" / "tinystories-eval.txt");
  LoadOptions lo;
  const double stored = CausalLM::from_pretrained(test::stories_dir(), lo).perplexity(text, po).ppl;
  lo.lm_head_bits = 8;
  auto m8 = CausalLM::from_pretrained(test::stories_dir(), lo);
  const double q8 = m8.perplexity(text, po).ppl;
  EXPECT_NEAR(q8, stored, 5e-3 * stored) << "stored head " << stored << ", 8-bit head " << q8;
  EXPECT_NE(q8, stored);  // the option did take effect
  GenerateOptions g;
  g.n_predict = 16;
  g.temperature = 0;
  EXPECT_EQ(m8.generate("Once upon a time", g).new_ids.size(), 16u);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f -> %.4f", stored, q8);
  ::testing::Test::RecordProperty("ppl_stored_to_8bit", buf);
}

TEST(HeadQuant, OtherBitWidthsAreRefused) {
  LoadOptions lo;
  lo.lm_head_bits = 4;
  try {
    CausalLM::from_pretrained(test::stories_dir(), lo);
    FAIL() << "lm_head_bits = 4 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kArgument);
    EXPECT_NE(std::string(e.what()).find("lm_head"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gptq
