// Internal interface between QLinear (qlinear.cpp) and the per-ISA quantized matmul kernels.
//
// This header is included by the *_avx2.cpp files, which are compiled with -mavx2 -mfma -mf16c.
// It must therefore hold only plain data and declarations: an inline function or template defined
// here would be emitted by both an AVX2 and a baseline translation unit, and the linker could keep
// the AVX2 copy for everyone, which would crash on a CPU without AVX2.
//
// The repacked layout ("packed layer"), chosen for the AVX2 kernels:
//
//   K is first reordered so that every quantization group is contiguous (act-order files list
//   inputs in a different order than their groups) and each group ("segment") is zero-padded to a
//   multiple of kUnitK = 32 inputs. kp is the padded length; padded inputs have code 0 and are fed
//   x = 0, so they add nothing.
//
//   N is cut into blocks of kBlockN = 8 columns: one ymm register of fp32 holds one value per
//   column, so every vector operation in the kernels works on 8 output columns at once and the
//   columns never mix (results do not depend on how the columns are split among threads).
//
//   words  [n_blocks][n_units][bits][8] uint32: for each block and each 32-input unit, `bits`
//          vectors of 8 lanes; lane j holds codes of column j only. Which input of the unit sits at
//          which bits of which word:
//            4-bit: word t holds inputs 8t+i at bits [4i, 4i+4)           (t < 4, i < 8)
//            2-bit: word t holds inputs 16t+i at bits [2i, 2i+2)          (t < 2, i < 16)
//            8-bit: word t holds inputs 4t+i at bits [8i, 8i+8)           (t < 8, i < 4)
//            3-bit: word t holds inputs 10t+i at bits [3i, 3i+3)          (t < 3, i < 10)
//                   input 30: bits 0-1 = word 0 bits 30-31, bit 2 = word 2 bit 30
//                   input 31: bits 0-1 = word 1 bits 30-31, bit 2 = word 2 bit 31
//          So a unit of one block is 32 * bits bytes, and one 32-byte load feeds 8 columns.
//   scales [n_blocks][n_seg][8] fp16, zeros [n_blocks][n_seg][8] uint8 as stored in the file
//          (true zero point = stored + zero_offset: 1 for gptq v1 files, 0 for v2).
#pragma once

#include <cstdint>

namespace gptq::backend::detail {

inline constexpr int kUnitK = 32;  // inputs per packing unit
inline constexpr int kBlockN = 8;  // output columns per block (fp32 lanes of one ymm)

// One quantization group in padded-K order: units [unit_begin, unit_end) use scale/zero row
// `group` of the original file.
struct Segment {
  int32_t group;
  int32_t unit_begin;
  int32_t unit_end;
};

// Non-owning view of a repacked layer (QLinear owns the storage).
struct PackedLayer {
  int bits = 4;
  int zero_offset = 1;                // true zero = stored zero + zero_offset
  int64_t n = 0;                      // output columns N
  int64_t n_blocks = 0;               // N / 8
  int64_t n_units = 0;                // kp / 32
  int64_t kp = 0;                     // padded K
  int64_t n_seg = 0;                  // number of segments (non-empty groups)
  const uint32_t* words = nullptr;    // [n_blocks][n_units][bits][8]
  const uint16_t* scales = nullptr;   // [n_blocks][n_seg][8] fp16
  const uint8_t* zeros = nullptr;     // [n_blocks][n_seg][8]
  const Segment* segs = nullptr;      // [n_seg], in padded-K order
  const int32_t* unit_seg = nullptr;  // [n_units] segment index of each unit
};

// Rows of x that the AVX2 GEMV kernel handles in one pass over the weights; larger m uses the
// GEMM kernel.
inline constexpr int64_t kGemvMaxRows = 4;

// ---- scalar reference (qgemm_scalar.cpp) ----
// y [m, N] = xp [m, kp] * W^T, with xp already permuted and padded. Overwrites y.
void qgemm_scalar(const PackedLayer& w, const float* xp, int64_t m, float* y);

// ---- AVX2 + FMA + F16C (qgemm_avx2.cpp) ----
// Decode path for 3-bit weights, 1 <= m <= kGemvMaxRows. xs [m, kp] is xp times the per-position power of two
// returned by gemv_x_scale() (see there), sx [m, n_seg] the sum of xp over each segment.
// Overwrites y [m, N].
void qgemv_avx2(const PackedLayer& w, const float* xs, const float* sx, int64_t m, float* y);
// Prefill path, any m >= 1. xp [m, kp] as for the scalar kernel. Overwrites y [m, N].
void qgemm_avx2(const PackedLayer& w, const float* xp, int64_t m, float* y);

// ---- AVX-512 F/BW/VL/DQ/VNNI (qgemm_avx512.cpp) ----
// The same prefill GEMM with 16-column zmm rows, 12 rows per pass: equal to qgemm_avx2 bit for bit.
// For 3-bit layers (the others go to qgemm_avx2 if sent here; QLinear gives them the int16
// prefill, qgemm_i16_avx512).
void qgemm_avx512(const PackedLayer& w, const float* xp, int64_t m, float* y);

// ---- AMX-BF16 (qgemm_amx.cpp) ----
// The prefill GEMM on the tiles, with activations and weights each split in two bf16 parts (three
// tdpbf16ps passes; within ~1e-5 relative of the fp32 kernels, not bit for bit). xa is scratch of
// qgemm_amx_scratch_elems(m, kp) bf16 values. The caller must hold the tile permission
// (request_amx_tile_permission). Any m >= 1; for m below kAmxMinRows the AVX-512 GEMM is faster.
int64_t qgemm_amx_scratch_elems(int64_t m, int64_t kp);
void qgemm_amx(const PackedLayer& w, const float* xp, int64_t m, float* y, uint16_t* xa);
inline constexpr int64_t kAmxMinRows = 32;

// Decode path with 16-bit integer activations, for 2-, 4- and 8-bit weights (see qgemm_avx2.cpp
// for why): x is rounded per unit u of 32 inputs to x ~= d[u] * xi, |xi| <= 32767, and the kernel
// sums codes times xi with vpmaddwd in int32.
//
// Activation layout, per row and unit: 16 int32 "pairs", pair j = t * P + p (P = 16 / bits) for
// word t of the unit and position p, holding xi of inputs (t * 32/bits + p) in its low and
// (t * 32/bits + p + P) in its high 16 bits: exactly the two codes that (word >> bits * p) & mask
// leaves in the low and high halves of each lane.
inline constexpr int kPairsPerUnit = 16;
// xp [m, kp] (permuted, padded) -> xq [m, n_units, 16] pairs, d [m, n_units] unit scales, and
// sx [m, n_seg] = sum over each segment of d[u] * xi (the rounded x, so that the zero-point term
// cancels exactly against the codes' sums).
void qgemv_i16_prepare_avx2(const PackedLayer& w, const float* xp, int64_t m, int32_t* xq, float* d,
                            float* sx);
// Computes output blocks [b0, b1) of y [m, N] on the calling thread; the caller spreads chunks of
// kGemvChunkBlocks blocks over the threads (core::parallel_for_dynamic).
void qgemv_i16_avx2(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                    int64_t m, float* y, int64_t b0, int64_t b1);
// The same with vpdpwssd (qgemm_avxvnni.cpp); identical results (exact integer sums).
void qgemv_i16_avxvnni(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                       int64_t m, float* y, int64_t b0, int64_t b1);
// The same on zmm for AVX-512 F/BW/VL/DQ/VNNI (qgemv_avx512.cpp): two blocks per register,
// vpdpwssd; identical results.
void qgemv_i16_avx512(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                      int64_t m, float* y, int64_t b0, int64_t b1);
// Prefill with the same int16 activations (any number of rows, qgemv_i16_prepare_avx2 layout):
// rows [r0, r1) and output blocks [b0, b1) (b1 - b0 even) of y [m, N], each output equal bit for
// bit to what the decode kernels give for its row.
void qgemm_i16_avx512(const PackedLayer& w, const int32_t* xq, const float* d, const float* sx,
                      float* y, int64_t r0, int64_t r1, int64_t b0, int64_t b1);
// Blocks per chunk of the decode schedule: 256 columns, 256 KB of 4-bit weights at K = 2048
// (~17 us of one core), a multiple of every tile width. Within a chunk each tile prefetches the
// next one's streams; the first tile of a chunk starts cold. Measured on the 1.1B shape, 2
// threads, alternating binaries: 8 blocks 37.4-38.2 tok/s, 32 blocks 39.3-41.3, 64 blocks
// 40.0-40.7 (within noise of 32, with twice the imbalance a stalled core can cause).
inline constexpr int64_t kGemvChunkBlocks = 32;

}  // namespace gptq::backend::detail
