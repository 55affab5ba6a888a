// The executor's ops behind one device-neutral interface (the pattern of CTranslate2's op /
// op_cpu / op_gpu): src/model calls these and never loops over hidden or calls BLAS itself. The
// CPU implementation (src/backend/cpu/ops.cpp) picks each op's kernel per call from the active
// ISA (backend/cpu/isa.h): a scalar reference, and AVX2 where the op is hot. A CUDA backend would
// implement the same interface on device buffers; the executor names the device, not the code.
// All pointers are host fp32 arrays for the CPU device.
#pragma once

#include <cstdint>

#include "backend/rope.h"

namespace gptq::backend {

enum class Device { kCpu };

enum class Act { kSilu, kGelu, kGeluTanh, kRelu };  // gelu: exact erf form; gelu_tanh: tanh approximation
enum class Rope { kRotateHalf, kInterleaved };      // pairs (i, i + rot/2) as HF rotate_half / (2i, 2i+1) as GPT-J

struct AttentionShape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;  // heads % kv_heads == 0 (grouped-query attention)
  float scale = 0;                                // scores = scale * q.k (usually 1/sqrt(head_dim))
  int64_t window = 0;                             // > 0: a query at p sees keys p-window+1 .. p
  float softcap = 0;                              // > 0: scores = softcap * tanh(scores / softcap)
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Device device() const = 0;

  // y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * (offset + w), rows of n (offset 1: Gemma's norms;
  // called with rows = tokens*heads and n = head_dim it is a per-head q/k norm). y may alias x.
  virtual void rms_norm(const float* x, const float* w, float offset, int64_t rows, int64_t n, float eps,
                        float* y) const = 0;
  // y[r] = (x[r] - mean) / sqrt(var + eps) * w + b (b may be null). y may alias x.
  virtual void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t n, float eps,
                          float* y) const = 0;
  // x[i] += y[i] (residual adds).
  virtual void add(float* x, const float* y, int64_t n) const = 0;
  // x[i] *= s (embedding scale).
  virtual void scale(float* x, int64_t n, float s) const = 0;
  // x[i] = act(x[i]).
  virtual void activation(Act a, float* x, int64_t n) const = 0;
  // g[i] = act(g[i]) * u[i] (gated MLPs).
  virtual void gated(Act a, float* g, const float* u, int64_t n) const = 0;
  // x[i] = cap * tanh(x[i] / cap) (logit softcapping of the head).
  virtual void softcap(float* x, int64_t n, float cap) const = 0;
  // Rotates the first `rot` dims of every head of x [t, heads * head_dim] for positions pos0 ..
  // pos0+t-1 by angle pos * inv_freq[j], j < rot/2 (partial rotary: rot < head_dim), with cos and
  // sin times f.attention_factor; inv_freq is f.for_call(pos0, t) (LongRoPE switches per call).
  virtual void rope(float* x, int64_t t, int64_t heads, int64_t head_dim, int64_t rot, const RopeFreqs& f,
                    int64_t pos0, Rope style) const = 0;
  // Causal attention of q [t, heads*hd] (positions pos0 .. pos0+t-1) over k, v [pos0+t,
  // kv_heads*hd] -> out [t, heads*hd]. scratch: attention_scratch(t, pos0, s) floats of this
  // device's memory (the scores), or null to let the op allocate them itself.
  virtual void attention(const float* q, const float* k, const float* v, int64_t t, int64_t pos0,
                         const AttentionShape& s, float* out, float* scratch) const = 0;
  // Floats of scratch one attention() call needs.
  virtual int64_t attention_scratch(int64_t t, int64_t pos0, const AttentionShape& s) const = 0;
};

// The ops of a device (CPU: kernels chosen per call from the active ISA).
const Ops& ops_for(Device d);

}  // namespace gptq::backend
