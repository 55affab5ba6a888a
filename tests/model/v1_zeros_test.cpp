// Asymmetric v1 ("gptq") zero points, read and written as GPTQModel converts them: its v1 -> v2
// step adds 0x55555555 / 0x11111111 / 0x01010101 to every int32 qzeros word for 2 / 4 / 8 bits
// (carries crossing fields) and adds 1 to each field modulo 8 for 3 bits; saving v1 subtracts
// the same. The fixture below is packed by this file's own bit-stream code from those rules,
// with zero points of 0 (stored as wrapped 2^b - 1 fields that borrow from their neighbour).
#include <gtest/gtest.h>

#include <random>

#include "backend/cpu/qlinear.h"
#include "common/test_util.h"
#include "config/model_config.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "model/linear.h"
#include "pipeline/quantize_pipeline.h"

namespace gptq {
namespace {

// values[i] (each < 2^bits) as a little-endian bit stream of 32-bit words, value i at stream
// bits [bits*i, bits*i + bits): GPTQ's layout for every width.
std::vector<uint32_t> stream_pack(const std::vector<uint32_t>& values, int bits) {
  std::vector<uint32_t> words(values.size() * bits / 32, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    for (int b = 0; b < bits; ++b) {
      const size_t bit = i * bits + b;
      if ((values[i] >> b) & 1u) words[bit / 32] |= 1u << (bit % 32);
    }
  }
  return words;
}

struct Fixture {
  int64_t n = 64, k = 64, g = 32, groups = 2;
  std::vector<uint32_t> codes;   // [N, K]
  std::vector<uint32_t> zeros;   // [G, N] true zero points
  std::vector<uint16_t> scales;  // [G, N] fp16
  std::vector<int32_t> qweight, qzeros_v1, qzeros_v2, g_idx;
};

Fixture make_fixture(int bits) {
  Fixture f;
  std::mt19937 rng(bits);
  const uint32_t maxq = (1u << bits) - 1;
  f.codes.resize(f.n * f.k);
  for (auto& c : f.codes) c = rng() & maxq;
  f.zeros.resize(f.groups * f.n);
  for (size_t i = 0; i < f.zeros.size(); ++i) {
    // Zero points of 0 often, including the last field of a word (its borrow leaves the word).
    f.zeros[i] = (i % 3 == 0 || i % 8 == 7) ? 0 : (rng() % (maxq + 1));
  }
  for (int64_t i = 0; i < f.groups * f.n; ++i) f.scales.push_back(core::fp32_to_fp16(static_cast<float>(1 + i % 7) / 64.0f));
  // qweight [K*b/32, N]: column n packs codes[n, :] along K.
  const int64_t rows = f.k * bits / 32;
  f.qweight.assign(rows * f.n, 0);
  for (int64_t col = 0; col < f.n; ++col) {
    std::vector<uint32_t> v(f.codes.begin() + col * f.k, f.codes.begin() + (col + 1) * f.k);
    const auto w = stream_pack(v, bits);
    for (int64_t r = 0; r < rows; ++r) f.qweight[r * f.n + col] = static_cast<int32_t>(w[r]);
  }
  for (int64_t grp = 0; grp < f.groups; ++grp) {
    std::vector<uint32_t> z(f.zeros.begin() + grp * f.n, f.zeros.begin() + (grp + 1) * f.n);
    for (uint32_t w : stream_pack(z, bits)) f.qzeros_v2.push_back(static_cast<int32_t>(w));
    std::vector<uint32_t> v1;
    if (bits == 3) {
      std::vector<uint32_t> m(z);
      for (auto& x : m) x = (x + 7) & 7u;
      v1 = stream_pack(m, 3);
    } else {
      const uint32_t pattern = bits == 2 ? 0x55555555u : bits == 4 ? 0x11111111u : 0x01010101u;
      for (uint32_t w : stream_pack(z, bits)) v1.push_back(w - pattern);
    }
    for (uint32_t w : v1) f.qzeros_v1.push_back(static_cast<int32_t>(w));
  }
  for (int64_t i = 0; i < f.k; ++i) f.g_idx.push_back(static_cast<int32_t>(i / f.g));
  return f;
}

class V1Zeros : public ::testing::TestWithParam<int> {};

TEST_P(V1Zeros, LoadedAsGPTQModelReadsThem) {
  const int bits = GetParam();
  const Fixture f = make_fixture(bits);
  test::TempDir tmp;
  const auto file = tmp.path() / "model.safetensors";
  const std::string m = "model.layers.0.mlp.down_proj";
  io::write_safetensors(file, {{m + ".qweight", DType::kI32, {f.k * bits / 32, f.n}, f.qweight.data(), f.qweight.size() * 4},
                               {m + ".qzeros", DType::kI32, {f.groups, f.n * bits / 32}, f.qzeros_v1.data(), f.qzeros_v1.size() * 4},
                               {m + ".scales", DType::kF16, {f.groups, f.n}, f.scales.data(), f.scales.size() * 2},
                               {m + ".g_idx", DType::kI32, {f.k}, f.g_idx.data(), f.g_idx.size() * 4}});
  const auto store = io::TensorStore::open_files({file});
  config::QuantizationConfig q;
  q.bits = bits;
  q.group_size = 32;
  q.sym = false;
  q.checkpoint_format = "gptq";
  const auto kern = model::load_quantized_linear(store, m, f.n, f.k, q, false);
  const auto deq = model::load_quantized_linear(store, m, f.n, f.k, q, true);
  ASSERT_TRUE(kern.is_quantized());
  const auto wk = kern.to_fp32();
  const auto& wd = deq.weight();
  int64_t literal_differs = 0;
  for (int64_t n = 0; n < f.n; ++n) {
    for (int64_t k = 0; k < f.k; ++k) {
      const int64_t grp = k / f.g;
      const float s = core::fp16_to_fp32(f.scales[grp * f.n + n]);
      const int32_t z = static_cast<int32_t>(f.zeros[grp * f.n + n]);
      const float want = s * static_cast<float>(static_cast<int32_t>(f.codes[n * f.k + k]) - z);
      ASSERT_EQ(wk[n * f.k + k], want) << "kernels, n " << n << " k " << k;
      ASSERT_EQ(wd[n * f.k + k], want) << "dequantized, n " << n << " k " << k;
    }
  }
  // The fixture does exercise the carries: reading each stored field + 1 would be wrong.
  for (int64_t grp = 0; grp < f.groups; ++grp) {
    for (int64_t n = 0; n < f.n; ++n) {
      const size_t bit = static_cast<size_t>(n * bits);
      uint32_t field = 0;
      for (int b = 0; b < bits; ++b) {
        const size_t x = bit + b;
        field |= ((static_cast<uint32_t>(f.qzeros_v1[grp * (f.n * bits / 32) + x / 32]) >> (x % 32)) & 1u) << b;
      }
      literal_differs += static_cast<int64_t>(field + 1) != static_cast<int64_t>(f.zeros[grp * f.n + n]);
    }
  }
  EXPECT_GT(literal_differs, 10);
}

// Our writer stores asymmetric v1 exactly as GPTQModel saves it.
TEST_P(V1Zeros, WrittenAsGPTQModelWritesThem) {
  const int bits = GetParam();
  const Fixture f = make_fixture(bits);
  quant::QuantResult r;
  r.n = f.n;
  r.k = f.k;
  r.bits = bits;
  r.group_size = 32;
  for (auto c : f.codes) r.codes.push_back(static_cast<uint8_t>(c));
  for (auto z : f.zeros) r.zeros.push_back(static_cast<int32_t>(z));
  for (auto s : f.scales) r.scales.push_back(core::fp16_to_fp32(s));
  r.g_idx = f.g_idx;
  const auto v1 = pipeline::pack_result("m", r, "gptq", {});
  EXPECT_EQ(v1.qzeros, f.qzeros_v1);
  EXPECT_EQ(v1.qweight, f.qweight);
  EXPECT_EQ(pipeline::pack_result("m", r, "gptq_v2", {}).qzeros, f.qzeros_v2);
}

INSTANTIATE_TEST_SUITE_P(Bits, V1Zeros, ::testing::Values(2, 3, 4, 8));

}  // namespace
}  // namespace gptq
