// The ggml grid (QuantParams::ggml_grid): group scales follow llama.cpp's Q4_0 / Q8_0 rule,
// restated here from ggml-quants.c's quantize_row_q4_0_ref / quantize_row_q8_0_ref (the block's
// value of largest magnitude, the first of equal ones, over -8; max |x| over 127; stored as
// fp16), and the codes are the nearest levels of that fp16 scale, checked against every level in
// double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/dtype.h"
#include "gptq/error.h"
#include "quant/grid.h"
#include "quant/quantizer.h"
#include "quant/test_util.h"

namespace q = gptq::quant;

namespace {

float to_fp16(float v) { return gptq::core::fp16_to_fp32(gptq::core::fp32_to_fp16(v)); }

// llama.cpp's block scale d of x[0, len), as its reference quantizers store it.
float ggml_block_d(const float* x, int64_t len, int bits) {
  float amax = 0.0f, max = 0.0f;
  for (int64_t j = 0; j < len; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return to_fp16(bits == 4 ? max / -8 : amax / 127);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// True when code is a nearest level to w among the grid's codes (0..2^b-1, zero point z), in
// double, up to a millionth of a step (the quotient is rounded in fp32 before it becomes a code).
bool is_nearest(float w, int code, float d, int z, int maxq) {
  const double err = std::fabs(static_cast<double>(w) - static_cast<double>(d) * (code - z));
  const double tol = 1e-6 * std::fabs(static_cast<double>(d));
  for (int c = 0; c <= maxq; ++c) {
    if (std::fabs(static_cast<double>(w) - static_cast<double>(d) * (c - z)) < err - tol) return false;
  }
  return true;
}

// A weight with the cases the rule must get right: blocks whose extreme is positive (d < 0),
// negative (d > 0), a tie of |x| between signs (the first wins), and a block of zeros.
std::vector<float> test_weight(int64_t n, int64_t k, uint32_t seed) {
  std::vector<float> w = qtest::random_weight(n, k, seed);
  w[0 * k + 3] = 0.5f;  // row 0, block 0: extreme +0.5 first, then -0.5
  w[0 * k + 9] = -0.5f;
  w[1 * k + 7] = -0.5f;  // row 1, block 0: -0.5 first
  w[1 * k + 20] = 0.5f;
  for (int64_t c = 32; c < 64; ++c) w[2 * k + c] = 0.0f;
  return w;
}

// The scales are the rule applied to w; with codes_from_w (no error feedback) the codes are the
// nearest levels of w too.
void expect_ggml_rule(const q::QuantResult& r, const std::vector<float>& w, int bits,
                      bool codes_from_w) {
  const int64_t n = r.n, k = r.k, g = 32;
  const int z = bits == 4 ? 8 : 128, maxq = (1 << bits) - 1;
  int64_t checked = 0;
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t grp = 0; grp < k / g; ++grp) {
      const float d = r.scales[grp * n + row];
      ASSERT_EQ(r.zeros[grp * n + row], z);
      const float* x = w.data() + row * k + grp * g;
      bool zeros = true;
      for (int64_t j = 0; j < g; ++j) zeros = zeros && x[j] == 0.0f;
      {
        // llama.cpp stores d = 0 for a block of zeros; we store the scale of an extreme of 1.
        const float want = zeros ? to_fp16(bits == 4 ? -0.125f : 1.0f / 127) : ggml_block_d(x, g, bits);
        ASSERT_TRUE(same_bits(d, want)) << "row " << row << " group " << grp << ": " << d << " vs " << want;
      }
      for (int64_t j = 0; j < g && codes_from_w; ++j) {
        const int code = r.codes[row * k + grp * g + j];
        ASSERT_TRUE(is_nearest(x[j], code, d, z, maxq)) << "row " << row << " col " << grp * g + j;
        ASSERT_TRUE(same_bits(r.dequant[row * k + grp * g + j], d * static_cast<float>(code - z)));
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, n * k / g);
}

TEST(GgmlGrid, RoundToNearestIsLlamaCppsQ4_0AndQ8_0Rule) {
  const int64_t n = 24, k = 256;
  const std::vector<float> w = test_weight(n, k, 11);
  for (int bits : {4, 8}) {
    q::QuantParams p;
    p.bits = bits;
    p.group_size = 32;
    p.ggml_grid = true;
    const q::QuantResult r = q::rtn_quantize(w.data(), n, k, p);
    expect_ggml_rule(r, w, bits, true);
    if (bits == 4) {
      // The extreme is on code 0 whatever its sign: d's sign follows it.
      EXPECT_LT(r.scales[0 * n + 0], 0.0f);
      EXPECT_EQ(r.codes[0 * k + 3], 0);
      EXPECT_GT(r.scales[0 * n + 1], 0.0f);
      EXPECT_EQ(r.codes[1 * k + 7], 0);
      EXPECT_EQ(r.codes[2 * k + 40], 8);  // the block of zeros
    }
  }
}

// With a diagonal Hessian GPTQ has no error to feed forward, so it must reproduce the rule.
TEST(GgmlGrid, GptqWithDiagonalHessianEqualsTheRule) {
  const int64_t n = 16, k = 256;
  const std::vector<float> w = test_weight(n, k, 12);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = 0.5 + 0.01 * static_cast<double>(i % 7);
  for (int bits : {4, 8}) {
    q::QuantParams p;
    p.bits = bits;
    p.group_size = 32;
    p.ggml_grid = true;
    const q::QuantResult r = q::gptq_quantize(w.data(), n, k, h, p);
    expect_ggml_rule(r, w, bits, true);
  }
}

// With a correlated Hessian: static groups take the rule from the original W; plain GPTQ's
// groups take it from the updated weights, so its dequantized weight sits on the grid of its own
// scales, each an fp16 number, and its output error (W - Q) H (W - Q)^T is below RTN's on the
// same grid.
TEST(GgmlGrid, GptqOnACorrelatedHessian) {
  const int64_t n = 32, k = 256, tokens = 2048;
  const std::vector<float> w = test_weight(n, k, 13);
  const std::vector<float> x = qtest::correlated_tokens(tokens, k, 0.7, 14);
  const std::vector<double> h = qtest::hessian_of(x, tokens, k);
  q::QuantParams p;
  p.group_size = 32;
  p.ggml_grid = true;
  q::QuantParams ps = p;
  ps.desc_act = true;
  ps.static_groups = true;
  expect_ggml_rule(q::gptq_quantize(w.data(), n, k, h, ps), w, 4, false);

  const q::QuantResult g = q::gptq_quantize(w.data(), n, k, h, p);
  const q::QuantResult rtn = q::rtn_quantize(w.data(), n, k, p);
  auto out_err = [&](const std::vector<float>& dq) {
    double e = 0;
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < k; ++i) {
        const double di = static_cast<double>(w[r * k + i]) - dq[r * k + i];
        for (int64_t j = 0; j < k; ++j) {
          e += di * h[i * k + j] * (static_cast<double>(w[r * k + j]) - dq[r * k + j]);
        }
      }
    }
    return e;
  };
  for (int64_t i = 0; i < n * k; ++i) {
    const int64_t row = i / k, grp = (i % k) / 32;
    const float d = g.scales[grp * n + row];
    ASSERT_TRUE(same_bits(d, to_fp16(d)));
    ASSERT_TRUE(same_bits(g.dequant[i], d * static_cast<float>(g.codes[i] - 8)));
  }
  EXPECT_LT(out_err(g.dequant), out_err(rtn.dequant));
}

// With mse, every candidate is the rule applied to a shrunk extreme, so scales are p * m / -8
// in fp16 for a shrink factor p <= 1 (same sign, no larger magnitude), codes the nearest levels.
TEST(GgmlGrid, MseSearchStaysOnTheGrid) {
  const int64_t n = 8, k = 128;
  const std::vector<float> w = test_weight(n, k, 15);
  q::QuantParams p;
  p.group_size = 32;
  p.ggml_grid = true;
  const q::QuantResult plain = q::rtn_quantize(w.data(), n, k, p);
  p.mse = true;
  const q::QuantResult m = q::rtn_quantize(w.data(), n, k, p);
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t grp = 0; grp < k / 32; ++grp) {
      const float d = m.scales[grp * n + row], d0 = plain.scales[grp * n + row];
      EXPECT_TRUE(d * d0 > 0.0f && std::fabs(d) <= std::fabs(d0)) << row << " " << grp;
      for (int64_t j = 0; j < 32; ++j) {
        const int64_t at = row * k + grp * 32 + j;
        EXPECT_TRUE(is_nearest(w[at], m.codes[at], d, 8, 15));
      }
    }
  }
}

TEST(GgmlGrid, OnlySymmetricFourAndEightBits) {
  for (auto [bits, sym] : {std::pair{3, true}, std::pair{2, true}, std::pair{4, false}}) {
    q::QuantParams p;
    p.bits = bits;
    p.sym = sym;
    p.ggml_grid = true;
    try {
      q::validate(p);
      ADD_FAILURE() << bits << "-bit sym " << sym << " accepted";
    } catch (const gptq::Error& e) {
      EXPECT_EQ(e.kind(), gptq::ErrorKind::kArgument);
      EXPECT_NE(std::string(e.what()).find("ggml_grid"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
