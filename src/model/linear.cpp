#include "model/linear.h"

#include <fmt/format.h>

#include <cstring>

#include "backend/cpu/dense.h"
#include "gptq/error.h"

namespace gptq::model {

Linear Linear::dense(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias) {
  Linear l;
  l.n_ = n;
  l.k_ = k;
  l.w_ = std::move(w);
  l.bias_ = std::move(bias);
  return l;
}

Linear Linear::dense16(int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w,
                       std::vector<float> bias) {
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    throw Error(ErrorKind::kArgument,
                fmt::format("Linear::dense16: expected BF16 or F16 weights, found {}", dtype_name(dtype)));
  }
  if (n < 0 || k < 0 || w.size() != static_cast<size_t>(n) * static_cast<size_t>(k)) {
    throw Error(ErrorKind::kArgument,
                fmt::format("Linear::dense16: expected {} x {} weights, found {}", n, k, w.size()));
  }
  Linear l;
  l.n_ = n;
  l.k_ = k;
  l.w16_.assign(w.begin(), w.end());  // into huge pages (backend/cpu/weight_alloc.h)
  w = {};
  l.w16_dtype_ = dtype;
  l.bias_ = std::move(bias);
  return l;
}

void Linear::row(int64_t i, float* out) const {
  if (is_dense16()) {
    backend::widen16(w16_dtype_, w16_.data() + i * k_, k_, out);
  } else {
    std::memcpy(out, w_.data() + i * k_, static_cast<size_t>(k_) * sizeof(float));
  }
}

void Linear::widen_to_fp32() {
  if (!is_dense16()) return;
  std::vector<float> w(w16_.size());
  backend::widen16(w16_dtype_, w16_.data(), static_cast<int64_t>(w16_.size()), w.data());
  w_ = std::move(w);
  w16_ = {};  // frees the 16-bit copy
}

void Linear::forward(const float* x, int64_t m, float* y, backend::Arena* scratch) const {
  if (q_) {
    forward_quantized(x, m, y, scratch);
    return;
  }
  if (is_dense16()) {
    backend::dense16_gemm(w16_dtype_, w16_.data(), n_, k_, x, m, y);
  } else {
    backend::dense_gemm(w_.data(), n_, k_, x, m, y);
  }
  if (!bias_.empty()) backend::add_bias(y, bias_.data(), m, n_);
}

size_t Linear::weight_bytes() const {
  if (q_) return quantized_weight_bytes();
  return w16_.size() * sizeof(uint16_t) + (w_.size() + bias_.size()) * sizeof(float);
}

}  // namespace gptq::model
