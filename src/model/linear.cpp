#include "model/linear.h"

#include <array>

namespace gptq::model {

Linear Linear::dense(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias, backend::Device d) {
  return Linear(backend::dense_linear(d, n, k, std::move(w), std::move(bias)));
}

Linear Linear::dense16(int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w, std::vector<float> bias,
                       backend::Device d) {
  return Linear(backend::dense16_linear(d, n, k, dtype, std::move(w), std::move(bias)));
}

void Linear::forward_shared_input(std::span<const Linear* const> layers, const float* x, int64_t m,
                                  std::span<float* const> ys, backend::Arena* scratch) {
  std::array<const backend::Linear*, 8> impls{};
  if (layers.size() > impls.size()) {
    for (size_t i = 0; i < layers.size() && i < ys.size(); ++i) layers[i]->forward(x, m, ys[i], scratch);
    return;
  }
  for (size_t i = 0; i < layers.size(); ++i) impls[i] = layers[i]->impl_.get();
  backend::forward_shared_input(std::span(impls.data(), layers.size()), x, m, ys, scratch);
}

void Linear::widen_to_fp32() {
  if (!is_dense16()) return;
  const auto& b = impl_->bias();
  impl_ = backend::dense_linear(impl_->device(), n(), k(), impl_->to_fp32(), std::vector<float>(b.begin(), b.end()));
}

std::span<const float> Linear::weight() const {
  if (!impl_ || !impl_->fp32_weights()) return {};
  return {impl_->fp32_weights(), static_cast<size_t>(n() * k())};
}

void Linear::set_weight(std::vector<float> w) {
  const auto b = bias();
  impl_ = backend::dense_linear(impl_->device(), n(), k(), std::move(w), std::vector<float>(b.begin(), b.end()));
}

}  // namespace gptq::model
