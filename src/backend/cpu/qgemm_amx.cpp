// AMX prefill GEMM for GPTQ linears in the packed layout of qgemm_kernels.h.
//
// Compiled with the AVX-512 flags plus AVX512-BF16, AMX-TILE and AMX-BF16 (src/CMakeLists.txt);
// internal linkage for everything but the entry point, as in qgemm_avx2.cpp.
//
// The tile instruction tdpbf16ps multiplies bf16 values with fp32 sums: C[16x16] += A[16x32] *
// B[32x16], 8192 products per instruction. bf16 keeps 8 significant bits, and neither the
// activations nor the dequantized weights (an 11-bit scale times a code) fit in it, so each is
// split in two bf16 parts, v = hi + lo + e with hi = bf16(v), lo = bf16(v - hi) and
// |e| <= 2^-18 |v|, and the kernel sums x_hi w_hi + x_hi w_lo + x_lo w_hi: three passes, the
// dropped x_lo w_lo below 2^-18 |x w|. Each product is then within ~2^-16 of x w in relative
// terms and the sums are fp32 (the order inside tdpbf16ps is the hardware's), so outputs stay
// within ~1e-5 of the fp32 kernels' (tests/backend/qlinear_test.cpp bounds it) instead of the
// ~4e-3 that plain bf16 operands would cost.
//
// The three passes are laid out as one bf16 GEMM of triple depth: for each 32-input step s the
// activations hold [hi, hi, lo] and the weights [hi, lo, hi], so one loop of tdpbf16ps runs them.
//
// Blocking: rows in chunks of kMc (the packed activations of a chunk, kMc x (3 kp + 32) bf16, are shared
// by all threads), inputs in chunks of 256 (the weight tiles of qgemm_dequant_avx2.inc, dequantized
// exactly as the other kernels do, then split into the tdpbf16ps layout: 24 KB per 16 columns),
// columns split among threads in units of 32 (so threads never share an output; results do not
// depend on the thread count). The microkernel holds a 32 x 32 block of y in four tiles, with two
// activation tiles and two weight tiles.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/qgemm_kernels.h"
#include "core/parallel.h"

namespace gptq::backend::detail {
namespace {

#include "backend/cpu/qgemm_common_avx2.inc"
#include "backend/cpu/qgemm_dequant_avx2.inc"
#include "backend/cpu/amx_common.inc"

constexpr int kPasses = 3;
constexpr int64_t kStepK = 32;              // inputs per tile step (16 bf16 pairs)
constexpr int64_t kMc = 256;                // rows per row chunk
constexpr int64_t kBm = 32;                 // rows per microkernel block (two tiles)
constexpr int64_t kBn = 2 * kPairN;         // columns per microkernel block (two tiles)
// A 16-column weight panel of one 256-input chunk: 3 passes x 128 input pairs, 16 dwords each.
// Row stride of the packed activations: 3 kp bf16 plus one cache line, so that the 16 rows of a
// tile do not all fall in one L1 set (3 kp * 2 bytes is a multiple of 4 KB for kp = 2048, 5632).
constexpr int64_t kRowPad = 32;
constexpr int64_t lda_of(int64_t kp) { return kPasses * kp + kRowPad; }
constexpr int64_t kPanelDwords = kPasses * kTileK / 2 * kPairN;

// Activations of rows [0, rows) of xp (row stride kp) into xa [kBm-padded rows][3 kp] bf16: for
// each 32-input step, [hi, hi, lo]. Rows past `rows` up to the padded count are zero.
void pack_activations(const float* xp, int64_t kp, int64_t rows, int64_t padded, uint16_t* xa) {
  pack_rows(rows, padded, lda_of(kp), xa, [&](int64_t r, uint16_t* out) {
    const float* x = xp + r * kp;
    for (int64_t k = 0; k < kp; k += kStepK) {
      uint16_t* o = out + kPasses * k;
      split32(x + k, o, o + 2 * kStepK);
      std::memcpy(o + kStepK, o, kStepK * sizeof(uint16_t));
    }
  });
}

// The fp32 tile of dequant_pair ([len][16]) into the tdpbf16ps weight layout: for step s and
// pass j, 16 rows (input pairs 2q, 2q+1 of the step) of 16 dwords (columns), each dword holding
// the pair's bf16 part (hi, lo, hi for j = 0, 1, 2), the even input in the low half.
void split_panel(const float* tile, int64_t len, uint32_t* panel) {
  for (int64_t s = 0; s < len / kStepK; ++s) {
    uint32_t* ps = panel + s * kPasses * (kStepK / 2) * kPairN;
    for (int64_t q = 0; q < kStepK / 2; ++q) {
      const float* t = tile + (s * kStepK + 2 * q) * kPairN;
      const __m512 v0 = _mm512_load_ps(t), v1 = _mm512_load_ps(t + kPairN);
      const __m512i h0 = bf16_bits(v0), h1 = bf16_bits(v1);
      const __m512i l0 = bf16_bits(_mm512_sub_ps(v0, bf16_value(h0)));
      const __m512i l1 = bf16_bits(_mm512_sub_ps(v1, bf16_value(h1)));
      const __m512i hi = _mm512_or_si512(h0, shl16(h1));
      const __m512i lo = _mm512_or_si512(l0, shl16(l1));
      _mm512_store_si512(ps + q * kPairN, hi);
      _mm512_store_si512(ps + (kStepK / 2 + q) * kPairN, lo);
      _mm512_store_si512(ps + (kStepK + q) * kPairN, hi);
    }
  }
}

// c[32 x 16 TWO?2:1] (+)= a[32 x depth] * panels, depth = 3 len bf16; a rows lda bf16 apart, c
// rows ldc floats apart.
template <bool TWO>
void microkernel_amx(const uint16_t* a, int64_t lda, const uint32_t* p0, const uint32_t* p1, int64_t len,
                     float* c, int64_t ldc, bool accumulate) {
  const int64_t sa = lda * 2;
  load_or_zero_y<TWO>(c, ldc, accumulate);
  const int64_t steps = kPasses * len / kStepK;
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a + s * kStepK, sa);
    _tile_loadd(5, a + 16 * lda + s * kStepK, sa);
    _tile_loadd(6, p0 + s * (kStepK / 2) * kPairN, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(2, 5, 6);
    if constexpr (TWO) {
      _tile_loadd(7, p1 + s * (kStepK / 2) * kPairN, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  store_y<TWO>(c, ldc);
}

template <int BITS>
void gemm_amx(const PackedLayer& w, const float* xp, int64_t m, float* y, uint16_t* xa) {
  const int64_t lda = lda_of(w.kp);
  const int64_t n_pairs = w.n_blocks / 2;               // 16-column pairs
  const int64_t n_units = (n_pairs + 1) / 2;            // 32-column units
  for (int64_t m0 = 0; m0 < m; m0 += kMc) {
    const int64_t mc = m - m0 < kMc ? m - m0 : kMc;
    const int64_t padded = (mc + kBm - 1) / kBm * kBm;
    pack_activations(xp + m0 * w.kp, w.kp, mc, padded, xa);
    core::parallel_for(n_units, [&](int64_t q0, int64_t q1) {
      configure_tiles();
      alignas(64) float tile[kTileK * kPairN];      // 16 KB
      alignas(64) uint32_t pa[kPanelDwords];        // 24 KB each
      alignas(64) uint32_t pb[kPanelDwords];
      for (int64_t u0 = 0; u0 < w.n_units; u0 += kKcUnits) {
        const int64_t u1 = u0 + kKcUnits < w.n_units ? u0 + kKcUnits : w.n_units;
        const int64_t len = (u1 - u0) * kUnitK;
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t p = 2 * q;
          const bool two = p + 1 < n_pairs;
          dequant_pair<BITS>(w, p, u0, u1, tile);
          split_panel(tile, len, pa);
          if (two) {
            dequant_pair<BITS>(w, p + 1, u0, u1, tile);
            split_panel(tile, len, pb);
          }
          for (int64_t r = 0; r < mc; r += kBm) {
            const int64_t rows = mc - r < kBm ? mc - r : kBm;
            const uint16_t* a = xa + r * lda + kPasses * u0 * kUnitK;
            float* yr = y + (m0 + r) * w.n + p * kPairN;
            // Rows past the end of a partial block are the zero rows of xa.
            on_y_block(yr, w.n, rows, two ? kBn : kPairN, two ? kBn : kPairN, u0 != 0, [&](float* c, int64_t ldc) {
              if (two) {
                microkernel_amx<true>(a, lda, pa, pb, len, c, ldc, u0 != 0);
              } else {
                microkernel_amx<false>(a, lda, pa, nullptr, len, c, ldc, u0 != 0);
              }
            });
          }
        }
      }
      _tile_release();
    });
  }
}

}  // namespace

int64_t qgemm_amx_scratch_elems(int64_t m, int64_t kp) {
  const int64_t mc = m < kMc ? m : kMc;
  return (mc + kBm - 1) / kBm * kBm * lda_of(kp);
}

void qgemm_amx(const PackedLayer& w, const float* xp, int64_t m, float* y, uint16_t* xa) {
  switch (w.bits) {
    case 2:
      return gemm_amx<2>(w, xp, m, y, xa);
    case 3:
      return gemm_amx<3>(w, xp, m, y, xa);
    case 4:
      return gemm_amx<4>(w, xp, m, y, xa);
    default:
      return gemm_amx<8>(w, xp, m, y, xa);
  }
}

}  // namespace gptq::backend::detail
