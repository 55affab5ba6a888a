// A linear layer as the executor and the quantization pipeline hold it: a shared, immutable
// backend::Linear (backend/linear.h: dense fp32, dense 16-bit, or quantized, implemented by the
// device's backend), with the few edits the pipeline makes expressed as replacing it. Embeddings
// and lm_head are Linears too. Nothing here knows which device or kernel runs it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/linear.h"
#include "gptq/tensor.h"

namespace gptq::model {

class Linear {
 public:
  Linear() = default;
  explicit Linear(backend::LinearPtr impl) : impl_(std::move(impl)) {}
  // Dense: w is [n, k] row-major, bias [n] or empty.
  static Linear dense(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias = {},
                      backend::Device d = backend::Device::kCpu);
  // Dense 16-bit: w [n, k] row-major holds the raw bits of `dtype` (DType::kBF16 or kF16; Error
  // (kArgument) otherwise, or when w.size() != n * k). The bias stays fp32.
  static Linear dense16(int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w, std::vector<float> bias = {},
                        backend::Device d = backend::Device::kCpu);

  int64_t n() const { return impl_ ? impl_->n() : 0; }
  int64_t k() const { return impl_ ? impl_->k() : 0; }
  bool empty() const { return impl_ == nullptr; }
  bool is_quantized() const { return impl_ && impl_->kind() == backend::LinearKind::kQuantized; }
  bool is_dense16() const { return impl_ && impl_->kind() == backend::LinearKind::kDense16; }
  const backend::Linear& impl() const { return *impl_; }

  // x [m, k] -> y [m, n] (backend::Linear::forward). y must not alias x.
  void forward(const float* x, int64_t m, float* y, backend::Arena* scratch = nullptr) const {
    impl_->forward(x, m, y, scratch);
  }
  size_t scratch_bytes(int64_t m) const { return impl_ ? impl_->scratch_bytes(m) : 0; }
  // ys[i] = layers[i].forward(x) for linears that read the same input (backend::forward_shared_input).
  static void forward_shared_input(std::span<const Linear* const> layers, const float* x, int64_t m,
                                   std::span<float* const> ys, backend::Arena* scratch = nullptr);
  size_t weight_bytes() const { return impl_ ? impl_->weight_bytes() : 0; }
  // Row i of a dense W as fp32 into out [k]: the embedding lookup. The caller checks 0 <= i < n.
  void row(int64_t i, float* out) const { impl_->row(i, out); }
  // W as fp32 [n, k] (widened or dequantized copy).
  std::vector<float> to_fp32() const { return impl_ ? impl_->to_fp32() : std::vector<float>{}; }

  // Turns a dense 16-bit linear into a dense fp32 one holding the same values (widening is
  // exact); does nothing to other kinds. The quantizer works on fp32 weights.
  void widen_to_fp32();
  // Dense fp32 only: W [n, k] in place. Empty for a 16-bit or quantized linear (see widen_to_fp32).
  std::span<const float> weight() const;
  // Replaces W by fp32 w [n, k], keeping the bias: the pipeline puts dequantized weights back.
  void set_weight(std::vector<float> w);
  std::span<const float> bias() const { return impl_ ? impl_->bias() : std::span<const float>{}; }
  DType dense16_dtype() const { return impl_ ? impl_->stored_dtype() : DType::kF32; }

 private:
  backend::LinearPtr impl_;
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
// A fused linear stored as its parts (arch::FusedDesc::split_names; `parts` are {module, n} in
// the fused order): each part read as read_packed_linear reads it (with q.for_module of its own
// name) and the parts joined along N, as if the fused module had been quantized as one linear,
// which GPTQ's row-independent solve makes it. The parts must agree on bits, groups and g_idx,
// and K and every part's N be multiples of 32; otherwise Error(kShape) naming the modules.
// The biases are not read. The result is named `fused_module`.
checkpoint::PackedLinear read_packed_parts(const io::TensorStore& store, const std::string& fused_module,
                                           const std::vector<std::pair<std::string, int64_t>>& parts, int64_t k,
                                           const config::QuantizationConfig& q);
// The same as a Linear (each part's bias joined too, when the parts have them), on the
// backend's quantized kernels or, with dequantize, dense fp32.
Linear load_quantized_parts(const io::TensorStore& store, const std::string& fused_module,
                            const std::vector<std::pair<std::string, int64_t>>& parts, int64_t k,
                            const config::QuantizationConfig& q, bool dequantize = false);
// Dequantizes a packed linear to fp32 [N, K]: W[n,k] = s[g_idx[k],n] * (q - z[g_idx[k],n]).
std::vector<float> dequantize_packed(const checkpoint::PackedLinear& p, const std::string& format);
}  // namespace gptq::model
