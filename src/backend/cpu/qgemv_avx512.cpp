// AVX-512 (F, BW, VL, DQ, VNNI) decode GEMV and int16 prefill GEMM for 2-, 4- and 8-bit GPTQ
// linears in the packed layout of qgemm_kernels.h, used at the avx512, avx512bf16 and amx levels
// (prefill at the amx level only below the AMX kernel's 32 rows).
//
// Compiled with the AVX-512 flags of src/CMakeLists.txt; the internal-linkage rules of
// qgemm_avx2.cpp apply (qgemm_kernels.h).
//
// The scheme is qgemv_i16_avx2.inc's: activations rounded per unit of 32 inputs to d * xi, and
// exact int32 sums of codes times xi. One zmm holds two adjacent blocks (16 columns): the low
// half is block b's 32-byte word t, the high half block b + 1's (one load plus one vinserti64x4
// from memory), so every shift, mask and vpdpwssd works on 16 columns, and one vpbroadcastd of
// the activation pair serves both halves. Per 64 bytes of 4-bit codes: 3 shifts + 4 ands + 4
// vpdpwssd, against 2 x 15 instructions with AVX2 (vpmaddwd + vpaddd). The sums, and the order in
// which they are converted and scaled, are the AVX2 kernel's per column, so the results equal it
// bit for bit (QLinear's DecodeEqualsAvx2Decode test). N is a multiple of 32 columns (4 blocks) and
// QLinear's ranges are whole chunks or a layer's last blocks, so ranges are even; an odd one
// would end in one block on ymm (the AVX2 tile with AVX512-VL's EVEX vpdpwssd).
//
// The prefill runs the same tiles over row blocks of 8: the codes are unpacked once per 8 rows
// and each vpdpwssd does 32 multiply-adds where an fp32 FMA does 16 (both issue two per cycle on
// the Intel cores measured), so it outruns the fp32 GEMM of exact weights (qgemm_avx512.cpp) by
// 1.5x at the cost of the decode path's activation rounding (2^-16 of a unit's largest |x|).
// Each output is its row's decode result bit for bit (QLinear.Int16PrefillEqualsDecodeRowByRow).
//
// Measured on an Intel AVX-512 VM (family 6 model 207, no AMX), 1.1B shape 4-bit g128, one
// thread, bench_qgemm, two alternating rounds: cache-resident 1.55-1.57x the AVX2 kernel's
// speed, from memory 1.07-1.10x; `gptq bench` decode +5-14% (README, Kernels). On Zen 4 (512-bit
// operations issued as two halves) the same kernel was 1.25-1.34x cache-resident and level with
// AVX2 from memory (0.88-1.01x in runs whose noise floor was +-15%).

// GCC 12's AVX-512 headers initialise _mm512_undefined_*() from themselves, which
// -Wmaybe-uninitialized reports wherever they are inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstdint>

#include "backend/cpu/qgemm_kernels.h"

namespace gptq::backend::detail {
namespace {

#include "backend/cpu/qgemm_common_avx2.inc"

#define GPTQ_I16_DOT(acc, code, x) _mm256_dpwssd_epi32((acc), (code), (x))
#include "backend/cpu/qgemv_i16_avx2.inc"
#undef GPTQ_I16_DOT

// Pairs of blocks per tile for R rows. Registers (32 zmm): NP words + R * NP int32 sums +
// R * NP fp32 sums per segment + R * NP outputs + one code + one activation.
template <int R>
struct Gemv512Shape;
template <>
struct Gemv512Shape<1> {
  static constexpr int kNp = 4;
};
template <>
struct Gemv512Shape<2> {
  static constexpr int kNp = 2;
};
template <>
struct Gemv512Shape<3> {
  static constexpr int kNp = 2;
};
template <>
struct Gemv512Shape<4> {
  static constexpr int kNp = 1;
};

inline __m512 load_fp16x8x2(const uint16_t* lo, const uint16_t* hi) {
  const __m256i v = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
  return _mm512_cvtph_ps(v);
}

inline __m512 load_u8x8x2_as_float(const uint8_t* lo, const uint8_t* hi) {
  const __m128i v = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(lo)),
                                       _mm_loadl_epi64(reinterpret_cast<const __m128i*>(hi)));
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
}

// Blocks [blk0, blk0 + 2 * NP) for R rows.
template <int BITS, int R, int NP>
void gemv512_tile(const PackedLayer& w, int64_t blk0, const int32_t* xq, const float* d,
                  const float* sx, float* y) {
  constexpr int kP = 16 / BITS;  // pairs per word
  constexpr int64_t kUnitWords = int64_t{BITS} * kBlockN;
  constexpr int kNb = 2 * NP;
  const float zero_offset = static_cast<float>(w.zero_offset);
  const uint32_t* wb[kNb];
  for (int b = 0; b < kNb; ++b) wb[b] = w.words + (blk0 + b) * w.n_units * kUnitWords;
  __m512 yacc[R][NP];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) yacc[r][p] = _mm512_setzero_ps();

  for (int64_t s = 0; s < w.n_seg; ++s) {
    const Segment seg = w.segs[s];
    __m512 facc[R][NP];
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < NP; ++p) facc[r][p] = _mm512_setzero_ps();
    for (int64_t u = seg.unit_begin; u < seg.unit_end; ++u) {
      if constexpr (kGemvPrefetchBytes > 0) {
        // As in qgemv_i16_avx2.inc: kAhead units ahead in each block's stream, and near the end
        // the same position in the next tile's blocks.
        constexpr int64_t kAhead = kGemvPrefetchBytes / (kUnitWords * 4);
        const int64_t ahead = u + kAhead;
        const int64_t skip = ahead < w.n_units ? 0 : (kNb - 1) * w.n_units * kUnitWords;
        for (int b = 0; b < kNb; ++b) {
          const char* next = reinterpret_cast<const char*>(wb[b] + skip + ahead * kUnitWords);
          for (int64_t off = 0; off < kUnitWords * 4; off += 64) {
            _mm_prefetch(next + off, kGemvPrefetchHint);
          }
        }
      }
      __m512i iacc[R][NP];
      for (int r = 0; r < R; ++r)
        for (int p = 0; p < NP; ++p) iacc[r][p] = _mm512_setzero_si512();
      static_for<0, BITS>([&]<int T>() {
        for (int p = 0; p < NP; ++p) {
          const __m512i wv = _mm512_inserti64x4(
              _mm512_castsi256_si512(_mm256_loadu_si256(
                  reinterpret_cast<const __m256i*>(wb[2 * p] + u * kUnitWords + T * kBlockN))),
              _mm256_loadu_si256(
                  reinterpret_cast<const __m256i*>(wb[2 * p + 1] + u * kUnitWords + T * kBlockN)),
              1);
          static_for<0, kP>([&]<int P>() {
            const __m512i code =
                _mm512_and_si512(P == 0 ? wv : _mm512_srli_epi32(wv, BITS * P),
                                 _mm512_set1_epi32(pair_mask<BITS>()));
            for (int r = 0; r < R; ++r) {
              const __m512i xb = _mm512_set1_epi32(
                  xq[(r * w.n_units + u) * kPairsPerUnit + T * kP + P]);
              iacc[r][p] = _mm512_dpwssd_epi32(iacc[r][p], code, xb);
              asm("" : "+v"(iacc[r][p]));  // keep the chain in order (qgemv_i16_avx2.inc)
            }
          });
        }
      });
      for (int r = 0; r < R; ++r) {
        const __m512 du = _mm512_set1_ps(d[r * w.n_units + u]);
        for (int p = 0; p < NP; ++p)
          facc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][p]), du, facc[r][p]);
      }
    }
    for (int p = 0; p < NP; ++p) {
      const int64_t meta0 = ((blk0 + 2 * p) * w.n_seg + s) * kBlockN;
      const int64_t meta1 = ((blk0 + 2 * p + 1) * w.n_seg + s) * kBlockN;
      const __m512 scale = load_fp16x8x2(w.scales + meta0, w.scales + meta1);
      const __m512 zero = _mm512_add_ps(load_u8x8x2_as_float(w.zeros + meta0, w.zeros + meta1),
                                        _mm512_set1_ps(zero_offset));
      for (int r = 0; r < R; ++r) {
        const __m512 sum_x = _mm512_set1_ps(sx[r * w.n_seg + s]);
        yacc[r][p] =
            _mm512_fmadd_ps(scale, _mm512_fnmadd_ps(zero, sum_x, facc[r][p]), yacc[r][p]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p)
      _mm512_storeu_ps(y + r * w.n + (blk0 + 2 * p) * kBlockN, yacc[r][p]);
}

template <int BITS, int R>
void gemv512_range(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                   float* y, int64_t b0, int64_t b1) {
  constexpr int kNp = Gemv512Shape<R>::kNp;
  int64_t b = b0;
  for (; b + 2 * kNp <= b1; b += 2 * kNp) gemv512_tile<BITS, R, kNp>(w, b, xq, d, sx, y);
  for (; b + 2 <= b1; b += 2) gemv512_tile<BITS, R, 1>(w, b, xq, d, sx, y);
  for (; b < b1; ++b) gemv_i16_tile<BITS, R, 1>(w, b, xq, d, sx, y);
}

template <int BITS>
void gemv512_rows(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                  int64_t m, float* y, int64_t b0, int64_t b1) {
  switch (m) {
    case 1:
      return gemv512_range<BITS, 1>(w, xq, d, sx, y, b0, b1);
    case 2:
      return gemv512_range<BITS, 2>(w, xq, d, sx, y, b0, b1);
    case 3:
      return gemv512_range<BITS, 3>(w, xq, d, sx, y, b0, b1);
    default:
      return gemv512_range<BITS, 4>(w, xq, d, sx, y, b0, b1);
  }
}

// Prefill: rows [r0, r1) times output blocks [b0, b1) (b1 - b0 even). Rows go 8 at a time
// (registers: 8 x 3 sums + one word + one code + one activation = 27 zmm), the rest 4, 2 and 1
// at a time; within a row block the tiles walk the column pairs, so the block's activations stay
// in L1 while the codes come from L2. Every output is one tile's, summed in the decode tile's
// order, so the result does not depend on how rows and columns are split.
template <int BITS>
void gemm512_range(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                   float* y, int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
  const int64_t x_stride = w.n_units * kPairsPerUnit;
  const auto rows = [&]<int R>(int64_t r) {
    for (int64_t b = b0; b < b1; b += 2) {
      gemv512_tile<BITS, R, 1>(w, b, xq + r * x_stride, d + r * w.n_units, sx + r * w.n_seg, y + r * w.n);
    }
  };
  int64_t r = r0;
  for (; r + 8 <= r1; r += 8) rows.template operator()<8>(r);
  if (r + 4 <= r1) {
    rows.template operator()<4>(r);
    r += 4;
  }
  if (r + 2 <= r1) {
    rows.template operator()<2>(r);
    r += 2;
  }
  if (r < r1) rows.template operator()<1>(r);
}

}  // namespace

void qgemm_i16_avx512(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                      float* y, int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
  switch (w.bits) {
    case 2:
      return gemm512_range<2>(w, xq, d, sx, y, r0, r1, b0, b1);
    case 4:
      return gemm512_range<4>(w, xq, d, sx, y, r0, r1, b0, b1);
    default:
      return gemm512_range<8>(w, xq, d, sx, y, r0, r1, b0, b1);
  }
}

void qgemv_i16_avx512(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                      int64_t m, float* y, int64_t b0, int64_t b1) {
  switch (w.bits) {
    case 2:
      return gemv512_rows<2>(w, xq, d, sx, m, y, b0, b1);
    case 4:
      return gemv512_rows<4>(w, xq, d, sx, m, y, b0, b1);
    default:
      return gemv512_rows<8>(w, xq, d, sx, m, y, b0, b1);
  }
}

}  // namespace gptq::backend::detail
