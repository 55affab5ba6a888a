// Bit positions of the repacked layout described in qgemm_kernels.h, for the baseline (non-AVX2)
// translation units: the repacker, the scalar kernels and dequantize(). Do not include this from a
// *_avx2.cpp file (its inline functions must not be compiled with AVX2 flags, see
// qgemm_kernels.h).
#pragma once

#include <cstdint>

#include "backend/cpu/qgemm_kernels.h"

namespace gptq::backend::detail {

// Codes of input kk (0..31) of one unit, one lane. `unit` points at the first word of the unit of
// one block ([bits][8] words); `lane` is the column inside the block.
inline uint32_t get_code(const uint32_t* unit, int lane, int bits, int kk) {
  auto word = [&](int t) { return unit[t * kBlockN + lane]; };
  switch (bits) {
    case 2:
      return (word(kk / 16) >> (2 * (kk % 16))) & 0x3u;
    case 4:
      return (word(kk / 8) >> (4 * (kk % 8))) & 0xFu;
    case 8:
      return (word(kk / 4) >> (8 * (kk % 4))) & 0xFFu;
    default:  // 3
      if (kk < 30) return (word(kk / 10) >> (3 * (kk % 10))) & 0x7u;
      return ((word(kk - 30) >> 30) & 0x3u) | (((word(2) >> (kk == 30 ? 30 : 31)) & 0x1u) << 2);
  }
}

// Stores code `q` (< 2^bits) of input kk of one lane into a zero-initialized unit.
inline void put_code(uint32_t* unit, int lane, int bits, int kk, uint32_t q) {
  auto word = [&](int t) -> uint32_t& { return unit[t * kBlockN + lane]; };
  switch (bits) {
    case 2:
      word(kk / 16) |= q << (2 * (kk % 16));
      break;
    case 4:
      word(kk / 8) |= q << (4 * (kk % 8));
      break;
    case 8:
      word(kk / 4) |= q << (8 * (kk % 4));
      break;
    default:  // 3
      if (kk < 30) {
        word(kk / 10) |= q << (3 * (kk % 10));
      } else {
        word(kk - 30) |= (q & 0x3u) << 30;
        word(2) |= ((q >> 2) & 0x1u) << (kk == 30 ? 30 : 31);
      }
      break;
  }
}

// The AVX2 GEMV kernel turns a code into fp32 without shifting it down first: it masks the code in
// place and converts the masked word, which yields q * 2^e with e = the code's bit offset (exact:
// at most 8 significant bits). It multiplies that by x * 2^-e, prepared here once per call, so
// the product is exactly q * x scaled by 1. The code in the top bits of a word is shifted down
// instead (masking it in place would set the sign bit of the int32), so its factor is 1.
// Exact for every |x| >= 2^-98 (e <= 28); below that x * 2^-e is subnormal and loses bits, which
// no activation of a real model reaches (zeros stay exact).
inline float gemv_x_scale(int bits, int kk) {
  int e = 0;
  switch (bits) {
    case 2:
      e = (kk % 16 == 15) ? 0 : 2 * (kk % 16);
      break;
    case 4:
      e = (kk % 8 == 7) ? 0 : 4 * (kk % 8);
      break;
    case 8:
      e = (kk % 4 == 3) ? 0 : 8 * (kk % 4);
      break;
    default:  // 3: inputs 30 and 31 are assembled from two words, already at bit 0.
      e = (kk < 30) ? 3 * (kk % 10) : 0;
      break;
  }
  return 1.0f / static_cast<float>(uint32_t{1} << e);
}

}  // namespace gptq::backend::detail
