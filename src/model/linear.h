// A linear layer as the executor sees it: y[M, N] = x[M, K] W^T + b, with W dense fp32
// (backend::dense_gemv for one row, OpenBLAS sgemm for more), dense 16-bit (bf16 or fp16 as the
// checkpoint stores it, backend::dense16_gemm: half the bytes per decode step, fp32 arithmetic),
// or a quantized kernel object from the backend. Embeddings and lm_head are Linears too.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/buffer.h"
#include "backend/cpu/weight_alloc.h"
#include "gptq/tensor.h"

namespace gptq::backend {
class QLinear;
}

namespace gptq::model {

class Linear {
 public:
  Linear() = default;
  // Dense: w is [n, k] row-major, bias [n] or empty.
  static Linear dense(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias = {});
  // Dense 16-bit: w [n, k] row-major holds the raw bits of `dtype` (DType::kBF16 or kF16; Error
  // (kArgument) otherwise, or when w.size() != n * k). The bias stays fp32.
  static Linear dense16(int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w,
                        std::vector<float> bias = {});
  static Linear quantized(std::shared_ptr<const backend::QLinear> q);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  bool is_quantized() const { return q_ != nullptr; }
  bool is_dense16() const { return !w16_.empty(); }
  bool empty() const { return n_ == 0; }
  // x [m, k] -> y [m, n]. y must not alias x. Temporaries come from scratch (scratch_bytes(m) of
  // it, released before the call returns), or are allocated when it is null.
  void forward(const float* x, int64_t m, float* y, backend::Arena* scratch = nullptr) const;
  size_t scratch_bytes(int64_t m) const;
  // ys[i] = layers[i].forward(x) for linears that read the same input (q/k/v, gate/up): when all
  // are quantized, decode steps run them in one parallel region (backend::QLinear). Takes the sum
  // of the layers' scratch_bytes(m).
  static void forward_shared_input(std::span<const Linear* const> layers, const float* x, int64_t m,
                                   std::span<float* const> ys, backend::Arena* scratch = nullptr);
  // Bytes of weights one forward reads (for bandwidth figures): 4 per fp32 weight, 2 per 16-bit
  // weight, the packed size for a quantized one, plus the fp32 bias.
  size_t weight_bytes() const;
  // Row i of a dense (fp32 or 16-bit) W as fp32 into out [k]: the embedding lookup. The caller
  // checks 0 <= i < n.
  void row(int64_t i, float* out) const;
  // Turns a dense 16-bit linear into a dense fp32 one holding the same values (widening is
  // exact); does nothing to other kinds. The quantizer works on fp32 weights.
  void widen_to_fp32();

  // Dense fp32 only: [n, k]. Empty for a 16-bit or quantized linear (see widen_to_fp32).
  const std::vector<float>& weight() const { return w_; }
  // Widens a 16-bit linear first, so that assigning to the result always leaves a consistent
  // dense fp32 linear.
  std::vector<float>& mutable_weight() {
    widen_to_fp32();
    return w_;
  }
  // Dense 16-bit only: [n, k] raw bits of dense16_dtype().
  const backend::WeightVector<uint16_t>& weight16() const { return w16_; }
  DType dense16_dtype() const { return w16_dtype_; }
  const std::vector<float>& bias() const { return bias_; }
  const std::shared_ptr<const backend::QLinear>& qlinear() const { return q_; }

 private:
  void forward_quantized(const float* x, int64_t m, float* y, backend::Arena* scratch) const;
  size_t quantized_weight_bytes() const;

  int64_t n_ = 0, k_ = 0;
  std::vector<float> w_;         // [n, k] dense fp32
  backend::WeightVector<uint16_t> w16_;  // [n, k] dense 16-bit, bits of w16_dtype_ (huge pages)
  DType w16_dtype_ = DType::kBF16;
  std::vector<float> bias_;      // [n]
  std::shared_ptr<const backend::QLinear> q_;
};

}  // namespace gptq::model

namespace gptq::io {
class TensorStore;
}
namespace gptq::config {
struct QuantizationConfig;
}
namespace gptq::checkpoint {
struct PackedLinear;
}

namespace gptq::model {
// Builds a quantized linear from "<module>.qweight/.qzeros/.scales/.g_idx(/.bias)", validated
// against the expected [n, k] and the quantization config. By default it runs on the backend's
// quantized kernels; with dequantize it becomes a dense fp32 matrix (the reference path).
Linear load_quantized_linear(const io::TensorStore& store, const std::string& module, int64_t n, int64_t k,
                             const config::QuantizationConfig& q, bool dequantize = false);
// Reads "<module>.qweight/.qzeros/.scales/.g_idx" (validated as load_quantized_linear does) into
// a PackedLinear with v2 zeros (v1 words converted as GPTQModel reads them), qweight padded to
// whole packs of 32 inputs ([ceil(K/32)*b, N]) and qzeros rows to whole packs of 32 columns
// ([G, ceil(N/32)*b]), and g_idx = k / g when the file has none; the bias is not read.
// dequantize_packed(p, "gptq_v2") is the checkpoint's dequantized view.
checkpoint::PackedLinear read_packed_linear(const io::TensorStore& store, const std::string& module, int64_t n,
                                            int64_t k, const config::QuantizationConfig& q);
// Dequantizes a packed linear to fp32 [N, K]: W[n,k] = s[g_idx[k],n] * (q - z[g_idx[k],n]).
std::vector<float> dequantize_packed(const checkpoint::PackedLinear& p, const std::string& format);
}  // namespace gptq::model
