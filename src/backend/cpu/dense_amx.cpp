// AMX GEMM for fp32 weights (dense_kernels.h): the dense linears of prefill and of the
// calibration forward passes.
//
// Compiled with the AVX-512 flags plus AVX512-BF16, AMX-TILE and AMX-BF16 (src/CMakeLists.txt);
// internal linkage for everything but the entry points.
//
// W's bf16 parts are packed once (the caller keeps them), x's per call: rows in chunks of kMc,
// each row as [hi 32][lo 32] per 32-input step. Blocking as in qgemm_amx.cpp: inputs in chunks of
// 256 (8 steps), columns split among threads in units of 32, a 32 x 32 block of y in tiles 0-3,
// activations in 4-5, weights in 6-7. Per step the weights' hi tiles serve x_hi and x_lo, and
// with a lo part those tiles are reloaded for x_hi w_lo.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/dense_kernels.h"
#include "core/parallel.h"

namespace gptq::backend::detail {
namespace {

#include "backend/cpu/amx_common.inc"

constexpr int64_t kStepK = 32;     // inputs per step
constexpr int64_t kTileDw = 256;   // dwords of one weight tile (16 pairs x 16 columns)
constexpr int64_t kChunkSteps = 8;  // 256 inputs per chunk
constexpr int64_t kMc = 256;       // rows per row chunk
constexpr int64_t kBm = 32;        // rows per block
constexpr int64_t kTileN = 16;     // columns per tile

int64_t steps_of(int64_t k) { return (k + kStepK - 1) / kStepK; }
// Row stride of the packed x: 2 parts per step plus one cache line, so that the 16 rows of a tile
// do not all fall in one L1 set (a multiple of 4 KB for k = 2048 otherwise).
int64_t lda_of(int64_t k) { return 2 * steps_of(k) * kStepK + 32; }

uint16_t bf16_round(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40u);  // quiet NaN
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

float bf16_float(uint16_t h) {
  const uint32_t b = uint32_t{h} << 16;
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// x rows [0, rows) (row stride k) into xa [padded][2 * steps * 32]: per step [hi][lo]; inputs
// past k and rows past `rows` are zero.
void pack_x(const float* x, int64_t k, int64_t rows, int64_t padded, uint16_t* xa) {
  const int64_t steps = steps_of(k);
  pack_rows(rows, padded, lda_of(k), xa, [&](int64_t r, uint16_t* out) {
    const float* xr = x + r * k;
    for (int64_t s = 0; s < steps; ++s) {
      uint16_t* o = out + 2 * kStepK * s;
      const int64_t i0 = s * kStepK;
      if (i0 + kStepK <= k) {
        split32(xr + i0, o, o + kStepK);
        continue;
      }
      for (int64_t i = 0; i < kStepK; ++i) {
        const float v = i0 + i < k ? xr[i0 + i] : 0.0f;
        const uint16_t h = bf16_round(v);
        o[i] = h;
        o[kStepK + i] = bf16_round(v - bf16_float(h));
      }
    }
  });
}

// c[32 x 16 (TWO: 32)] (+)= the blocks' x parts times the weight tiles of steps [0, steps).
// a: the block's first row at the chunk's first step (lda bf16 per row); p0, p1: the column
// tiles' weights at that step.
template <bool TWO, bool LO>
void microkernel(const uint16_t* a, int64_t lda, const uint32_t* p0, const uint32_t* p1, int64_t steps,
                 float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t parts = LO ? 2 : 1;
  const int64_t sa = lda * 2;
  load_or_zero_y<TWO>(c, ldc, accumulate);
  for (int64_t s = 0; s < steps; ++s) {
    const uint16_t* as = a + 2 * kStepK * s;
    const uint32_t* b0 = p0 + s * parts * kTileDw;
    const uint32_t* b1 = TWO ? p1 + s * parts * kTileDw : b0;
    _tile_loadd(4, as, sa);                 // x_hi, rows 0-15
    _tile_loadd(5, as + 16 * lda, sa);      // x_hi, rows 16-31
    _tile_loadd(6, b0, 64);                 // w_hi
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(2, 5, 6);
    if constexpr (TWO) {
      _tile_loadd(7, b1, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
    if constexpr (LO) {
      _tile_loadd(6, b0 + kTileDw, 64);     // w_lo
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (TWO) {
        _tile_loadd(7, b1 + kTileDw, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_loadd(6, b0, 64);               // w_hi again, for x_lo
      if constexpr (TWO) _tile_loadd(7, b1, 64);
    }
    _tile_loadd(4, as + kStepK, sa);        // x_lo
    _tile_loadd(5, as + 16 * lda + kStepK, sa);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(2, 5, 6);
    if constexpr (TWO) {
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  store_y<TWO>(c, ldc);
}

template <bool LO>
void gemm(const AmxDenseView& w, const float* x, int64_t m, float* y, uint16_t* xa) {
  constexpr int64_t parts = LO ? 2 : 1;
  const int64_t steps = steps_of(w.k), lda = lda_of(w.k);
  const int64_t n_tiles = (w.n + kTileN - 1) / kTileN, n_units = (n_tiles + 1) / 2;
  const int64_t tile_stride = steps * parts * kTileDw;  // dwords per column tile
  for (int64_t m0 = 0; m0 < m; m0 += kMc) {
    const int64_t mc = m - m0 < kMc ? m - m0 : kMc;
    const int64_t padded = (mc + kBm - 1) / kBm * kBm;
    pack_x(x + m0 * w.k, w.k, mc, padded, xa);
    core::parallel_for(n_units, [&](int64_t q0, int64_t q1) {
      configure_tiles();
      for (int64_t s0 = 0; s0 < steps; s0 += kChunkSteps) {
        const int64_t ns = steps - s0 < kChunkSteps ? steps - s0 : kChunkSteps;
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t t = 2 * q, col = t * kTileN;
          const bool two = t + 1 < n_tiles;
          const int64_t width = (w.n - col < 2 * kTileN ? w.n - col : 2 * kTileN);
          const uint32_t* p0 = w.panels + t * tile_stride + s0 * parts * kTileDw;
          const uint32_t* p1 = two ? p0 + tile_stride : nullptr;
          for (int64_t r = 0; r < mc; r += kBm) {
            const int64_t rows = mc - r < kBm ? mc - r : kBm;
            const uint16_t* a = xa + r * lda + 2 * kStepK * s0;
            float* yb = y + (m0 + r) * w.n + col;
            on_y_block(yb, w.n, rows, width, two ? 2 * kTileN : kTileN, s0 != 0, [&](float* c, int64_t ldc) {
              if (two) {
                microkernel<true, LO>(a, lda, p0, p1, ns, c, ldc, s0 != 0);
              } else {
                microkernel<false, LO>(a, lda, p0, nullptr, ns, c, ldc, s0 != 0);
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

int64_t amx_dense_panel_elems(int64_t n, int64_t k, int parts) {
  return (n + kTileN - 1) / kTileN * steps_of(k) * parts * kTileDw;
}

void amx_dense_pack(const float* w, int64_t n, int64_t k, int parts, uint32_t* panels) {
  const int64_t steps = steps_of(k), n_tiles = (n + kTileN - 1) / kTileN;
  core::parallel_for(n_tiles, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t s = 0; s < steps; ++s) {
        uint32_t* out = panels + ((t * steps + s) * parts) * kTileDw;
        for (int64_t q = 0; q < kStepK / 2; ++q) {
          for (int64_t c = 0; c < kTileN; ++c) {
            const int64_t col = t * kTileN + c, i = s * kStepK + 2 * q;
            uint32_t hi = 0, lo = 0;
            for (int64_t e = 0; e < 2; ++e) {
              const float v = col < n && i + e < k ? w[col * k + i + e] : 0.0f;
              const uint16_t h = bf16_round(v);
              hi |= uint32_t{h} << (16 * e);
              lo |= uint32_t{bf16_round(v - bf16_float(h))} << (16 * e);
            }
            out[q * kTileN + c] = hi;
            if (parts == 2) out[kTileDw + q * kTileN + c] = lo;
          }
        }
      }
    }
  });
}

int64_t amx_dense_scratch_elems(int64_t m, int64_t k) {
  const int64_t mc = m < kMc ? m : kMc;
  return (mc + kBm - 1) / kBm * kBm * lda_of(k);
}

void amx_dense_gemm(const AmxDenseView& w, const float* x, int64_t m, float* y, uint16_t* xa) {
  if (w.parts == 2) {
    gemm<true>(w, x, m, y, xa);
  } else {
    gemm<false>(w, x, m, y, xa);
  }
}

}  // namespace gptq::backend::detail
