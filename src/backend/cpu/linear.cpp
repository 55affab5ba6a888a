// The CPU implementations of backend::Linear: dense fp32 (dense_gemv for one row, OpenBLAS sgemm
// for more), dense 16-bit (dense16_gemm), and GPTQ-quantized (QLinear, qlinear.h); and the
// factories that pick them for Device::kCpu.
#include <fmt/format.h>

#include <array>
#include <cstring>
#include <mutex>

#include "backend/cpu/dense.h"
#include "backend/cpu/dense_kernels.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/qlinear.h"
#include "backend/cpu/weight_alloc.h"
#include "backend/linear.h"
#include "gptq/error.h"

namespace gptq::backend {
namespace {

void check_cpu(Device d, const char* what) {
  if (d != Device::kCpu) throw Error(ErrorKind::kUnsupported, fmt::format("{}: no backend for this device", what));
}

class DenseLinear final : public Linear {
 public:
  DenseLinear(int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias)
      : n_(n), k_(k), w_(std::move(w)), bias_(std::move(bias)) {}
  Device device() const override { return Device::kCpu; }
  LinearKind kind() const override { return LinearKind::kDense32; }
  int64_t n() const override { return n_; }
  int64_t k() const override { return k_; }
  void forward(const float* x, int64_t m, float* y, Arena* scratch) const override {
    if (uses_amx(m)) {
      forward_amx(x, m, y, scratch);
    } else {
      dense_gemm(w_.data(), n_, k_, x, m, y);
    }
    if (!bias_.empty()) add_bias(y, bias_.data(), m, n_);
  }
  size_t scratch_bytes(int64_t m) const override {
    // The AMX GEMM's split activations (sized for the CPU, not the active ISA: tests switch ISAs).
    if (m < detail::kAmxDenseMinRows || !cpu_supports(Isa::kAmx)) return 0;
    return Arena::round_up(static_cast<size_t>(detail::amx_dense_scratch_elems(m, k_)) * sizeof(uint16_t));
  }
  size_t weight_bytes() const override { return (w_.size() + bias_.size()) * sizeof(float); }
  void row(int64_t i, float* out) const override {
    std::memcpy(out, w_.data() + i * k_, static_cast<size_t>(k_) * sizeof(float));
  }
  std::vector<float> to_fp32() const override { return w_; }
  const float* fp32_weights() const override { return w_.data(); }
  std::span<const float> bias() const override { return bias_; }

 private:
  // m rows go to the AMX GEMM (dense_kernels.h) at the amx level for m >= kAmxDenseMinRows.
  bool uses_amx(int64_t m) const {
    return m >= detail::kAmxDenseMinRows && n_ > 0 && k_ > 0 && active_isa() == Isa::kAmx &&
           request_amx_tile_permission();
  }
  void forward_amx(const float* x, int64_t m, float* y, Arena* scratch) const {
    // W's bf16 parts, made on the first such call and kept (as many bytes as W with a lo part,
    // half as many without): a layer that never runs a prefill, or runs elsewhere, never pays.
    std::call_once(amx_once_, [&] {
      bool exact = true;
      for (float v : w_) {
        uint32_t b;
        std::memcpy(&b, &v, sizeof b);
        exact = exact && (b & 0xffffu) == 0;
      }
      amx_parts_ = exact ? 1 : 2;
      amx_panels_.resize(static_cast<size_t>(detail::amx_dense_panel_elems(n_, k_, amx_parts_)));
      detail::amx_dense_pack(w_.data(), n_, k_, amx_parts_, amx_panels_.data());
    });
    const detail::AmxDenseView v{n_, k_, amx_parts_, amx_panels_.data()};
    const int64_t elems = detail::amx_dense_scratch_elems(m, k_);
    if (scratch) {
      ArenaScope scope(*scratch);
      detail::amx_dense_gemm(v, x, m, y, scratch->take<uint16_t>(static_cast<size_t>(elems)));
    } else {
      std::vector<uint16_t> xa(static_cast<size_t>(elems));
      detail::amx_dense_gemm(v, x, m, y, xa.data());
    }
  }

  int64_t n_, k_;
  std::vector<float> w_;  // [n, k]
  std::vector<float> bias_;
  mutable std::once_flag amx_once_;
  mutable int amx_parts_ = 1;
  mutable std::vector<uint32_t> amx_panels_;
};

class Dense16Linear final : public Linear {
 public:
  Dense16Linear(int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w, std::vector<float> bias)
      : n_(n), k_(k), dtype_(dtype), bias_(std::move(bias)) {
    w_.assign(w.begin(), w.end());  // into huge pages (weight_alloc.h)
  }
  Device device() const override { return Device::kCpu; }
  LinearKind kind() const override { return LinearKind::kDense16; }
  int64_t n() const override { return n_; }
  int64_t k() const override { return k_; }
  void forward(const float* x, int64_t m, float* y, Arena*) const override {
    dense16_gemm(dtype_, w_.data(), n_, k_, x, m, y);
    if (!bias_.empty()) add_bias(y, bias_.data(), m, n_);
  }
  size_t scratch_bytes(int64_t) const override { return 0; }
  size_t weight_bytes() const override { return w_.size() * sizeof(uint16_t) + bias_.size() * sizeof(float); }
  void row(int64_t i, float* out) const override { widen16(dtype_, w_.data() + i * k_, k_, out); }
  std::vector<float> to_fp32() const override {
    std::vector<float> w(w_.size());
    widen16(dtype_, w_.data(), static_cast<int64_t>(w_.size()), w.data());
    return w;
  }
  std::span<const float> bias() const override { return bias_; }
  DType stored_dtype() const override { return dtype_; }

 private:
  int64_t n_, k_;
  DType dtype_;
  WeightVector<uint16_t> w_;  // [n, k] raw bits of dtype_
  std::vector<float> bias_;
};

}  // namespace

LinearPtr dense_linear(Device d, int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias) {
  check_cpu(d, "dense linear");
  if (n < 0 || k < 0 || w.size() != static_cast<size_t>(n) * static_cast<size_t>(k)) {
    throw Error(ErrorKind::kArgument, fmt::format("dense linear: expected {} x {} weights, found {}", n, k, w.size()));
  }
  return std::make_shared<const DenseLinear>(n, k, std::move(w), std::move(bias));
}

LinearPtr dense16_linear(Device d, int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w,
                         std::vector<float> bias) {
  check_cpu(d, "dense 16-bit linear");
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    throw Error(ErrorKind::kArgument,
                fmt::format("dense 16-bit linear: expected BF16 or F16 weights, found {}", dtype_name(dtype)));
  }
  if (n < 0 || k < 0 || w.size() != static_cast<size_t>(n) * static_cast<size_t>(k)) {
    throw Error(ErrorKind::kArgument,
                fmt::format("dense 16-bit linear: expected {} x {} weights, found {}", n, k, w.size()));
  }
  return std::make_shared<const Dense16Linear>(n, k, dtype, std::move(w), std::move(bias));
}

LinearPtr quantized_linear(Device d, const QuantizedLinearView& view, std::string_view name) {
  check_cpu(d, "quantized linear");
  return std::make_shared<const QLinear>(QLinear::create(view, name));
}

void forward_shared_input(std::span<const Linear* const> layers, const float* x, int64_t m,
                          std::span<float* const> ys, Arena* scratch) {
  if (layers.size() != ys.size()) {
    throw Error(ErrorKind::kArgument,
                fmt::format("forward_shared_input: {} layers but {} outputs", layers.size(), ys.size()));
  }
  // All quantized (and few enough): one parallel region for their decode kernels.
  std::array<const QLinear*, 8> q{};
  size_t nq = 0;
  for (const Linear* l : layers) {
    if (l->kind() != LinearKind::kQuantized || nq == q.size()) break;
    q[nq++] = static_cast<const QLinear*>(l);
  }
  if (nq == layers.size()) {
    QLinear::forward_shared_input(std::span(q.data(), nq), x, m, ys, scratch);
    return;
  }
  for (size_t i = 0; i < layers.size(); ++i) layers[i]->forward(x, m, ys[i], scratch);
}

}  // namespace gptq::backend
