// AVX2 + FMA + F16C kernels for GPTQ linears in the packed layout of qgemm_kernels.h.
//
// Compiled with -mavx2 -mfma -mf16c. Everything here except the two entry points has internal
// linkage, and nothing from a header that a baseline file also uses is instantiated here (no
// std::vector, std::min, fp16 helpers): a shared inline function compiled with AVX2 could be the
// copy the linker keeps for the baseline code too. The core::parallel_for instantiations are
// unique to this file because their lambdas are.
//
// Notation: a block is 8 output columns (one ymm of fp32, lane j = column j), a unit is 32 inputs.

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/qgemm_kernels.h"
#include "core/parallel.h"

namespace gptq::backend::detail {
namespace {

#include "backend/cpu/qgemm_common_avx2.inc"
#include "backend/cpu/qgemm_dequant_avx2.inc"

// vpmaddwd, then vpaddd into the int32 sums.
#define GPTQ_I16_DOT(acc, code, x) _mm256_add_epi32((acc), _mm256_madd_epi16((code), (x)))
#include "backend/cpu/qgemv_i16_avx2.inc"
#undef GPTQ_I16_DOT


// ---------------------------------------------------------------------------------------------
// Code extraction.
//
// gemv_code: code I of every lane of word w, as fp32 q * 2^(bits*I). Masking the code in place and
// converting the whole word costs two instructions (vpand, vcvtdq2ps), against three for
// shift + mask + convert; the power of two is folded into the activations once per call (see
// gemv_x_scale() in qlayout.h), so q * 2^e * (x * 2^-e) == q * x exactly. The last code of a 2-,
// 4- or 8-bit word reaches bit 31, where masking would make the int32 negative: it is shifted
// down instead, and a logical shift needs no mask.
template <int BITS, int I>
inline __m256 gemv_code(__m256i w) {
  constexpr int kPerWord = codes_per_word(BITS);
  if constexpr (BITS != 3 && I == kPerWord - 1) {
    return _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 32 - BITS));
  } else {
    constexpr uint32_t kMask = ((1u << BITS) - 1u) << (BITS * I);
    return _mm256_cvtepi32_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int32_t>(kMask))));
  }
}

// ---------------------------------------------------------------------------------------------

// =============================================================================================
// Decode: GEMV over R <= 4 rows.
//
// Memory-bound: at 4 bits a block-unit is 128 bytes of codes for 256 multiply-adds, and the
// weight stream must be read once at close to DRAM bandwidth. The per-code work is therefore kept
// to vpand + vcvtdq2ps + vfmadd (one vbroadcastss of x per input, shared by all NB blocks of the
// tile and loaded on a load port, not an ALU port). On Intel cores since Skylake these three run
// on ports 0/1 (convert, FMA) and 0/1/5 (and), so 8 codes of one block cost about 1 cycle, which
// is 16+ GB/s of 4-bit weights per core at 2.5 GHz.
//
// Scales and zero points stay out of the inner loop: per group and column,
//   y += s * (sum_k q_k x_k - z * sum_k x_k),
// where sum_k x_k over the group (sx) is computed once per call for all columns. The inner loop
// is a pure integer-to-float FMA chain per column; fp16 scales and u8 zeros are converted
// (vcvtph2ps, vpmovzxbd) once per group per block.
//
// Accumulators: acc[S][R][NB]. Each FMA has 4 cycles of latency and two can issue per cycle, so a
// chain per block would stall; S partial sums (input k goes to partial k % S) give R*NB*S
// independent chains. The partials are added in a fixed order at the end of each group, so a
// column's result depends on R and S only, never on NB or on the thread split.
// =============================================================================================

template <int R>
struct GemvShape;
// Measured on a Sapphire Rapids core (4-bit, cache-resident, 2048 x 2048):
//  R = 1: 4 blocks x 1 partial is fastest (4 chains, each fed every ~4 cycles, just covers the
//         FMA latency); 2 x 2 and 2 x 4 are 3-8% slower; 8 x 1 runs out of the 16 ymm registers
//         and is 45% slower.
//  R = 2: 2 x 2 (8 chains); 2 x 1 has 4 chains fed every ~3 cycles and is latency-bound (+20%).
//  R = 3, 4: 2 x 1 gives 6 and 8 chains; 2 x 2 is 12% slower for R = 3 (register spills).
template <>
struct GemvShape<1> {
  static constexpr int kNb = 4, kS = 1;
};
template <>
struct GemvShape<2> {
  static constexpr int kNb = 2, kS = 2;
};
template <>
struct GemvShape<3> {
  static constexpr int kNb = 2, kS = 1;
};
template <>
struct GemvShape<4> {
  static constexpr int kNb = 2, kS = 1;
};

template <int BITS, int R, int NB, int S>
inline __attribute__((always_inline)) void gemv_unit(const uint32_t* const (&wu)[NB],
                                                     const float* const (&xu)[R],
                                                     __m256 (&acc)[S][R][NB]) {
  // One FMA step: input KK of the unit, codes q[b] of the NB blocks.
  auto fma_step = [&]<int KK>(const __m256(&q)[NB]) {
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_broadcast_ss(xu[r] + KK);
      for (int b = 0; b < NB; ++b) acc[KK % S][r][b] = _mm256_fmadd_ps(q[b], xb, acc[KK % S][r][b]);
    }
  };
  auto load = [&](int b, int t) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wu[b] + t * kBlockN));
  };
  if constexpr (BITS == 3) {
    static_for<0, 3>([&]<int T>() {
      __m256i w[NB];
      for (int b = 0; b < NB; ++b) w[b] = load(b, T);
      static_for<0, 10>([&]<int I>() {
        __m256 q[NB];
        for (int b = 0; b < NB; ++b) q[b] = gemv_code<3, I>(w[b]);
        fma_step.template operator()<T * 10 + I>(q);
      });
    });
    static_for<30, 32>([&]<int KK>() {
      __m256 q[NB];
      for (int b = 0; b < NB; ++b) {
        q[b] = _mm256_cvtepi32_ps(code3_tail<KK>(load(b, 0), load(b, 1), load(b, 2)));
      }
      fma_step.template operator()<KK>(q);
    });
  } else {
    constexpr int kPerWord = 32 / BITS;
    static_for<0, BITS>([&]<int T>() {
      __m256i w[NB];
      for (int b = 0; b < NB; ++b) w[b] = load(b, T);
      static_for<0, kPerWord>([&]<int I>() {
        __m256 q[NB];
        for (int b = 0; b < NB; ++b) q[b] = gemv_code<BITS, I>(w[b]);
        fma_step.template operator()<T * kPerWord + I>(q);
      });
    });
  }
}

// Blocks [blk0, blk0 + NB) for R rows: y[r, columns of the blocks] = sum over segments.
template <int BITS, int R, int NB, int S>
void gemv_tile(const PackedLayer& w, int64_t blk0, const float* xs, const float* sx, float* y) {
  constexpr int64_t kUnitWords = int64_t{BITS} * kBlockN;
  const float zero_offset = static_cast<float>(w.zero_offset);
  const uint32_t* wb[NB];
  for (int b = 0; b < NB; ++b) wb[b] = w.words + (blk0 + b) * w.n_units * kUnitWords;
  __m256 yacc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) yacc[r][b] = _mm256_setzero_ps();

  for (int64_t s = 0; s < w.n_seg; ++s) {
    const Segment seg = w.segs[s];
    __m256 acc[S][R][NB];
    for (int p = 0; p < S; ++p)
      for (int r = 0; r < R; ++r)
        for (int b = 0; b < NB; ++b) acc[p][r][b] = _mm256_setzero_ps();
    for (int64_t u = seg.unit_begin; u < seg.unit_end; ++u) {
      const uint32_t* wu[NB];
      for (int b = 0; b < NB; ++b) wu[b] = wb[b] + u * kUnitWords;
      if constexpr (kGemvPrefetchBytes > 0) {
        for (int b = 0; b < NB; ++b) {
          for (int64_t off = 0; off < kUnitWords * 4; off += 64) {
            _mm_prefetch(reinterpret_cast<const char*>(wu[b]) + kGemvPrefetchBytes + off,
                         kGemvPrefetchHint);
          }
        }
      }
      const float* xu[R];
      for (int r = 0; r < R; ++r) xu[r] = xs + r * w.kp + u * kUnitK;
      gemv_unit<BITS, R, NB, S>(wu, xu, acc);
    }
    // y += s * (q.x - z * sum(x)), per column; fp16 scale and u8 zero converted here only.
    for (int b = 0; b < NB; ++b) {
      const int64_t meta = ((blk0 + b) * w.n_seg + s) * kBlockN;
      const __m256 scale = load_fp16x8(w.scales + meta);
      const __m256 zero =
          _mm256_add_ps(load_u8x8_as_float(w.zeros + meta), _mm256_set1_ps(zero_offset));
      for (int r = 0; r < R; ++r) {
        __m256 dot = acc[0][r][b];
        for (int p = 1; p < S; ++p) dot = _mm256_add_ps(dot, acc[p][r][b]);
        const __m256 sum_x = _mm256_broadcast_ss(sx + r * w.n_seg + s);
        yacc[r][b] = _mm256_fmadd_ps(scale, _mm256_fnmadd_ps(zero, sum_x, dot), yacc[r][b]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) _mm256_storeu_ps(y + r * w.n + (blk0 + b) * kBlockN, yacc[r][b]);
}

template <int BITS, int R>
void gemv(const PackedLayer& w, const float* xs, const float* sx, float* y) {
  constexpr int kNb = GemvShape<R>::kNb, kS = GemvShape<R>::kS;
  core::parallel_for(w.n_blocks, [&](int64_t b0, int64_t b1) {
    int64_t b = b0;
    for (; b + kNb <= b1; b += kNb) gemv_tile<BITS, R, kNb, kS>(w, b, xs, sx, y);
    for (; b < b1; ++b) gemv_tile<BITS, R, 1, kS>(w, b, xs, sx, y);
  });
}

template <int BITS>
void gemv_rows(const PackedLayer& w, const float* xs, const float* sx, int64_t m, float* y) {
  switch (m) {
    case 1:
      return gemv<BITS, 1>(w, xs, sx, y);
    case 2:
      return gemv<BITS, 2>(w, xs, sx, y);
    case 3:
      return gemv<BITS, 3>(w, xs, sx, y);
    default:
      return gemv<BITS, 4>(w, xs, sx, y);
  }
}

// Rounds one row of x to units of d * xi and writes the pairs (layout in qgemm_kernels.h).
void prepare_i16_row(const PackedLayer& w, const float* x, int32_t* xq, float* d, float* sx) {
  const int per_word = 32 / w.bits, kp_pairs = 16 / w.bits;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t s = 0; s < w.n_seg; ++s) {
    double seg_sum = 0;
    for (int64_t u = w.segs[s].unit_begin; u < w.segs[s].unit_end; ++u) {
      const float* xu = x + u * kUnitK;
      __m256 v[4];
      __m256 mx = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(xu + 8 * i);
        mx = _mm256_max_ps(mx, _mm256_and_ps(v[i], abs_mask));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float maxabs = _mm_cvtss_f32(m4);
      bool has_nan = false;  // max_ps drops a NaN operand: look for one explicitly
      for (int i = 0; i < 4; ++i)
        has_nan |= _mm256_movemask_ps(_mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q)) != 0;
      // Non-finite inputs reach the outputs through d (the integers cannot carry them): NaN stays
      // NaN, inf makes the sums NaN (inf * 0), as an fp32 product with mixed signs would. A unit
      // whose largest |x| is below 1e-30 counts as zero (32767 / maxabs would overflow).
      float du = maxabs / 32767.0f, inv = 0.0f;
      if (has_nan) {
        du = __builtin_nanf("");
      } else if (maxabs == __builtin_inff()) {
        du = __builtin_inff();
      } else if (maxabs < 1e-30f) {
        du = 0.0f;
      } else {
        inv = 32767.0f / maxabs;
      }
      alignas(32) int32_t xi[kUnitK];
      const __m256 vinv = _mm256_set1_ps(inv);
      const __m256 lim = _mm256_set1_ps(32767.0f);
      __m256i isum = _mm256_setzero_si256();
      for (int i = 0; i < 4; ++i) {
        __m256 t = _mm256_mul_ps(v[i], vinv);
        t = _mm256_min_ps(_mm256_max_ps(t, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
        const __m256i q = _mm256_cvtps_epi32(t);  // nearest, ties to even (default MXCSR)
        isum = _mm256_add_epi32(isum, q);
        _mm256_store_si256(reinterpret_cast<__m256i*>(xi + 8 * i), q);
      }
      int32_t* pu = xq + u * kPairsPerUnit;
      for (int t = 0; t < w.bits; ++t) {
        for (int p = 0; p < kp_pairs; ++p) {
          const int32_t lo = xi[t * per_word + p], hi = xi[t * per_word + p + kp_pairs];
          pu[t * kp_pairs + p] = static_cast<int32_t>((static_cast<uint32_t>(lo) & 0xffffu) |
                                                      (static_cast<uint32_t>(hi) << 16));
        }
      }
      alignas(32) int32_t parts[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(parts), isum);
      int64_t total = 0;
      for (int32_t p : parts) total += p;
      d[u] = du;
      seg_sum += static_cast<double>(du) * static_cast<double>(total);
    }
    sx[s] = static_cast<float>(seg_sum);
  }
}

// =============================================================================================
// Prefill: GEMM for m > 4.
//
// Choice: dequantize a tile of weights to fp32 once and run an fp32 register-blocked FMA kernel
// over all rows of x, rather than quantizing x to int8 and using vpmaddubsw. The int8 route has at
// most ~2x the multiply throughput of FMA on AVX2 (vpmaddubsw + vpmaddwd per 32 products), but
//  - it changes the numbers: int8 activations carry ~0.4% error per element (more with outlier
//    channels), where the fp32 route computes with the exact dequantized weights s*(q-z);
//  - vpmaddubsw saturates at int16 for 8-bit codes (255*127*2 > 32767), so 8-bit needs another
//    scheme, and the zero points need correction terms per group and row.
// At the same accuracy only the fp32 route qualifies, and its cost is the FMA kernel's: the
// dequantization (~4 instructions per 8 weights) is paid once per tile and spread over m rows.
//
// Loop nest per thread (a contiguous range of 16-column pairs of blocks):
//   for each chunk of kKcUnits units (256 inputs):        x[:, chunk] (m x 1 KB) stays in L2
//     for each pair:  dequantize W[pair, chunk] -> tile   16 KB, stays in L1
//       for each 6 rows of x: microkernel 6 x 16          12 accumulators in registers
// The microkernel per input: 2 loads of the tile, 6 broadcasts of x, 12 FMAs. 12 accumulators +
// 2 weight vectors + 1 broadcast = 15 of the 16 ymm registers; the 12 independent FMA chains
// cover the 4-cycle FMA latency at 2 FMAs per cycle. Chunk results are added to y in order, so
// every y element sums in the same order whatever the thread count.
// =============================================================================================

constexpr int kMr = 6;  // rows per microkernel call (kKcUnits, kPairN, dequant_pair: qgemm_dequant_avx2.inc)

// y[0:MR, 0:16] (+)= x[0:MR, 0:len] * tile[0:len, 0:16]. x rows are ldx apart, y rows ldy apart.
// The accumulators are named variables, not an array: GCC kept an array of them in registers but
// also stored it to the stack on every step (10 stores per 12 FMAs), which halved the speed.
template <int MR>
void microkernel(const float* x, int64_t ldx, const float* tile, int64_t len, float* y, int64_t ldy,
                 bool accumulate) {
  static_assert(MR >= 1 && MR <= 6);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (accumulate) {
    // The partial sums of y from the previous chunk are read after the k loop. For wide layers
    // (gate/up: 512 x 5632 floats) they have left L2 by then, and 12 dependent L3 misses at the
    // end of each call cost ~15%; prefetching them now hides the misses behind the k loop.
    for (int r = 0; r < MR; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(y + r * ldy), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(y + r * ldy + kPairN - 1), _MM_HINT_T0);
    }
  }
  const float* x0 = x;
  const float* x1 = x0 + (MR > 1 ? ldx : 0);
  const float* x2 = x1 + (MR > 2 ? ldx : 0);
  const float* x3 = x2 + (MR > 3 ? ldx : 0);
  const float* x4 = x3 + (MR > 4 ? ldx : 0);
  const float* x5 = x4 + (MR > 5 ? ldx : 0);
#define GPTQ_ROW(i)                                 \
  if constexpr (MR > i) {                           \
    const __m256 a = _mm256_broadcast_ss(x##i + k); \
    c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);      \
    c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);      \
  }
  for (int64_t k = 0; k < len; ++k) {
    const __m256 b0 = _mm256_load_ps(tile + k * kPairN);
    const __m256 b1 = _mm256_load_ps(tile + k * kPairN + kBlockN);
    GPTQ_ROW(0)
    GPTQ_ROW(1)
    GPTQ_ROW(2)
    GPTQ_ROW(3)
    GPTQ_ROW(4)
    GPTQ_ROW(5)
  }
#undef GPTQ_ROW
#define GPTQ_STORE(i)                                                  \
  if constexpr (MR > i) {                                              \
    float* yr = y + i * ldy;                                           \
    if (accumulate) {                                                  \
      c##i##0 = _mm256_add_ps(_mm256_loadu_ps(yr), c##i##0);           \
      c##i##1 = _mm256_add_ps(_mm256_loadu_ps(yr + kBlockN), c##i##1); \
    }                                                                  \
    _mm256_storeu_ps(yr, c##i##0);                                     \
    _mm256_storeu_ps(yr + kBlockN, c##i##1);                           \
  }
  GPTQ_STORE(0)
  GPTQ_STORE(1)
  GPTQ_STORE(2)
  GPTQ_STORE(3)
  GPTQ_STORE(4)
  GPTQ_STORE(5)
#undef GPTQ_STORE
}

void microkernel_rows(int64_t rows, const float* x, int64_t ldx, const float* tile, int64_t len,
                      float* y, int64_t ldy, bool accumulate) {
  switch (rows) {
    case 1:
      return microkernel<1>(x, ldx, tile, len, y, ldy, accumulate);
    case 2:
      return microkernel<2>(x, ldx, tile, len, y, ldy, accumulate);
    case 3:
      return microkernel<3>(x, ldx, tile, len, y, ldy, accumulate);
    case 4:
      return microkernel<4>(x, ldx, tile, len, y, ldy, accumulate);
    case 5:
      return microkernel<5>(x, ldx, tile, len, y, ldy, accumulate);
    default:
      return microkernel<6>(x, ldx, tile, len, y, ldy, accumulate);
  }
}

template <int BITS>
void gemm(const PackedLayer& w, const float* xp, int64_t m, float* y) {
  const int64_t n_pairs = w.n_blocks / 2;  // N is a multiple of 32
  core::parallel_for(n_pairs, [&](int64_t p0, int64_t p1) {
    alignas(32) float tile[kTileK * kPairN];  // 16 KB
    for (int64_t u0 = 0; u0 < w.n_units; u0 += kKcUnits) {
      const int64_t u1 = u0 + kKcUnits < w.n_units ? u0 + kKcUnits : w.n_units;
      const int64_t len = (u1 - u0) * kUnitK;
      for (int64_t p = p0; p < p1; ++p) {
        dequant_pair<BITS>(w, p, u0, u1, tile);
        for (int64_t r = 0; r < m; r += kMr) {
          const int64_t rows = m - r < kMr ? m - r : kMr;
          microkernel_rows(rows, xp + r * w.kp + u0 * kUnitK, w.kp, tile, len,
                           y + r * w.n + p * kPairN, w.n, u0 != 0);
        }
      }
    }
  });
}

}  // namespace

void qgemv_i16_prepare_avx2(const PackedLayer& w, const float* xp, int64_t m, int32_t* xq, float* d,
                            float* sx) {
  for (int64_t r = 0; r < m; ++r) {
    prepare_i16_row(w, xp + r * w.kp, xq + r * w.n_units * kPairsPerUnit, d + r * w.n_units,
                    sx + r * w.n_seg);
  }
}

void qgemv_i16_avx2(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                    int64_t m, float* y, int64_t b0, int64_t b1) {
  gemv_i16_any_bits(w, xq, d, sx, m, y, b0, b1);
}

void qgemv_avx2(const PackedLayer& w, const float* xs, const float* sx, int64_t m, float* y) {
  // 3-bit only: the other widths take the 16-bit integer path (qgemv_i16_avx2).
  gemv_rows<3>(w, xs, sx, m, y);
}

void qgemm_avx2(const PackedLayer& w, const float* xp, int64_t m, float* y) {
  switch (w.bits) {
    case 2:
      return gemm<2>(w, xp, m, y);
    case 3:
      return gemm<3>(w, xp, m, y);
    case 4:
      return gemm<4>(w, xp, m, y);
    default:
      return gemm<8>(w, xp, m, y);
  }
}

}  // namespace gptq::backend::detail
