// A linear layer as a backend implements it: y[m, n] = x[m, k] W^T + b, for weights held dense
// in fp32, dense in 16 bits (bf16 or fp16 as the checkpoint stores them, fp32 arithmetic), or
// GPTQ-quantized. The executor (src/model) and the quantization pipeline see only this interface;
// the CPU implementations live in src/backend/cpu (dense_linear.cpp, qlinear.h). A CUDA backend
// would implement the same interface on device memory, and the factories below pick the
// implementation from the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "backend/buffer.h"
#include "backend/ops.h"
#include "gptq/tensor.h"

namespace gptq::backend {

enum class LinearKind { kDense32, kDense16, kQuantized };

// The raw tensors of one GPTQ linear as stored in the checkpoint. The pointers need not be
// aligned (they may point into an mmap'd safetensors file) and must stay valid only during
// quantized_linear().
struct QuantizedLinearView {
  int64_t n = 0;                        // N outputs
  int64_t k = 0;                        // K inputs
  int bits = 4;                         // b: 2, 3, 4 or 8
  int group_size = 128;                 // g, or -1 for one group spanning K
  const int32_t* qweight = nullptr;     // [ceil(K*b/32), N] codes packed along K
  const int32_t* qzeros = nullptr;      // [G, N*b/32] zero points packed along N
  const uint16_t* scales = nullptr;     // [G, N] fp16
  const int32_t* g_idx = nullptr;       // [K] group of each input; nullptr means k / g
  bool zeros_v2 = false;                // true: gptq_v2 (stores z); false: gptq v1 (stores z - 1)
  const uint16_t* bias_fp16 = nullptr;  // [N] fp16, or nullptr
};

class Linear {
 public:
  virtual ~Linear() = default;
  virtual Device device() const = 0;
  virtual LinearKind kind() const = 0;
  virtual int64_t n() const = 0;
  virtual int64_t k() const = 0;

  // y [m, n] = x [m, k] W^T + b. y must not alias x. Temporaries come from scratch
  // (scratch_bytes(m) of it, released before the call returns), or are allocated when it is null.
  virtual void forward(const float* x, int64_t m, float* y, Arena* scratch) const = 0;
  virtual size_t scratch_bytes(int64_t m) const = 0;
  // Bytes of weights one forward reads (for bandwidth figures): 4 per fp32 weight, 2 per 16-bit
  // weight, the packed size for a quantized one, plus a dense linear's fp32 bias.
  virtual size_t weight_bytes() const = 0;

  // Row i of a dense W as fp32 into out [k] (the embedding lookup; the caller checks
  // 0 <= i < n). Error(kUnsupported) for a quantized linear.
  virtual void row(int64_t i, float* out) const = 0;
  // W as fp32 [n, k]: a copy, widened (exact) or dequantized. What the quantizer starts from
  // and what tests compare.
  virtual std::vector<float> to_fp32() const = 0;
  // W in place when it is held as fp32 [n, k] in host memory (kDense32 on the CPU), else null.
  virtual const float* fp32_weights() const { return nullptr; }
  // The fp32 bias [n], or empty (a quantized linear's bias is part of its kernels' data).
  virtual std::span<const float> bias() const = 0;
  // A dense 16-bit linear's dtype (DType::kBF16 or kF16); DType::kF32 otherwise.
  virtual DType stored_dtype() const { return DType::kF32; }
};

using LinearPtr = std::shared_ptr<const Linear>;

// Dense fp32: w [n, k] row-major, bias [n] or empty.
LinearPtr dense_linear(Device d, int64_t n, int64_t k, std::vector<float> w, std::vector<float> bias);
// Dense 16-bit: w [n, k] row-major holds the raw bits of `dtype` (DType::kBF16 or kF16; Error
// (kArgument) otherwise, or when w.size() != n * k). The bias stays fp32.
LinearPtr dense16_linear(Device d, int64_t n, int64_t k, DType dtype, std::vector<uint16_t> w,
                         std::vector<float> bias);
// GPTQ-quantized: validated and repacked into the device's kernels' layout; errors name `name`.
LinearPtr quantized_linear(Device d, const QuantizedLinearView& view, std::string_view name);

// ys[i] = layers[i]->forward(x) for linears that read the same input (q/k/v, gate/up). The
// device may run them together: on the CPU, quantized decode steps run all of them in one
// parallel region. Takes the sum of the layers' scratch_bytes(m). Error(kArgument) when the
// spans' sizes differ.
void forward_shared_input(std::span<const Linear* const> layers, const float* x, int64_t m,
                          std::span<float* const> ys, Arena* scratch);

}  // namespace gptq::backend
