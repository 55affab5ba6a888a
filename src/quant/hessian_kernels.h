// Internal interface between HessianAccumulator (hessian.cpp) and the per-ISA kernels of its bf16
// path. Included by hessian_avx512bf16.cpp, compiled with AVX-512 flags: declarations and plain
// data only (see backend/cpu/qgemm_kernels.h on why).
//
// The bf16 path sums x^T x over one chunk of tokens from bf16 operands with fp32 sums, as
// vdpbf16ps computes it. Its input is the chunk packed in token pairs and panels of 16 inputs:
//   p [kp / 16][pairs][16] uint32, kp = K rounded up to 16, pairs = ceil(rows / 2): element
//   (t, i) sits at bf16_index(t, i, pairs) and holds bf16(x[2t][i]) in its low and
//   bf16(x[2t+1][i]) in its high 16 bits (zero for a missing last token and for i >= K).
// Panels keep each kernel stream contiguous: with rows K apart, the 16 KB stride at K = 4096
// mapped every row of a column tile to the same L1 set.
// For every output (i, j) the fp32 sum starts at 0 and takes, pair by pair in order,
//   s = s + hi_i * hi_j;  s = s + lo_i * lo_j
// (vdpbf16ps's order: the odd element first). The bf16 products are exact in fp32, so each step
// rounds once. The kernels then add s into sum[i * K + j] (double) for j >= i only.
#pragma once

#include <cstdint>

namespace gptq::quant::detail {

// Output rows and columns per task of the bf16 path.
inline constexpr int64_t kBf16Tile = 32;
inline constexpr int64_t kBf16Panel = 16;

constexpr int64_t bf16_index(int64_t t, int64_t i, int64_t pairs) {
  return ((i / kBf16Panel) * pairs + t) * kBf16Panel + i % kBf16Panel;
}

// Outputs i in [i0, i1), j in [max(i, j0), j1) with i1 - i0 <= kBf16Tile, j1 - j0 <= kBf16Tile.
void bf16_xtx_tile_scalar(const uint32_t* p, int64_t pairs, int64_t k, int64_t i0, int64_t i1,
                          int64_t j0, int64_t j1, double* sum);
// The same with vdpbf16ps (hessian_avx512bf16.cpp); identical results.
void bf16_xtx_tile_avx512bf16(const uint32_t* p, int64_t pairs, int64_t k, int64_t i0, int64_t i1,
                              int64_t j0, int64_t j1, double* sum);

// ---- the fp32 path on AMX tiles (hessian_amx.cpp), at the amx level ----
// sum[i * k + j] += sum over t < rows of x[t][i] x[t][j] for j >= i, from x [rows, k] split in
// two bf16 parts (three products of the four; within ~1e-5 relative of the sgemm path). scratch:
// xtx_amx_scratch_elems(rows, k) elements. The caller holds the tile permission
// (backend::request_amx_tile_permission).
int64_t xtx_amx_scratch_elems(int64_t rows, int64_t k);
void xtx_chunk_amx(const float* x, int64_t rows, int64_t k, double* sum, uint32_t* scratch);

}  // namespace gptq::quant::detail
