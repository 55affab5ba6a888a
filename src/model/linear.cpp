#include "model/linear.h"

#include <cblas.h>

#include <cstring>

#include "backend/cpu/dense.h"

namespace gptq::model {

Linear Linear::dense(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias) {
  Linear l;
  l.n_ = n;
  l.k_ = k;
  l.w_ = std::move(w);
  l.bias_ = std::move(bias);
  return l;
}

void Linear::forward(const float* x, int64_t m, float* y) const {
  if (q_) {
    forward_quantized(x, m, y);
    return;
  }
  if (m == 1) {
    // GEMV: y = W x. sgemv streams W once, which is what a decode step is bound by.
    backend::dense_gemv(w_.data(), n_, k_, x, y);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n_),
                static_cast<int>(k_), 1.0f, x, static_cast<int>(k_), w_.data(), static_cast<int>(k_), 0.0f, y,
                static_cast<int>(n_));
  }
  if (!bias_.empty()) {
    for (int64_t i = 0; i < m; ++i) {
      float* row = y + i * n_;
      for (int64_t j = 0; j < n_; ++j) row[j] += bias_[j];
    }
  }
}

size_t Linear::weight_bytes() const {
  if (q_) return quantized_weight_bytes();
  return (w_.size() + bias_.size()) * sizeof(float);
}

}  // namespace gptq::model
