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
  bool static_groups = false;  // with desc_act: groups fixed from the original W before permuting
  double damp_percent = 0.01;  // fraction of mean(diag H) added to the diagonal
  double damp_step = 0.01;     // added to damp_percent each time Cholesky fails, while < 1
  bool mse = false;          // search shrink factors for each group's range (SPEC §3)
  int block_size = 128;      // columns per lazy-update block
};

// Throws Error(kArgument) naming the field for bits not in {2,3,4,8}, a group size out of range,
// damp_percent outside (0, 1), block_size < 1.
void validate(const QuantParams& p);

struct QuantResult {
  int64_t n = 0, k = 0;         // N outputs, K inputs
  int bits = 4;
  int group_size = 128;         // as given (-1 kept)
  std::vector<uint8_t> codes;   // [N, K] integer codes in [0, 2^b - 1], original column order
  std::vector<float> scales;    // [G, N], already rounded to fp16 precision
  std::vector<int32_t> zeros;   // [G, N] true zero points (not the v1 z-1)
  std::vector<int32_t> g_idx;   // [K] group of each input column
  std::vector<float> dequant;   // [N, K] scales[g_idx[k], n] * (codes - zeros[g_idx[k], n])
  double loss = 0;              // sum over columns of ||w - q||^2 / d^2 / 2 (GPTQ's reported loss)
  double damp_used = 0;         // the damp_percent that made Cholesky succeed (0 for RTN)
  int64_t dead_columns = 0;     // inputs with H[k,k] == 0
};

// Accumulates H = (2/n) * sum over tokens of x x^T in double precision, for one linear's inputs.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t k);
  // x is [rows, K] row-major fp32; rows may be 0. Throws Error(kNumeric) on NaN/Inf.
  void add(const float* x, int64_t rows);
  int64_t k() const { return k_; }
  int64_t tokens() const { return n_; }
  // H as [K, K] (scaled by 2/n; zeros when no token was added).
  std::vector<double> hessian() const;

 private:
  int64_t k_;
  int64_t n_ = 0;
  std::vector<double> sum_;  // [K, K] unscaled sum of x x^T
};

// GPTQ (SPEC §3) on W [N, K] with Hessian H [K, K] (symmetric). Deterministic: identical output
// for any thread count. Throws Error(kNumeric) for NaN/Inf in W or H, or when Cholesky still
// fails with damp_percent >= 1; Error(kArgument) for bad params or K not divisible by... nothing:
// any N, K >= 1 work (packing constraints are the checkpoint's business).
QuantResult gptq_quantize(const float* w, int64_t n, int64_t k, const std::vector<double>& h,
                          const QuantParams& p);

// Round-to-nearest with the same quantizer and groups (no error feedback, no act-order).
QuantResult rtn_quantize(const float* w, int64_t n, int64_t k, const QuantParams& p);

// ---- packing (SPEC §1). Pure bit layout; shared by the checkpoint writer and the kernels. ----

// codes [N, K] -> qweight [K*b/32, N] (int32 words). K must be a multiple of 32.
std::vector<int32_t> pack_qweight(const uint8_t* codes, int64_t n, int64_t k, int bits);
// qweight [K*b/32, N] -> codes [N, K].
std::vector<uint8_t> unpack_qweight(const int32_t* qweight, int64_t n, int64_t k, int bits);
// zeros [G, N] (values to store, already offset for the format) -> qzeros [G, N*b/32].
// N must be a multiple of 32. Values must fit in b bits (Error(kArgument) otherwise).
std::vector<int32_t> pack_qzeros(const int32_t* zeros, int64_t g, int64_t n, int bits);
std::vector<int32_t> unpack_qzeros(const int32_t* qzeros, int64_t g, int64_t n, int bits);

// Zero-point conventions: v1 ("gptq") stores z - 1, v2 ("gptq_v2") stores z.
// Convert per field: throws Error(kArgument) when a v1 field would be -1 (true zero 0).
std::vector<int32_t> zeros_to_v1(const std::vector<int32_t>& zeros, int bits);
std::vector<int32_t> zeros_from_v1(const std::vector<int32_t>& stored, int bits);

}  // namespace gptq::quant
