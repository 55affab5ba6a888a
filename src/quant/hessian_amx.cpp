// The Hessian's x^T x on AMX tiles (hessian_kernels.h): the fp32 path of HessianAccumulator at
// the amx level.
//
// Compiled with the AVX-512 flags plus AVX512-BF16, AMX-TILE and AMX-BF16 (src/CMakeLists.txt);
// internal linkage for everything but the entry points.
//
// x is split into bf16 parts, x = hi + lo + e with |e| <= 2^-18 |x|, and each output sums
// hi_i hi_j + hi_i lo_j + lo_i hi_j (the dropped lo_i lo_j is below 2^-18 |x_i x_j|), with fp32
// sums inside a chunk as tdpbf16ps computes them, then added into the double sum: within ~1e-5
// relative of the sgemm path instead of the ~4e-3 of plain bf16 operands. The operands of a
// chunk are packed twice: pair-major ([pairs][kp] dwords, the weight-side tiles) and feature-major
// ([kp][pairs], the activation-side tiles), each dword holding tokens 2p (low half) and 2p + 1 of
// one feature. Output blocks of 32 x 32 on or above the diagonal are spread over the threads;
// every output is one block's, so the result does not depend on the thread count.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/parallel.h"
#include "quant/hessian_kernels.h"

namespace gptq::quant::detail {
namespace {

#include "backend/cpu/amx_common.inc"

constexpr int64_t kB = 32;       // outputs per block side
constexpr int64_t kPairStep = 16;  // token pairs per tile step

struct Dims {
  int64_t pairs;  // token pairs, rounded up to kPairStep
  int64_t kp;     // features, rounded up to kB
  // Row strides in dwords, one cache line past the data: a tile's 16 rows at a multiple of 4 KB
  // (kp = 4096: 16 KB) would all fall in one L1 set.
  int64_t ldb, lda;
};

Dims dims_of(int64_t rows, int64_t k) {
  Dims d;
  d.pairs = ((rows + 1) / 2 + kPairStep - 1) / kPairStep * kPairStep;
  d.kp = (k + kB - 1) / kB * kB;
  d.ldb = d.kp + 16;
  d.lda = d.pairs + 16;
  return d;
}

// The four operand arrays inside scratch: pair-major hi, lo, feature-major hi, lo.
struct Operands {
  uint32_t* bh;
  uint32_t* bl;
  uint32_t* ah;
  uint32_t* al;
};

Operands operands(uint32_t* scratch, const Dims& d) {
  const int64_t nb = d.pairs * d.ldb, na = d.kp * d.lda;
  return {scratch, scratch + nb, scratch + 2 * nb, scratch + 2 * nb + na};
}

void pack(const float* x, int64_t rows, int64_t k, const Dims& d, const Operands& o) {
  std::memset(o.bh, 0, static_cast<size_t>(2 * d.pairs * d.ldb) * sizeof(uint32_t));
  core::parallel_for(d.pairs, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t t0 = 2 * p, t1 = 2 * p + 1;
      if (t0 >= rows) break;
      const float* x0 = x + t0 * k;
      const float* x1 = t1 < rows ? x + t1 * k : nullptr;
      for (int64_t i = 0; i < k; i += 16) {
        const __mmask16 m = i + 16 <= k ? kAll : static_cast<__mmask16>((1u << (k - i)) - 1);
        const __m512 v0 = _mm512_maskz_loadu_ps(m, x0 + i);
        const __m512 v1 = x1 ? _mm512_maskz_loadu_ps(m, x1 + i) : _mm512_setzero_ps();
        const __m512i h0 = bf16_bits(v0), h1 = bf16_bits(v1);
        const __m512i l0 = bf16_bits(_mm512_sub_ps(v0, bf16_value(h0)));
        const __m512i l1 = bf16_bits(_mm512_sub_ps(v1, bf16_value(h1)));
        _mm512_mask_storeu_epi32(o.bh + p * d.ldb + i, m, _mm512_or_si512(h0, shl16(h1)));
        _mm512_mask_storeu_epi32(o.bl + p * d.ldb + i, m, _mm512_or_si512(l0, shl16(l1)));
      }
    }
  });
  // Feature-major copies (a transpose of dwords, in 16 x 16 blocks).
  core::parallel_for(d.kp / 16, [&](int64_t f0, int64_t f1) {
    for (int64_t fb = f0; fb < f1; ++fb) {
      for (int64_t pb = 0; pb < d.pairs; pb += 16) {
        for (int64_t a = 0; a < 16; ++a) {
          const int64_t f = fb * 16 + a;
          for (int64_t b = 0; b < 16; ++b) {
            o.ah[f * d.lda + pb + b] = o.bh[(pb + b) * d.ldb + f];
            o.al[f * d.lda + pb + b] = o.bl[(pb + b) * d.ldb + f];
          }
        }
      }
    }
  });
}

// y tiles 0-3 += activation tiles 4, 5 times weight tiles 6, 7.
inline void dp_2x2() {
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

// c [32 x 32] = the block (i0, j0) of x^T x over all pairs.
void block(const Operands& o, const Dims& d, int64_t i0, int64_t j0, float* c) {
  const int64_t sa = d.lda * 4, sb = d.ldb * 4;
  load_or_zero_y<true>(c, kB, false);
  for (int64_t p = 0; p < d.pairs; p += kPairStep) {
    const uint32_t* ah = o.ah + i0 * d.lda + p;
    const uint32_t* al = o.al + i0 * d.lda + p;
    const uint32_t* bh = o.bh + p * d.ldb + j0;
    const uint32_t* bl = o.bl + p * d.ldb + j0;
    _tile_loadd(4, ah, sa);
    _tile_loadd(5, ah + 16 * d.lda, sa);
    _tile_loadd(6, bh, sb);
    _tile_loadd(7, bh + 16, sb);
    dp_2x2();
    _tile_loadd(6, bl, sb);
    _tile_loadd(7, bl + 16, sb);
    dp_2x2();
    _tile_loadd(4, al, sa);
    _tile_loadd(5, al + 16 * d.lda, sa);
    _tile_loadd(6, bh, sb);
    _tile_loadd(7, bh + 16, sb);
    dp_2x2();
  }
  store_y<true>(c, kB);
}

}  // namespace

int64_t xtx_amx_scratch_elems(int64_t rows, int64_t k) {
  const Dims d = dims_of(rows, k);
  return 2 * d.pairs * d.ldb + 2 * d.kp * d.lda;
}

void xtx_chunk_amx(const float* x, int64_t rows, int64_t k, double* sum, uint32_t* scratch) {
  if (rows <= 0) return;
  const Dims d = dims_of(rows, k);
  const Operands o = operands(scratch, d);
  pack(x, rows, k, d, o);
  const int64_t nb = d.kp / kB;
  // Blocks (ib, jb) with jb >= ib, row by row: index idx -> (ib, jb).
  core::parallel_for(nb * (nb + 1) / 2, [&](int64_t b0, int64_t b1) {
    configure_tiles();
    alignas(64) float c[kB * kB];
    int64_t ib = 0, first = 0;  // first: index of block (ib, ib)
    while (first + (nb - ib) <= b0) first += nb - ib++;
    for (int64_t idx = b0; idx < b1; ++idx) {
      while (idx >= first + (nb - ib)) first += nb - ib++;
      const int64_t jb = ib + (idx - first);
      block(o, d, ib * kB, jb * kB, c);
      if (jb > ib && (jb + 1) * kB <= k) {
        // Wholly above the diagonal and inside K: every output is kept (a loop the compiler
        // vectorizes; the guarded one below cost as much as the tiles).
        for (int64_t a = 0; a < kB; ++a) {
          double* dst = sum + (ib * kB + a) * k + jb * kB;
          const float* src = c + a * kB;
          for (int64_t b = 0; b < kB; ++b) dst[b] += src[b];
        }
        continue;
      }
      for (int64_t a = 0; a < kB; ++a) {
        const int64_t i = ib * kB + a;
        if (i >= k) break;
        for (int64_t b = 0; b < kB; ++b) {
          const int64_t j = jb * kB + b;
          if (j >= i && j < k) sum[i * k + j] += c[a * kB + b];
        }
      }
    }
    _tile_release();
  });
}

}  // namespace gptq::quant::detail
