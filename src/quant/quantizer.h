// GPTQ and round-to-nearest quantization of one linear layer. Pure maths: no files, no model.
// Notation: a linear maps K inputs to N outputs, W is [N, K] row-major (HF nn.Linear.weight);
// b bits; group size g (g = K when group_size is -1); G = ceil(K / g).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gptq::quant {

struct QuantParams {
  int bits = 4;              // 2, 3, 4 or 8
  int group_size = 128;      // -1 (one group per row) or 16..1024
  bool sym = true;           // symmetric: zero = 2^(b-1)
  bool desc_act = false;     // act-order: process columns by descending H[k,k]
  bool static_groups = false;  // scale/zero of every group from the original W, before any
                               // update or permutation; g_idx stays k / g even with desc_act
  bool act_group_aware = false;  // GPTQModel's group-aware act-order: columns sorted by
                                 // descending H[k,k] within each group, groups ordered by their
                                 // largest H[k,k]; groups keep their columns, so g_idx stays k / g
                                 // (not with desc_act)
  double damp_percent = 0.01;  // fraction of mean(diag H) added to the diagonal
  double damp_step = 0.01;     // added to damp_percent each time Cholesky fails, while < 1
  bool mse = false;          // search shrink factors for each group's range (SPEC §3)
  bool mse_hessian = false;  // with mse: weight each column's squared error by GPTQ's loss
                             // weight 1 / U[j,j]^2 instead of the unweighted |error|^2.4 (GPTQ
                             // only; RTN has no Hessian and searches unweighted)
  bool ggml_grid = false;    // llama.cpp's Q4_0/Q8_0 scale rule instead of SPEC §3's (see
                             // QuantizeConfig::grid); sym, 4 or 8 bits only
  int block_size = 128;      // columns per lazy-update block
};

// Throws Error(kArgument) naming the field for bits not in {2,3,4,8}, a group size out of range,
// damp_percent outside (0, 1), damp_step outside [0, 1) (0: no automatic increase), block_size
// outside 1..4096.
void validate(const QuantParams& p);

// Where one gptq_quantize call spent its time; the solver benchmark reports these.
struct SolverStats {
  double factor_seconds = 0;  // dead columns, act-order, damping, Cholesky (0 with a given factor)
  double block_seconds = 0;   // the rest: group parameters, the column-by-column feedback,
                              // copies, dequantization
  double update_seconds = 0;  // the lazy updates of later columns (sgemm)
  double update_flops = 0;    // floating-point operations of those updates (2 per multiply-add)
};

struct QuantResult {
  int64_t n = 0, k = 0;         // N outputs, K inputs
  int bits = 4;
  int group_size = 128;         // as given (-1 kept)
  std::vector<uint8_t> codes;   // [N, K] integer codes in [0, 2^b - 1], original column order,
                                // rounded with the fp32 scales (the reference's arithmetic)
  std::vector<float> scales;    // [G, N], the fp32 scales rounded to fp16 as the file holds them
                                // (a scale below fp16's range is floored at 2^-24; one above it
                                // is an error)
  std::vector<int32_t> zeros;   // [G, N] true zero points (not the v1 z-1)
  std::vector<int32_t> g_idx;   // [K] group of each input column
  std::vector<float> dequant;   // [N, K] scales[g_idx[k], n] * (codes - zeros[g_idx[k], n])
  double loss = 0;              // sum over columns of ||w' - q||^2 / d^2 / 2, GPTQ's reported loss
                                // (w' the column as updated by the error feedback)
  double damp_used = 0;         // the damp_percent that made Cholesky succeed (0 for RTN)
  int64_t dead_columns = 0;     // inputs with H[k,k] == 0
  SolverStats stats;            // where the time went (zeros for RTN)
};

// Accumulates H = (2/n) * sum over tokens of x x^T in double precision, for one linear's inputs;
// n counts tokens (SPEC §3; the Python tools divide by the number of sequences instead, which
// changes only the reported loss, since GPTQ's result does not depend on H's overall scale).
//
// Tokens are taken in chunks of kChunkRows: each chunk's x^T x is one fp32 sgemm (fp32 sums of
// 512 products, relative error ~1e-6), added into the double sum. At the amx level the chunk runs
// on AMX tiles instead, x split in two bf16 parts (quant/hessian_kernels.h; within ~4e-6 of the
// diagonal scale, tests/quant/test_hessian.cpp). Chunks are cut at fixed
// multiples of kChunkRows of the token stream (short calls are buffered), so H is bitwise the
// same however the tokens are split across add() calls, and for any thread count.
//
// With CalibDtype::kBf16 each chunk's x^T x is taken from x rounded to bf16 (nearest even), with
// fp32 sums in vdpbf16ps's order (quant/hessian_kernels.h): AVX512-BF16 where the active ISA
// has it, else a scalar emulation with identical results (slow: for tests and CPUs without it).
// Also independent of the thread count.
enum class CalibDtype { kFp32, kBf16 };

class HessianAccumulator {
 public:
  static constexpr int64_t kChunkRows = 512;

  // Throws Error(kArgument) for k < 1.
  explicit HessianAccumulator(int64_t k, CalibDtype dtype = CalibDtype::kFp32);
  // x is [rows, K] row-major fp32; rows may be 0. Throws Error(kNumeric) on NaN/Inf (and then
  // adds nothing).
  void add(const float* x, int64_t rows);
  int64_t k() const { return k_; }
  CalibDtype dtype() const { return dtype_; }
  int64_t tokens() const { return n_; }
  // H as [K, K] (scaled by 2/n; zeros when no token was added).
  std::vector<double> hessian() const;
  // The unscaled sum of x x^T so far, buffered tail included exactly as hessian() adds it, as
  // [K, K] whose upper triangle (j >= i) holds the sum (the rest is unspecified): partial sums
  // that callers add in a fixed order (pipeline::ShardedHessian).
  std::vector<double> raw_sum() const;
  // H from such a sum (sum.size() == k * k; Error(kArgument) otherwise) of `tokens` rows: the
  // upper triangle scaled by 2/tokens (zeros when tokens is 0) and mirrored below.
  static std::vector<double> hessian_from_sum(std::vector<double> sum, int64_t k, int64_t tokens);

 private:
  void accumulate(const float* x, int64_t rows);  // one chunk into sum_

  int64_t k_;
  CalibDtype dtype_;
  int64_t n_ = 0;
  std::vector<double> sum_;       // [K, K] unscaled sum of x x^T, upper triangle (j >= i) only
  std::vector<float> pending_;    // [pending_rows_, K] tokens not yet in a full chunk
  int64_t pending_rows_ = 0;
  std::vector<float> scratch_;    // one panel of a chunk's x^T x
  std::vector<uint32_t> packed_;  // bf16 path: a chunk in token pairs
};

// H prepared for GPTQ (SPEC §3 steps 1, 3, 4, 5): dead columns found, the act-order permutation
// chosen, damping applied, H factored. It depends only on H and on desc_act (act_group_aware
// and the group size with it), damp_percent and damp_step, so linears that read the same inputs (q/k/v, gate/up) can share one factorization,
// which costs as much as quantizing a square linear.
//
// We never form U (the upper Cholesky factor of H^-1). With R = U^-1, H = R R^T where R is
// upper triangular: the Cholesky factor of H with rows and columns taken in reverse order. GPTQ's
// errors E (E[:, j] = (w'_j - q_j) / U[j,j]) satisfy E U = W - Q, so the value column j holds
// when it is quantized is w'_j = w_j + (1 / R[j,j]) * sum_{i<j} (w_i - q_i) R[i,j], with w the
// column as it came in. Same result as the textbook form, for one dpotrf instead of dpotrf +
// dpotri + dpotrf, and no inverse whose rounding grows with the condition number. (Partially
// updated columns, which group parameters read, are converted to their textbook values; see
// gptq.cpp.)
struct HessianFactor {
  int64_t k = 0;
  bool desc_act = false;
  int64_t group_aware = 0;       // act_group_aware: the group size of its order (0: off)
  double damp_percent = 0;       // as requested
  double damp_step = 0;          // as requested
  double damp_used = 0;          // what made Cholesky succeed
  int64_t dead_columns = 0;
  std::vector<int32_t> perm;     // [K] processing position -> original column
  std::vector<uint8_t> dead;     // [K] original column order: 1 where H[k,k] == 0
  std::vector<float> r_scaled;   // [K, K] row-major, processing order: R[i,j] / R[j,j] for j > i,
                                 // 0 elsewhere
  std::vector<float> r_diag;     // [K] R[j,j]; GPTQ's d for column j is U[j,j] = 1 / R[j,j]
  double seconds = 0;            // time it took
};

// Validates p and H ([K, K], symmetric), then factors as described above. Throws
// Error(kArgument) for bad params or a size mismatch, Error(kNumeric) for NaN/Inf in H or when
// Cholesky still fails once damp_percent would reach 1 (each retry is logged as a warning).
HessianFactor prepare_hessian(const std::vector<double>& h, int64_t k, const QuantParams& p);

// GPTQ (SPEC §3) on W [N, K] with Hessian H [K, K] (symmetric). Deterministic: identical output
// for any thread count. Throws Error(kNumeric) for NaN/Inf in W or H, or when Cholesky still
// fails with damp_percent >= 1; Error(kArgument) for bad params. Any N, K >= 1 work (packing
// constraints are the checkpoint's business).
//
// Group parameters: a group that starts at column s takes its scale/zero from W[:, s : s+g] as
// it stands at the start of the lazy-update block holding s (updates from earlier blocks
// applied, updates from earlier columns of the same block not yet), which is what the Python
// tools do (they read the block-start W, not the block's working copy). With g a multiple of
// block_size the two readings agree. With group_size -1 the single group's parameters come from
// W as given, before dead columns are zeroed, as the Python tools compute them.
//
// Arithmetic: group parameters, codes and the error feedback use the fp32 scales, as the GPTQ
// paper's code and GPTQModel do; the result's scales and dequant are the fp16-rounded scales the
// checkpoint holds.
QuantResult gptq_quantize(const float* w, int64_t n, int64_t k, const std::vector<double>& h,
                          const QuantParams& p);
// The same with a prepared factor (p.desc_act, damp_percent and damp_step must match it).
QuantResult gptq_quantize(const float* w, int64_t n, int64_t k, const HessianFactor& f,
                          const QuantParams& p);

// Round-to-nearest with the same quantizer and groups (no error feedback, no act-order; desc_act
// and static_groups are ignored). loss is sum ||w - q||^2 / 2 (GPTQ's loss with d = 1).
QuantResult rtn_quantize(const float* w, int64_t n, int64_t k, const QuantParams& p);

// ---- packing (SPEC §1). Pure bit layout; shared by the checkpoint writer and the kernels. ----

// Bad bits: Error(kArgument); K (qweight) or N (qzeros) not a multiple of 32: Error(kShape).
// codes [N, K] -> qweight [K*b/32, N] (int32 words). K must be a multiple of 32; codes must fit
// in b bits (Error(kArgument) naming the first that does not).
std::vector<int32_t> pack_qweight(const uint8_t* codes, int64_t n, int64_t k, int bits);
// qweight [K*b/32, N] -> codes [N, K].
std::vector<uint8_t> unpack_qweight(const int32_t* qweight, int64_t n, int64_t k, int bits);
// zeros [G, N] (values to store, already offset for the format) -> qzeros [G, N*b/32].
// N must be a multiple of 32. Values must fit in b bits (Error(kArgument) otherwise).
std::vector<int32_t> pack_qzeros(const int32_t* zeros, int64_t g, int64_t n, int bits);
std::vector<int32_t> unpack_qzeros(const int32_t* qzeros, int64_t g, int64_t n, int bits);

// Packed qzeros words between the v1 ("gptq") and v2 ("gptq_v2") conventions, in place, exactly
// as GPTQModel converts them: for 2/4/8 bits one int32 addition (v1 -> v2) or subtraction of the
// pattern 0x55555555 / 0x11111111 / 0x01010101 per word, carries and borrows crossing fields and
// wrapping at 2^32 (so a zero point of 0 is stored as a wrapped -1 that borrows from the next
// field, and read back exactly); for 3 bits each field +-1 modulo 8. Round trips are exact for
// every word. Error(kShape) for a 3-bit array that is not whole packs of 3 words.
void qzeros_v1_to_v2(std::vector<int32_t>& words, int bits);
void qzeros_v2_to_v1(std::vector<int32_t>& words, int bits);


}  // namespace gptq::quant
