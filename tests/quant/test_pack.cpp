// SPEC §1 packing: round trips, the v1 symmetric constants, hand-computed words, v1/v2 zeros.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <tuple>

#include "gptq/error.h"
#include "quant/quantizer.h"

using gptq::Error;
using gptq::ErrorKind;
namespace q = gptq::quant;

namespace {

uint32_t u32(int32_t v) { return static_cast<uint32_t>(v); }

std::vector<uint8_t> random_codes(int64_t n, int64_t k, int bits, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
  std::vector<uint8_t> c(static_cast<size_t>(n * k));
  for (auto& v : c) v = static_cast<uint8_t>(d(gen));
  return c;
}

class PackBits : public testing::TestWithParam<int> {};

TEST_P(PackBits, QweightRoundTrip) {
  const int bits = GetParam();
  const int64_t n = 48, k = 160;
  const auto codes = random_codes(n, k, bits, 1 + bits);
  const auto packed = q::pack_qweight(codes.data(), n, k, bits);
  EXPECT_EQ(static_cast<int64_t>(packed.size()), k * bits / 32 * n);
  EXPECT_EQ(q::unpack_qweight(packed.data(), n, k, bits), codes);
}

TEST_P(PackBits, QzerosRoundTrip) {
  const int bits = GetParam();
  const int64_t g = 5, n = 96;
  std::mt19937 gen(bits);
  std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
  std::vector<int32_t> zeros(static_cast<size_t>(g * n));
  for (auto& z : zeros) z = d(gen);
  const auto packed = q::pack_qzeros(zeros.data(), g, n, bits);
  EXPECT_EQ(static_cast<int64_t>(packed.size()), g * n * bits / 32);
  EXPECT_EQ(q::unpack_qzeros(packed.data(), g, n, bits), zeros);
}

// Symmetric quantization has z = 2^(b-1) everywhere; v1 stores z - 1.
TEST_P(PackBits, SymmetricV1Constants) {
  const int bits = GetParam();
  const int64_t g = 3, n = 64;
  const std::vector<int32_t> zeros(static_cast<size_t>(g * n), 1 << (bits - 1));
  auto packed = q::pack_qzeros(zeros.data(), g, n, bits);
  q::qzeros_v2_to_v1(packed, bits);
  ASSERT_EQ(static_cast<int64_t>(packed.size()), g * n * bits / 32);
  for (size_t i = 0; i < packed.size(); ++i) {
    uint32_t want = 0;
    switch (bits) {
      case 2: want = 0x55555555u; break;
      case 4: want = 0x77777777u; break;
      case 8: want = 0x7F7F7F7Fu; break;
      case 3: {
        static const uint32_t kTriple[3] = {0xDB6DB6DBu, 0xB6DB6DB6u, 0x6DB6DB6Du};
        want = kTriple[i % 3];
        break;
      }
    }
    EXPECT_EQ(u32(packed[i]), want) << "word " << i;
  }
  // And back: v1 -> v2 restores 2^(b-1).
  q::qzeros_v1_to_v2(packed, bits);
  EXPECT_EQ(q::unpack_qzeros(packed.data(), g, n, bits), zeros);
}

INSTANTIATE_TEST_SUITE_P(Bits, PackBits, testing::Values(2, 3, 4, 8),
                         [](const auto& info) {
                           std::string name = "b";  // ("b" + string trips GCC 12's -Wrestrict)
                           name += std::to_string(info.param);
                           return name;
                         });

TEST(Pack, HandComputedQweightWords) {
  // 4-bit: codes 0..7 of output 0 fill word (0, 0): value j at bits [4j, 4j+4).
  {
    const int64_t n = 2, k = 32;
    std::vector<uint8_t> codes(static_cast<size_t>(n * k), 0);
    for (int j = 0; j < 8; ++j) codes[j] = static_cast<uint8_t>(j);
    for (int j = 0; j < 8; ++j) codes[k + 8 + j] = 15;  // output 1, inputs 8..15 -> row 1
    const auto w = q::pack_qweight(codes.data(), n, k, 4);
    ASSERT_EQ(w.size(), 4u * 2u);  // [K*4/32, N] = [4, 2]
    EXPECT_EQ(u32(w[0 * n + 0]), 0x76543210u);
    EXPECT_EQ(u32(w[1 * n + 1]), 0xFFFFFFFFu);
    EXPECT_EQ(w[0 * n + 1], 0);
    EXPECT_EQ(w[1 * n + 0], 0);
  }
  // 2-bit: 0,1,2,3 repeated -> 0b11100100 per byte.
  {
    std::vector<uint8_t> codes(32);
    for (int j = 0; j < 32; ++j) codes[j] = static_cast<uint8_t>(j % 4);
    const auto w = q::pack_qweight(codes.data(), 1, 32, 2);
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(u32(w[0]), 0xE4E4E4E4u);
    EXPECT_EQ(u32(w[1]), 0xE4E4E4E4u);
  }
  // 8-bit: 1,2,3,4 -> 0x04030201.
  {
    std::vector<uint8_t> codes(32, 0);
    codes[0] = 1, codes[1] = 2, codes[2] = 3, codes[3] = 4, codes[31] = 0xAB;
    const auto w = q::pack_qweight(codes.data(), 1, 32, 8);
    ASSERT_EQ(w.size(), 8u);
    EXPECT_EQ(u32(w[0]), 0x04030201u);
    EXPECT_EQ(u32(w[7]), 0xAB000000u);
  }
  // 3-bit, one 96-bit stream in rows 3t..3t+2. Values 10 (bits 30..32) and 21 (bits 63..65)
  // straddle words. v0 = 7 -> word0 bits 0-2; v10 = 7 -> word0 bits 30,31 and word1 bit 0;
  // v21 = 5 (101b) -> word1 bit 31 and word2 bit 1; v31 = 6 (110b) -> word2 bits 30,31.
  {
    const int64_t n = 2, k = 64;
    std::vector<uint8_t> codes(static_cast<size_t>(n * k), 0);
    uint8_t* c1 = codes.data() + k + 32;  // output 1, second stream (rows 3..5)
    c1[0] = 7, c1[10] = 7, c1[21] = 5, c1[31] = 6;
    const auto w = q::pack_qweight(codes.data(), n, k, 3);
    ASSERT_EQ(w.size(), 6u * 2u);  // [K*3/32, N] = [6, 2]
    EXPECT_EQ(u32(w[3 * n + 1]), 0xC0000007u);
    EXPECT_EQ(u32(w[4 * n + 1]), 0x80000001u);
    EXPECT_EQ(u32(w[5 * n + 1]), 0xC0000002u);
    for (int r = 0; r < 6; ++r) EXPECT_EQ(w[r * n + 0], 0) << r;
    for (int r = 0; r < 3; ++r) EXPECT_EQ(w[r * n + 1], 0) << r;
    EXPECT_EQ(q::unpack_qweight(w.data(), n, k, 3), codes);
  }
}

TEST(Pack, HandComputedQzerosWords) {
  // qzeros packs along the output dim: word (grp, c) holds outputs c*(32/b) ...
  const int64_t g = 2, n = 32;
  std::vector<int32_t> z(static_cast<size_t>(g * n), 0);
  for (int j = 0; j < 8; ++j) z[n + 8 + j] = j;  // group 1, outputs 8..15 -> word (1, 1)
  const auto w = q::pack_qzeros(z.data(), g, n, 4);
  ASSERT_EQ(w.size(), 8u);
  EXPECT_EQ(u32(w[1 * 4 + 1]), 0x76543210u);
  // 3-bit: the 3 words are 3 consecutive columns of the row.
  std::vector<int32_t> z3(32, 0);
  z3[0] = 7, z3[10] = 7, z3[21] = 5, z3[31] = 6;
  const auto w3 = q::pack_qzeros(z3.data(), 1, 32, 3);
  ASSERT_EQ(w3.size(), 3u);
  EXPECT_EQ(u32(w3[0]), 0xC0000007u);
  EXPECT_EQ(u32(w3[1]), 0x80000001u);
  EXPECT_EQ(u32(w3[2]), 0xC0000002u);
}

TEST(Pack, V1V2ConversionOfWords) {
  // 4 bits, zero points 0, 3, 0, 0, ...: the v2 word is 0x00000030; GPTQModel's v1 word is that
  // minus 0x11111111 modulo 2^32, 0xEEEEEF1F (worked by hand: field 0 borrows from field 1,
  // field 2's borrow runs out of the word).
  std::vector<int32_t> w = {0x30};
  q::qzeros_v2_to_v1(w, 4);
  EXPECT_EQ(static_cast<uint32_t>(w[0]), 0xEEEEEF1Fu);
  q::qzeros_v1_to_v2(w, 4);
  EXPECT_EQ(w[0], 0x30);
  // Symmetric zero points 2^(b-1): the SPEC's v1 constants.
  for (auto [bits, z, want] : {std::tuple{2, 2, 0x55555555u}, {4, 8, 0x77777777u}, {8, 128, 0x7F7F7F7Fu}}) {
    std::vector<int32_t> zs(32, z);
    auto words = q::pack_qzeros(zs.data(), 1, 32, bits);
    q::qzeros_v2_to_v1(words, bits);
    for (int32_t x : words) EXPECT_EQ(static_cast<uint32_t>(x), want) << bits;
  }
  std::vector<int32_t> z3(32, 4);
  auto w3 = q::pack_qzeros(z3.data(), 1, 32, 3);
  q::qzeros_v2_to_v1(w3, 3);
  EXPECT_EQ(static_cast<uint32_t>(w3[0]), 0xDB6DB6DBu);
  EXPECT_EQ(static_cast<uint32_t>(w3[1]), 0xB6DB6DB6u);
  EXPECT_EQ(static_cast<uint32_t>(w3[2]), 0x6DB6DB6Du);
  // 3 bits: per field modulo 8, so a zero of 0 is a stored 7 and no neighbour changes.
  std::vector<int32_t> z0(32, 5);
  z0[10] = 0;  // the field that straddles words 0 and 1
  auto w0 = q::pack_qzeros(z0.data(), 1, 32, 3);
  q::qzeros_v2_to_v1(w0, 3);
  auto f0 = q::unpack_qzeros(w0.data(), 1, 32, 3);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(f0[j], j == 10 ? 7 : 4) << j;
  // Every word round-trips, whatever it holds.
  std::mt19937 rng(5);
  for (int bits : {2, 3, 4, 8}) {
    std::vector<int32_t> any(96);
    for (auto& x : any) x = static_cast<int32_t>(rng());
    auto t = any;
    q::qzeros_v2_to_v1(t, bits);
    q::qzeros_v1_to_v2(t, bits);
    EXPECT_EQ(t, any) << bits;
  }
  std::vector<int32_t> bad(4);
  EXPECT_THROW(q::qzeros_v1_to_v2(bad, 3), Error);
  EXPECT_THROW(q::qzeros_v1_to_v2(bad, 5), Error);
}

TEST(Pack, RejectsBadInput) {
  std::vector<uint8_t> codes(48, 0);
  auto kind_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return static_cast<int>(e.kind());
    }
    return -1;
  };
  EXPECT_EQ(kind_of([&] { q::pack_qweight(codes.data(), 1, 48, 4); }),
            static_cast<int>(ErrorKind::kShape));
  EXPECT_EQ(kind_of([&] { q::pack_qweight(codes.data(), 1, 32, 5); }),
            static_cast<int>(ErrorKind::kArgument));
  codes[3] = 16;
  EXPECT_EQ(kind_of([&] { q::pack_qweight(codes.data(), 1, 32, 4); }),
            static_cast<int>(ErrorKind::kArgument));
  std::vector<int32_t> z(32, 4);
  EXPECT_EQ(kind_of([&] { q::pack_qzeros(z.data(), 1, 32, 2); }),
            static_cast<int>(ErrorKind::kArgument));
  z[0] = -1;
  EXPECT_EQ(kind_of([&] { q::pack_qzeros(z.data(), 1, 32, 4); }),
            static_cast<int>(ErrorKind::kArgument));
  EXPECT_EQ(kind_of([&] { q::pack_qzeros(z.data(), 1, 16, 4); }),
            static_cast<int>(ErrorKind::kShape));
}

}  // namespace
