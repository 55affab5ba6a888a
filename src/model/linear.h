// A linear layer as the executor sees it: y[M, N] = x[M, K] W^T + b, with W either dense fp32
// (OpenBLAS sgemm) or a quantized kernel object from the backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gptq::backend {
class QLinear;
}

namespace gptq::model {

class Linear {
 public:
  Linear() = default;
  // Dense: w is [n, k] row-major, bias [n] or empty.
  static Linear dense(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias = {});
  static Linear quantized(std::shared_ptr<const backend::QLinear> q);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  bool is_quantized() const { return q_ != nullptr; }
  bool empty() const { return n_ == 0; }
  // x [m, k] -> y [m, n]. y must not alias x.
  void forward(const float* x, int64_t m, float* y) const;
  // Bytes of weights one forward reads (for bandwidth figures).
  size_t weight_bytes() const;

  const std::vector<float>& weight() const { return w_; }  // dense only: [n, k]
  std::vector<float>& mutable_weight() { return w_; }
  const std::vector<float>& bias() const { return bias_; }
  const std::shared_ptr<const backend::QLinear>& qlinear() const { return q_; }

 private:
  void forward_quantized(const float* x, int64_t m, float* y) const;
  size_t quantized_weight_bytes() const;

  int64_t n_ = 0, k_ = 0;
  std::vector<float> w_;     // [n, k]
  std::vector<float> bias_;  // [n]
  std::shared_ptr<const backend::QLinear> q_;
};

}  // namespace gptq::model

namespace gptq::io {
class TensorStore;
}
namespace gptq::config {
struct QuantizationConfig;
}

namespace gptq::model {
// Builds a quantized linear from "<module>.qweight/.qzeros/.scales/.g_idx(/.bias)", validated
// against the expected [n, k] and the quantization config. By default it runs on the backend's
// quantized kernels; with dequantize it becomes a dense fp32 matrix (the reference path).
Linear load_quantized_linear(const io::TensorStore& store, const std::string& module, int64_t n, int64_t k,
                             const config::QuantizationConfig& q, bool dequantize = false);
}  // namespace gptq::model
