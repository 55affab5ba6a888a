// Quantized linear layers of GPTQ checkpoints on the CPU: validation and repacking at load time,
// then y = x W^T (+ bias) with the kernels of the active ISA (backend/cpu/isa.h).
//
// Notation (SPEC §1): the layer maps K inputs to N outputs; b bits; group size g (g = K for -1);
// G = ceil(K / g) groups.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/buffer.h"
#include "backend/linear.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/qgemm_kernels.h"
#include "backend/cpu/weight_alloc.h"

namespace gptq::backend {
namespace detail {
class Temps;  // one forward call's temporaries (qlinear.cpp)
}

// The CPU's quantized backend::Linear.
class QLinear final : public Linear {
 public:
  // Validates the view and repacks it into the kernels' layout (qgemm_kernels.h). Throws
  // gptq::Error naming the layer `name`:
  //   kUnsupported  bits not in {2, 3, 4, 8};
  //   kShape        K not positive or N not a positive multiple of 32 (with both sizes; K need
  //                 not be a multiple of 32: GPTQModel's ceil(K*b/32) rows), a group size that is
  //                 neither -1 nor >= 1, a g_idx value outside [0, G) (with index, value and G);
  //   kArgument     a null qweight, qzeros or scales pointer.
  static QLinear create(const QuantizedLinearView& view, std::string_view name);

  QLinear() = default;

  // y [m, N] = x [m, K] * W^T + bias. x and y are row-major fp32 and must not overlap. y is
  // overwritten. Deterministic: the result does not depend on the thread count
  // (core::set_num_threads). The AVX2/AVX-VNNI decode kernel (m == 1..4, 2/4/8 bits) computes
  // with x rounded to 16-bit integers per 32 inputs (error <= 2^-16 of their largest |x|, see
  // qgemm_kernels.h), so it differs from the scalar and prefill (m > 4) results by about 1e-5
  // relative; elsewhere ISAs differ only in the order of fp32 additions.
  // scratch: where the call's temporaries go (scratch_bytes(m) of it; released before it
  // returns), or null to allocate them.
  void forward(const float* x, int64_t m, float* y, Arena* scratch = nullptr) const override;
  // Bytes of scratch one forward() of m rows takes (an upper bound over ISAs).
  size_t scratch_bytes(int64_t m) const override;

  // ys[i] [m, N_i] = x [m, K] * W_i^T + bias_i for layers that read the same input (q/k/v,
  // gate/up): the same results as forward() on each, but decode steps run all layers' work in one
  // parallel region. Throws as forward() does, or Error(kArgument) when the layers' K differ or
  // the spans' sizes do. Takes the sum of the layers' scratch_bytes(m) from scratch.
  static void forward_shared_input(std::span<const QLinear* const> layers, const float* x,
                                   int64_t m, std::span<float* const> ys, Arena* scratch = nullptr);

  // Bytes of packed weights, scales and zero points that one forward() reads.
  size_t weight_bytes() const override;

  // W as fp32 [N, K] in the original input order: scales[g_idx[k], n] * (q - z). For tests.
  std::vector<float> dequantize() const;

  int64_t n() const override { return n_; }
  int64_t k() const override { return k_; }
  Device device() const override { return Device::kCpu; }
  LinearKind kind() const override { return LinearKind::kQuantized; }
  // Error(kUnsupported): a quantized linear has no rows to look up.
  void row(int64_t i, float* out) const override;
  std::vector<float> to_fp32() const override { return dequantize(); }
  std::span<const float> bias() const override { return bias_; }
  int bits() const { return bits_; }
  const std::string& name() const { return name_; }
  // True when the inputs had to be reordered or padded (act-order or groups of a size that is not
  // a multiple of 32), so forward() gathers x into the packed order first.
  bool permuted() const { return !perm_.empty(); }

 private:
  struct Int16Job;
  detail::PackedLayer packed() const;
  void check_forward(const float* x, int64_t m, const float* y) const;
  const float* packed_input(const float* x, int64_t m, detail::Temps& temps) const;
  bool uses_int16_decode(Isa isa, int64_t m) const;
  bool uses_int16_prefill(Isa isa, int64_t m) const;
  void add_bias(int64_t m, float* y) const;
  Int16Job int16_job(const float* x, int64_t m, float* y, detail::Temps& temps) const;
  static void run_int16_jobs(std::span<Int16Job> jobs, int64_t m, Isa isa);
  static void run_int16_prefill(const Int16Job& job, int64_t m);

  std::string name_;
  int64_t n_ = 0, k_ = 0;
  int bits_ = 4;
  int zero_offset_ = 1;
  int64_t kp_ = 0;                                                     // padded K
  WeightVector<uint32_t> words_;  // [N/8][kp/32][bits][8]
  std::vector<uint16_t> scales_;                                       // [N/8][n_seg][8] fp16
  std::vector<uint8_t> zeros_;         // [N/8][n_seg][8] stored zero points
  std::vector<detail::Segment> segs_;  // [n_seg]
  std::vector<int32_t> unit_seg_;      // [kp/32]
  std::vector<int32_t> perm_;          // [kp] original input of each packed input, -1 = pad;
                                       // empty when the packed order is the identity
  std::vector<float> x_scale_;         // [32] gemv_x_scale() per position in a unit
  std::vector<float> bias_;            // [N] or empty
};

}  // namespace gptq::backend
