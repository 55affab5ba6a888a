// fp16/bf16 <-> fp32 against values worked out by hand from the IEEE layouts, directly and through
// TensorStore::read_f32 (the path every checkpoint load takes).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors.h"

namespace gptq::io {
namespace {

using core::bf16_to_fp32;
using core::fp16_to_fp32;
using core::fp32_to_bf16;
using core::fp32_to_fp16;

float bits_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// 2^e as a float, exactly.
float p2(int e) { return std::ldexp(1.0f, e); }

TEST(Fp16, ExactValues) {
  // binary16: sign | 5-bit exponent (bias 15) | 10-bit mantissa.
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3C00);               // 0 01111 0000000000
  EXPECT_EQ(fp32_to_fp16(-2.5f), 0xC100);              // -1.25 * 2^1: 1 10000 0100000000
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7BFF);           // largest finite: (2 - 2^-10) * 2^15
  EXPECT_EQ(fp32_to_fp16(p2(-14)), 0x0400);            // smallest normal
  EXPECT_EQ(fp32_to_fp16(p2(-14) - p2(-24)), 0x03FF);  // largest subnormal
  EXPECT_EQ(fp32_to_fp16(p2(-24)), 0x0001);            // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(0.1f), 0x2E66);  // 0.0999755859375, the nearest binary16

  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC100), -2.5f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), p2(-24));  // 5.9604644775390625e-08
  EXPECT_EQ(fp16_to_fp32(0x03FF), p2(-14) - p2(-24));
  EXPECT_EQ(fp16_to_fp32(0x0400), p2(-14));
  EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953125f);  // 0x155 / 1024 * 2^-1 + 2^-2
  EXPECT_EQ(fp16_to_fp32(0x2E66), 0.0999755859375f);
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)) && fp16_to_fp32(0x8000) == 0.0f);
}

TEST(Fp16, RoundsTiesToEven) {
  // Halfway between 1 and 1 + 2^-10: ties go to the even mantissa (0).
  EXPECT_EQ(fp32_to_fp16(1.0f + p2(-11)), 0x3C00);
  // Halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): up.
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * p2(-11)), 0x3C02);
  // A hair above halfway rounds up.
  EXPECT_EQ(fp32_to_fp16(1.0f + p2(-11) + p2(-20)), 0x3C01);
  // Subnormal ties: 2^-25 is halfway between 0 and 2^-24 -> 0; 3 * 2^-25 -> 2 * 2^-24.
  EXPECT_EQ(fp32_to_fp16(p2(-25)), 0x0000);
  EXPECT_EQ(fp32_to_fp16(3 * p2(-25)), 0x0002);
  EXPECT_EQ(fp32_to_fp16(p2(-25) * 1.0001f), 0x0001);
  EXPECT_EQ(fp32_to_fp16(1e-8f), 0x0000);  // below half the smallest subnormal
  // 65520 is halfway between 65504 and 65536 (= Inf in binary16): even is Inf, as torch does.
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(1e6f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(-1e6f), 0xFC00);
}

TEST(Fp16, InfAndNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fp32_to_fp16(inf), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(-inf), 0xFC00);
  EXPECT_EQ(fp16_to_fp32(0x7C00), inf);
  EXPECT_EQ(fp16_to_fp32(0xFC00), -inf);
  const uint16_t nan16 = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan16 & 0x7C00, 0x7C00);
  EXPECT_NE(nan16 & 0x03FF, 0);  // still a NaN, not Inf
  // A NaN whose payload sits only in the low fp32 mantissa bits must not become Inf.
  const uint16_t low_payload = fp32_to_fp16(bits_f32(0x7F800001u));
  EXPECT_NE(low_payload & 0x03FF, 0);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0xFC01)));
}

TEST(Fp16, EveryFiniteHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;  // Inf/NaN tested above
    ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(Bf16, ExactValuesTiesAndSpecials) {
  // bfloat16 is the top half of binary32.
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(fp32_to_bf16(-2.5f), 0xC020);
  EXPECT_EQ(fp32_to_bf16(0.1f), 0x3DCD);  // 0x3DCCCCCD: low half 0xCCCD > 0x8000 rounds up
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xC020), -2.5f);
  EXPECT_EQ(bf16_to_fp32(0x7F7F), 3.3895313892515355e38f);  // largest finite
  EXPECT_EQ(bf16_to_fp32(0x0001), p2(-133));                // smallest subnormal
  EXPECT_EQ(fp32_to_bf16(p2(-133)), 0x0001);

  EXPECT_EQ(fp32_to_bf16(1.0f + p2(-8)), 0x3F80);                      // tie, even stays
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * p2(-8)), 0x3F82);                  // tie, odd goes up
  EXPECT_EQ(fp32_to_bf16(1.0f + p2(-8) + p2(-20)), 0x3F81);            // above the tie
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to Inf

  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fp32_to_bf16(inf), 0x7F80);
  EXPECT_EQ(fp32_to_bf16(-inf), 0xFF80);
  EXPECT_EQ(bf16_to_fp32(0xFF80), -inf);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A signalling NaN with only low payload bits must stay a NaN (naive truncation gives Inf).
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(bits_f32(0x7F800001u)))));
  EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
}

TEST(ReadF32, ConvertsHalfBfloatAndDouble) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("gptq_io_conv_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::vector<uint16_t> h = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x7C00, 0x7E00};
  const std::vector<uint16_t> b = {0x3F80, 0xC020, 0x7F7F, 0x0001, 0xFF80, 0x7FC0};
  const std::vector<double> d = {1.0, -2.5, 1e-50, 1e300};
  write_safetensors(dir / "model.safetensors", {{"h", DType::kF16, {2, 3}, h.data(), 12},
                                                {"b", DType::kBF16, {6}, b.data(), 12},
                                                {"d", DType::kF64, {4}, d.data(), 32}});
  {
    const TensorStore store = TensorStore::open_dir(dir);
    const std::vector<float> hf = store.read_f32("h", {2, 3});
    EXPECT_EQ(hf[0], 1.0f);
    EXPECT_EQ(hf[1], -2.5f);
    EXPECT_EQ(hf[2], 65504.0f);
    EXPECT_EQ(hf[3], p2(-24));
    EXPECT_EQ(hf[4], std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(hf[5]));
    const std::vector<float> bf = store.read_f32("b", {6});
    EXPECT_EQ(bf[0], 1.0f);
    EXPECT_EQ(bf[1], -2.5f);
    EXPECT_EQ(bf[2], 3.3895313892515355e38f);
    EXPECT_EQ(bf[3], p2(-133));
    EXPECT_EQ(bf[4], -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(bf[5]));
    const std::vector<float> df = store.read_f32("d");
    EXPECT_EQ(df[0], 1.0f);
    EXPECT_EQ(df[1], -2.5f);
    EXPECT_EQ(df[2], 0.0f);  // underflows fp32
    EXPECT_TRUE(std::isinf(df[3]));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gptq::io
