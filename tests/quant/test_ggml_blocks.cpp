// GPTQ codes in ggml blocks: a naive decoder written here from ggml's documented block layout
// (ggml-common.h: block_q4_0 {fp16 d; u8 qs[16]} with element j in the low nibble of qs[j] and
// element j + 16 in the high one, w = d * (q - 8); block_q4_1 {fp16 d, m; u8 qs[16]}, w = d * q +
// m; block_q8_0 {fp16 d; i8 qs[32]}, w = d * q) must give back exactly s * (q - z), the GPTQ
// dequantization (SPEC §1), for every group size that is a multiple of 32 and for a whole row.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gptq/error.h"
#include "quant/ggml_blocks.h"

namespace gptq::quant {
namespace {

float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return core::fp16_to_fp32(h);
}

// Row r, column c of a ggml tensor of `type` with K columns.
float naive_ggml(const std::vector<uint8_t>& data, GgmlTarget type, int64_t k, int64_t r,
                 int64_t c) {
  const int64_t nb = k / 32, b = c / 32, j = c % 32;
  if (type == GgmlTarget::kQ8_0) {
    const uint8_t* blk = data.data() + (r * nb + b) * 34;
    return h2f(blk) * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
  }
  const int64_t size = type == GgmlTarget::kQ4_0 ? 18 : 20;
  const uint8_t* blk = data.data() + (r * nb + b) * size;
  const uint8_t* qs = blk + (type == GgmlTarget::kQ4_0 ? 2 : 4);
  const int q = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
  if (type == GgmlTarget::kQ4_0) return h2f(blk) * static_cast<float>(q - 8);
  return h2f(blk) * static_cast<float>(q) + h2f(blk + 2);
}

struct Linear {
  int64_t n, k, groups;
  int bits;
  std::vector<uint8_t> codes;
  std::vector<int32_t> zeros, g_idx;
  std::vector<uint16_t> scales;
  GptqCodesView view() const {
    return {n, k, groups, bits, codes.data(), zeros.data(), scales.data(), g_idx.data()};
  }
  float gptq(int64_t r, int64_t c) const {
    const int64_t g = g_idx[c];
    return core::fp16_to_fp32(scales[g * n + r]) *
           static_cast<float>(static_cast<int32_t>(codes[r * k + c]) - zeros[g * n + r]);
  }
};

// Random codes, positive fp16 scales, zeros 2^(b-1) (sym) or random (asym); g = -1: one group.
Linear random_linear(int64_t n, int64_t k, int bits, int g, bool sym, uint32_t seed) {
  std::mt19937 rng(seed);
  Linear l{n, k, g < 0 ? 1 : k / g, bits, {}, {}, {}, {}};
  const int maxq = (1 << bits) - 1;
  std::uniform_int_distribution<int> code(0, maxq);
  std::uniform_real_distribution<float> scale(1e-4f, 0.05f);
  for (int64_t i = 0; i < n * k; ++i) l.codes.push_back(static_cast<uint8_t>(code(rng)));
  for (int64_t i = 0; i < l.groups * n; ++i) {
    l.zeros.push_back(sym ? (1 << (bits - 1)) : code(rng));
    l.scales.push_back(core::fp32_to_fp16(scale(rng)));
  }
  for (int64_t c = 0; c < k; ++c) l.g_idx.push_back(g < 0 ? 0 : static_cast<int32_t>(c / g));
  return l;
}

void expect_decodes_exactly(const Linear& l, GgmlTarget want, bool widen,
                            const std::vector<int64_t>& order = {}) {
  const GgmlMapping m = choose_ggml_mapping(l.view(), "layer", widen);
  ASSERT_TRUE(m.exact) << m.why_not;
  ASSERT_EQ(m.target, want);
  GgmlEncodeStats st;
  const auto data = encode_ggml_blocks(l.view(), m.target, order, &st);
  const int64_t bb = want == GgmlTarget::kQ4_0 ? 18 : want == GgmlTarget::kQ4_1 ? 20 : 34;
  ASSERT_EQ(static_cast<int64_t>(data.size()), l.n * l.k / 32 * bb);
  EXPECT_EQ(st.blocks, l.n * l.k / 32);
  int64_t mismatches = 0;
  for (int64_t r = 0; r < l.n; ++r) {
    const int64_t src = order.empty() ? r : order[r];
    for (int64_t c = 0; c < l.k; ++c) {
      const float got = naive_ggml(data, want, l.k, r, c), ref = l.gptq(src, c);
      if (want == GgmlTarget::kQ4_1 && st.inexact_offsets > 0) {
        // The offset m = -s*z rounded to fp16: off by at most st.max_offset_error * s.
        const float s = core::fp16_to_fp32(l.scales[l.g_idx[c] * l.n + src]);
        EXPECT_LE(std::fabs(got - ref), st.max_offset_error * s * 1.0000001 + 1e-12)
            << r << "," << c;
      } else if (std::memcmp(&got, &ref, 4) != 0) {
        ++mismatches;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(GgmlBlocks, FourBitSymmetricIsQ4_0BitForBit) {
  for (int g : {32, 64, 128, -1})
    expect_decodes_exactly(random_linear(6, 256, 4, g, true, 1 + g), GgmlTarget::kQ4_0, false);
}

TEST(GgmlBlocks, EightBitSymmetricIsQ8_0BitForBit) {
  for (int g : {32, 96, -1})
    expect_decodes_exactly(random_linear(5, 192, 8, g, true, 7 + g), GgmlTarget::kQ8_0, false);
}

TEST(GgmlBlocks, TwoAndThreeBitWidenIntoQ4_0BitForBit) {
  for (int bits : {2, 3}) {
    for (bool sym : {true, false}) {
      expect_decodes_exactly(random_linear(4, 128, bits, 64, sym, 11 + bits), GgmlTarget::kQ4_0,
                             true);
    }
  }
}

TEST(GgmlBlocks, FourBitAsymmetricIsQ4_1WithTheOffsetRoundedToFp16) {
  Linear l = random_linear(8, 128, 4, 32, false, 5);
  GgmlEncodeStats st;
  encode_ggml_blocks(l.view(), GgmlTarget::kQ4_1, {}, &st);
  // Random fp16 scales times odd zeros rarely stay fp16 numbers, so most offsets round; the
  // rounding is below half an fp16 ulp of s*z <= 15 s, i.e. under 2^-7 s.
  EXPECT_GT(st.inexact_offsets, 0);
  EXPECT_LT(st.max_offset_error, 1.0 / 128);
  expect_decodes_exactly(l, GgmlTarget::kQ4_1, false);
  // Scales that are powers of two keep s*z exact: then Q4_1 is bit for bit too.
  for (auto& s : l.scales) s = core::fp32_to_fp16(1.0f / 1024);
  encode_ggml_blocks(l.view(), GgmlTarget::kQ4_1, {}, &st);
  EXPECT_EQ(st.inexact_offsets, 0);
  expect_decodes_exactly(l, GgmlTarget::kQ4_1, false);
}

TEST(GgmlBlocks, RowOrderMovesWholeRows) {
  Linear l = random_linear(16, 64, 4, 32, true, 9);
  expect_decodes_exactly(l, GgmlTarget::kQ4_0, false, llama_rope_row_order(16, 2));
}

TEST(GgmlBlocks, LlamaRopeOrderIsTheConvertersPermutation) {
  // numpy: arange(8).reshape(heads, 2, 8 // heads // 2).swapaxes(1, 2).reshape(8)
  EXPECT_EQ(llama_rope_row_order(8, 1), (std::vector<int64_t>{0, 4, 1, 5, 2, 6, 3, 7}));
  EXPECT_EQ(llama_rope_row_order(8, 2), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_THROW(llama_rope_row_order(6, 2), Error);
}

void expect_refused(const Linear& l, bool widen, const std::vector<std::string>& needles) {
  const GgmlMapping m = choose_ggml_mapping(l.view(), "model.layers.0.mlp.up_proj", widen);
  EXPECT_FALSE(m.exact);
  EXPECT_NE(m.why_not.find("model.layers.0.mlp.up_proj"), std::string::npos) << m.why_not;
  for (const auto& s : needles)
    EXPECT_NE(m.why_not.find(s), std::string::npos) << s << " in: " << m.why_not;
  EXPECT_THROW(encode_ggml_blocks(l.view(), GgmlTarget::kQ4_0), Error);
}

TEST(GgmlBlocks, ScatteredActOrderGroupsAreRefusedWithWhatToUse) {
  Linear l = random_linear(4, 128, 4, 32, true, 3);
  // Act-order without static groups: column c's group follows its position in the processing
  // order, here a fixed shuffle.
  std::vector<int32_t> perm(128);
  for (int i = 0; i < 128; ++i) perm[i] = (i * 37) % 128;
  for (int c = 0; c < 128; ++c) l.g_idx[perm[c]] = c / 32;
  expect_refused(l, false, {"act-order", "--static-groups", "--requant"});
}

TEST(GgmlBlocks, GroupsOf16AndEightBitAsymAndThreeBitAreRefused) {
  Linear g16 = random_linear(4, 64, 4, 16, true, 3);
  const GgmlMapping m = choose_ggml_mapping(g16.view(), "x", false);
  EXPECT_FALSE(m.exact);
  EXPECT_NE(m.why_not.find("fewer than 32"), std::string::npos) << m.why_not;
  Linear a8 = random_linear(4, 64, 8, 32, false, 3);
  const GgmlMapping m8 = choose_ggml_mapping(a8.view(), "x", false);
  EXPECT_FALSE(m8.exact);
  EXPECT_NE(m8.why_not.find("8-bit asymmetric"), std::string::npos) << m8.why_not;
  EXPECT_THROW(encode_ggml_blocks(a8.view(), GgmlTarget::kQ8_0), Error);
  Linear b3 = random_linear(4, 64, 3, 32, true, 3);
  const GgmlMapping m3 = choose_ggml_mapping(b3.view(), "x", false);
  EXPECT_FALSE(m3.exact);
  EXPECT_NE(m3.why_not.find("--widen"), std::string::npos) << m3.why_not;
}

TEST(GgmlBlocks, RoundToNearestFollowsGgmlsRule) {
  // One block: max |x| = 0.8 at a negative value, so d = -0.8 / -8 = 0.1 and codes x / d + 8.
  std::vector<float> w(32, 0.0f);
  w[0] = -0.8f;
  w[1] = 0.3f;
  w[17] = 0.71f;
  const auto q4 = rtn_ggml_blocks(w.data(), 1, 32, GgmlTarget::kQ4_0);
  EXPECT_EQ(h2f(q4.data()), core::fp16_to_fp32(core::fp32_to_fp16(0.1f)));
  EXPECT_EQ(q4[2] & 0x0f, 0);     // -0.8 -> 0
  EXPECT_EQ(q4[3] & 0x0f, 11);    // 0.3 / 0.1 + 8.5 = 11.5 -> 11
  EXPECT_EQ(q4[2 + 1] >> 4, 15);  // 0.71 / 0.1 + 8.5 = 15.6 -> 15 (clamped)
  const auto q8 = rtn_ggml_blocks(w.data(), 1, 32, GgmlTarget::kQ8_0);
  EXPECT_EQ(static_cast<int8_t>(q8[2]), -127);
  EXPECT_EQ(static_cast<int8_t>(q8[3]), 48);  // 0.3 / (0.8 / 127) = 47.6
}

}  // namespace
}  // namespace gptq::quant
