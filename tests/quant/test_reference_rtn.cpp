// Round-to-nearest against a transcription of the reference quantizer, bit for bit.
//
// The reference is the GPTQ paper's quant.py (Quantizer.find_params with perchannel=True and
// quantize), which GPTQModel's quantizer.py repeats for these settings. Transcribed below from
// its tensor formulas, written independently of src/quant, in the same fp32 arithmetic PyTorch
// uses on fp32 tensors:
//   xmin = minimum(x.min(1), 0); xmax = maximum(x.max(1), 0)
//   sym: xmax = maximum(|xmin|, xmax); xmin[xmin < 0] = -xmax
//   xmin == 0 and xmax == 0: xmin = -1, xmax = +1
//   scale = (xmax - xmin) / maxq                       (fp32 division)
//   zero = (maxq + 1) / 2 if sym else round(-xmin / scale)
//   q = clamp(round(x / scale) + zero, 0, maxq)        (torch.round: half to even)
// Groups: the same per row on columns [g*i, g*i + g); group size -1 is one group per row.
// The checkpoint holds the scale as fp16 (what AutoGPTQ/GPTQModel pack: scales.half()), and the
// codes as rounded with the fp32 scale.
//
// The weights are real-shaped (N, K = 576 / 1536, normal with outlier columns) with groups that
// are built to sit on exact ties: values on multiples of half a quantization step, so that
// x / scale is exactly k + 0.5 in fp32, for both the codes and (asymmetric) the zero points.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "quant/quantizer.h"
#include "quant/test_util.h"

namespace {

struct RefGroup {
  float scale;
  float zero;
};

RefGroup ref_find_params(const float* x, int64_t len, int bits, bool sym) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  float mn = x[0], mx = x[0];
  for (int64_t i = 1; i < len; ++i) {
    mn = std::fmin(mn, x[i]);
    mx = std::fmax(mx, x[i]);
  }
  float xmin = std::fmin(mn, 0.0f), xmax = std::fmax(mx, 0.0f);
  if (sym) {
    xmax = std::fmax(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  RefGroup g;
  g.scale = (xmax - xmin) / maxq;
  g.zero = sym ? (maxq + 1) / 2 : std::nearbyint(-xmin / g.scale);
  return g;
}

int32_t ref_quantize(float x, const RefGroup& g, int bits) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  const float q = std::nearbyint(x / g.scale) + g.zero;
  return static_cast<int32_t>(std::fmin(std::fmax(q, 0.0f), maxq));
}

float fp16(float v) { return gptq::core::fp16_to_fp32(gptq::core::fp32_to_fp16(v)); }

struct Case {
  int bits, group_size;
  bool sym;
};

class ReferenceRtn : public testing::TestWithParam<Case> {};

TEST_P(ReferenceRtn, CodesScalesZerosBitForBit) {
  const Case c = GetParam();
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{576, 576}, {96, 1536}}) {
    const int64_t g = c.group_size == -1 ? k : c.group_size;
    const std::vector<float> w = qtest::tie_weights(n, k, g, c.bits, c.sym, 7 + c.bits);
    gptq::quant::QuantParams p;
    p.bits = c.bits;
    p.group_size = c.group_size;
    p.sym = c.sym;
    const gptq::quant::QuantResult r = gptq::quant::rtn_quantize(w.data(), n, k, p);
    const int64_t groups = (k + g - 1) / g;
    int64_t ties = 0, code_diff = 0, scale_diff = 0, zero_diff = 0;
    for (int64_t row = 0; row < n; ++row) {
      for (int64_t grp = 0; grp < groups; ++grp) {
        const int64_t c0 = grp * g, c1 = std::min(k, c0 + g);
        const RefGroup ref = ref_find_params(w.data() + row * k + c0, c1 - c0, c.bits, c.sym);
        scale_diff += r.scales[grp * n + row] != fp16(ref.scale);
        zero_diff += r.zeros[grp * n + row] != static_cast<int32_t>(ref.zero);
        for (int64_t col = c0; col < c1; ++col) {
          const float x = w[row * k + col];
          const float v = x / ref.scale;
          ties += v - std::floor(v) == 0.5f;
          code_diff += r.codes[row * k + col] != ref_quantize(x, ref, c.bits);
        }
      }
    }
    EXPECT_EQ(code_diff, 0) << "[" << n << ", " << k << "]";
    EXPECT_EQ(scale_diff, 0);
    EXPECT_EQ(zero_diff, 0);
    // The weights really do exercise ties (a third of the groups are built on them).
    EXPECT_GT(ties, n * k / 20) << "[" << n << ", " << k << "]";
  }
}

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  // Appended piece by piece: GCC 12's -Wrestrict misfires on "lit" + std::string temporaries.
  std::string name = "b";
  name += std::to_string(c.bits);
  name += c.group_size == -1 ? std::string("_perrow") : std::string("_g") + std::to_string(c.group_size);
  name += c.sym ? "_sym" : "_asym";
  return name;
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (int bits : {2, 3, 4, 8}) {
    for (int g : {32, 64, 128, -1}) {
      for (bool sym : {true, false}) v.push_back({bits, g, sym});
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(AllSettings, ReferenceRtn, testing::ValuesIn(all_cases()), case_name);

// The tie the issue is about, by hand: in a symmetric 4-bit group whose extreme is negative,
// x / scale = -7.5 rounds to -8 (half to even), so the extreme gets code 0 and the most positive
// value is clamped to code 15. Rounding the scale to fp16 first would give -7 (code 1).
TEST(ReferenceRtn, NegativeExtremeOfSymmetricGroupGetsCodeZero) {
  std::vector<float> w(32, 0.0f);
  for (int i = 0; i < 32; ++i) w[i] = 0.001f * static_cast<float>(i - 12);
  w[3] = -0.0371f;  // the extreme: |xmin| > xmax
  gptq::quant::QuantParams p;
  p.group_size = 32;
  const auto r = gptq::quant::rtn_quantize(w.data(), 1, 32, p);
  const float scale = 2 * 0.0371f / 15;
  ASSERT_EQ(-0.0371f / scale, -7.5f) << "the test value must sit on the tie in fp32";
  EXPECT_EQ(r.codes[3], 0);
  EXPECT_EQ(r.scales[0], fp16(scale));
  EXPECT_EQ(r.dequant[3], fp16(scale) * -8.0f);
}

}  // namespace
