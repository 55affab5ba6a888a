// The per-row quantization grid of SPEC §3 (scale, zero point, codes), shared by GPTQ and RTN.
// Internal to gptq_quant; tests include it to check the fast paths against textbook formulas.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstddef>

#include "core/dtype.h"

namespace gptq::quant::detail {

struct Grid {
  int bits = 4;
  int maxq = 15;  // 2^bits - 1
  bool sym = true;
  bool mse = false;
  bool ggml = false;  // llama.cpp's Q4_0 / Q8_0 scale rule (find_params); sym, 4 or 8 bits
};

// The scale is the fp32 value the reference computes, (xmax - xmin) / maxq, unrounded: codes,
// zero points and GPTQ's error feedback all use it, as the GPTQ paper's code and GPTQModel do.
// Only the file holds it in fp16 (scale_to_fp16, when the result is stored). Rounding it first
// moves every weight that sits exactly on a rounding tie (the extreme of a symmetric group is at
// x / scale = -(2^(b-1) - 0.5) by construction) to the other side, which costs measurable
// perplexity on real models.
struct GroupParams {
  float scale = 1;
  int32_t zero = 0;
};

inline Grid make_grid(int bits, bool sym, bool mse, bool ggml = false) {
  return Grid{bits, (1 << bits) - 1, sym, mse, ggml};
}

// Rounds to nearest, ties to even, for |v| <= 2^22, in the default rounding mode: adding
// 1.5 * 2^23 pushes the fraction bits out of the float's mantissa, so the FPU's own
// round-to-nearest-even does the rounding. Same result as std::nearbyint there, but it stays a
// plain add, which the compiler vectorizes on baseline x86-64 (roundps needs SSE4.1 and
// nearbyintf is a library call). Callers clamp v into that range first.
inline float round_half_even(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

// q = clamp(round(w / scale) + zero, 0, maxq). The division (not a multiplication by 1/scale) is
// what PyTorch does, so codes agree with the Python tools on the same inputs. The quotient is
// clamped to +-512 before rounding: every value out there clamps to 0 or maxq anyway (maxq and
// zero are <= 255), and a NaN lands on 0 rather than being converted to int.
inline int32_t quant_code(float w, float scale, int32_t zero, int maxq) {
  float v = w / scale;
  v = v > -512.0f ? v : -512.0f;
  v = v < 512.0f ? v : 512.0f;
  float q = round_half_even(v) + static_cast<float>(zero);
  q = q > 0.0f ? q : 0.0f;
  q = q < static_cast<float>(maxq) ? q : static_cast<float>(maxq);
  return static_cast<int32_t>(q);
}

inline float dequant_value(int32_t code, float scale, int32_t zero) {
  return scale * static_cast<float>(code - zero);
}

// The scale as the file will hold it (fp16), with the two ends that fp16 cannot represent
// handled: an underflow to 0 becomes the smallest subnormal (2^-24), so that a reader's
// w / scale stays finite. Returns +Inf on overflow (the caller reports it).
inline float scale_to_fp16(float s) {
  const float r = core::fp16_to_fp32(core::fp32_to_fp16(s));
  if (r == 0.0f) return 5.9604645e-08f;  // 2^-24
  return r;
}

// |d|^2.4 for the MSE search, to ~1e-6 relative, branch-free so that the loop over a group
// vectorizes (std::pow would be ~80 times slower here and the search calls it 80 times per
// weight). With d = m * 2^e, m in [0.75, 1.5) and e = 5a + r (r in 0..4):
// d^2.4 = 2^(12a) * 2^(2.4 (r + log2 m)); the integer part 12a is exact, so the fp32 argument of
// exp2 stays below 12 in magnitude and keeps its precision for any e. log2 m from an atanh
// series, exp2 from a degree-7 polynomial on [-0.5, 0.5].
// Values below 1e-15 return 0 (their 2.4th power is below 1e-36 and cannot change a sum of
// errors that has a nonzero term; a group whose every error is that small is a tie anyway).
inline float pow_2p4(float d) {
  d = std::fabs(d);
  const uint32_t bits = std::bit_cast<uint32_t>(d);
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  float m = std::bit_cast<float>((bits & 0x7FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool big = m > 1.5f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float t = (m - 1.0f) / (m + 1.0f);  // |t| <= 0.2
  const float t2 = t * t;
  // ln m = 2 atanh t = 2 (t + t^3/3 + t^5/5 + t^7/7 + t^9/9)
  const float ln_m =
      2.0f * t * (1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9)))));
  const float ef = static_cast<float>(e);
  const float a = round_half_even(ef * 0.2f - 0.4f);  // e / 5 rounded down: e*0.2 - a in [0, 0.8]
  const float r = ef - 5.0f * a;                      // exact, 0..4
  const float y = 2.4f * r + (2.4f * 1.44269504f) * ln_m;
  const float ny = round_half_even(y);
  const float f = (y - ny) * 0.693147181f;  // |f| <= 0.35
  // e^f, Taylor to degree 7: error < 0.35^8 / 8! ~ 5e-9.
  const float p =
      1.0f +
      f * (1.0f +
           f * (0.5f +
                f * (1.0f / 6 +
                     f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720 + f * (1.0f / 5040)))))));
  float n = 12.0f * a + ny;
  n = n > -126.0f ? n : -126.0f;
  n = n < 127.0f ? n : 127.0f;
  const float two_n =
      std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return d < 1e-15f ? 0.0f : p * two_n;
}

// Scale and zero of one row of one group (SPEC §3 quantizer; with g.mse the shrink search), in
// the reference's fp32 arithmetic. With g.ggml, llama.cpp's rule instead: 4-bit, m = the value
// of largest magnitude (the first of equal ones) and scale = fp16(m / -8), so m lands on code 0
// exactly and the step is |m| / 8 (SPEC's grid spends |m| / 7.5); 8-bit, scale =
// fp16(max|x| / 127). The scale is rounded to fp16 here (codes and feedback use the file's value);
// a group of zeros takes m = 1 (any scale codes zeros as the zero point; llama.cpp writes d = 0,
// which GPTQ readers that divide by the scale cannot take). With g.mse the search tries
// p * m for the same shrink factors. x holds the group's len values of that row. Callers round the
// scale to fp16 only when they store it (scale_to_fp16) and report an overflow there, outside
// their parallel loops.
// weight (optional, len values, >= 0): with g.mse, the search minimizes sum weight_j * d_j^2
// instead of sum |d_j|^2.4 (GPTQ passes each column's loss weight 1 / U[j,j]^2, so the search
// minimizes GPTQ's own loss for the group's first rounding, as an importance matrix weights
// llama.cpp's search).
GroupParams find_params(const float* x, int64_t len, const Grid& g, const float* weight = nullptr);

// Error(kNumeric) naming the first NaN/Inf of W [N, K].
void check_weight_finite(const float* w, int64_t n, int64_t k);
// Error(kArgument) unless n, k >= 1 and w is non-null.
void check_shape(const float* w, int64_t n, int64_t k);
// Error(kNumeric) naming the row and group whose scale overflowed fp16, for the first entry of
// bad_group (per row: -1 when fine) that is set.
void throw_if_scale_overflow(const int64_t* bad_group, int64_t n);

}  // namespace gptq::quant::detail
