// The CPU implementation of backend::Ops: checks nothing the executor has not checked, picks the
// kernel of each op per call from the active ISA, and keeps the O(T^2) prefill attention in BLAS.
#include "backend/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "backend/cpu/isa.h"
#include "backend/cpu/ops_kernels.h"
#include "core/dot.h"
#include "core/gemm.h"
#include "core/parallel.h"

namespace gptq::backend {
namespace {

float act1(Act a, float x) {
  switch (a) {
    case Act::kSilu: return x / (1.0f + std::exp(-x));
    case Act::kGelu: return 0.5f * x * (1.0f + std::erf(x * static_cast<float>(std::numbers::sqrt2 / 2)));
    case Act::kGeluTanh: {
      const float c = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
      return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
    }
    case Act::kRelu: return x > 0 ? x : 0.0f;
  }
  return x;
}

void softmax_range(float* s, int64_t lo, int64_t hi) {
  (uses_avx2(active_isa()) ? detail::softmax_avx2 : detail::softmax_scalar)(s, lo, hi);
}

class CpuOps final : public Ops {
  static constexpr int64_t kPrefillRows = 8;  // attention of this many queries or more runs in BLAS
  static constexpr int64_t kQueryBlock = 64;  // queries per prefill attention task
  static constexpr int64_t kMaxSlots = 16;    // scratch slots of prefill attention (not per thread)
  static int64_t prefill_slots(int64_t t, const AttentionShape& a) {
    return std::min(kMaxSlots, a.heads * ((t + kQueryBlock - 1) / kQueryBlock));
  }

 public:
  Device device() const override { return Device::kCpu; }

  void rms_norm(const float* x, const float* w, float offset, int64_t rows, int64_t n, float eps,
                float* y) const override {
    (uses_avx2(active_isa()) ? detail::rms_norm_avx2 : detail::rms_norm_scalar)(x, w, offset, rows, n, eps, y);
  }
  void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t n, float eps,
                  float* y) const override {
    (uses_avx2(active_isa()) ? detail::layer_norm_avx2 : detail::layer_norm_scalar)(x, w, b, rows, n, eps, y);
  }
  void add(float* x, const float* y, int64_t n) const override {
    (uses_avx2(active_isa()) ? detail::add_avx2 : detail::add_scalar)(x, y, n);
  }
  void scale(float* x, int64_t n, float s) const override {
    (uses_avx2(active_isa()) ? detail::scale_avx2 : detail::scale_scalar)(x, n, s);
  }
  // Transcendental functions stay scalar (std::exp/erf/tanh) on every ISA: results equal the
  // reference's, and their cost is O(T F) against the O(T F D) of the linears around them.
  void activation(Act a, float* x, int64_t n) const override {
    for (int64_t i = 0; i < n; ++i) x[i] = act1(a, x[i]);
  }
  void gated(Act a, float* g, const float* u, int64_t n) const override {
    for (int64_t i = 0; i < n; ++i) g[i] = act1(a, g[i]) * u[i];
  }
  void softcap(float* x, int64_t n, float cap) const override {
    for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
  }

  void rope(float* x, int64_t t, int64_t heads, int64_t head_dim, int64_t rot, const RopeFreqs& f, int64_t pos0,
            Rope style) const override {
    const int64_t half = rot / 2;
    const float* inv_freq = f.for_call(pos0, t);
    const float af = f.attention_factor;
    auto rotate = uses_avx2(active_isa()) ? detail::rotate_avx2 : detail::rotate_scalar;
    // cos and sin of one position: on the stack for every real head size (no allocation per
    // layer per token), on the heap past it.
    constexpr int64_t kStackHalf = 256;
    float cs_stack[kStackHalf], sn_stack[kStackHalf];
    std::vector<float> cs_heap, sn_heap;
    if (half > kStackHalf) {
      cs_heap.resize(static_cast<size_t>(half));
      sn_heap.resize(static_cast<size_t>(half));
    }
    float* cs = half > kStackHalf ? cs_heap.data() : cs_stack;
    float* sn = half > kStackHalf ? sn_heap.data() : sn_stack;
    for (int64_t i = 0; i < t; ++i) {
      const float pos = static_cast<float>(pos0 + i);
      for (int64_t j = 0; j < half; ++j) {
        const float a = pos * inv_freq[j];
        // As transformers: cos(a) * attention_factor in fp32 (a no-op multiply by 1 otherwise).
        cs[j] = std::cos(a) * af;
        sn[j] = std::sin(a) * af;
      }
      for (int64_t h = 0; h < heads; ++h) {
        rotate(x + (i * heads + h) * head_dim, cs, sn, half, style == Rope::kInterleaved);
      }
    }
  }

  // Prefill: the scores of one head at a time, [t, L]; decode: one row [L] per head.
  int64_t attention_scratch(int64_t t, int64_t pos0, const AttentionShape& a) const override {
    if (t < kPrefillRows) return a.heads * (pos0 + t);
    return prefill_slots(t, a) * std::min(t, kQueryBlock) * (pos0 + t);
  }

  void attention(const float* q, const float* k, const float* v, int64_t t, int64_t pos0, const AttentionShape& a,
                 float* out, float* scratch) const override {
    std::vector<float> own;
    if (!scratch) {
      own.resize(static_cast<size_t>(attention_scratch(t, pos0, a)));
      scratch = own.data();
    }
    const int64_t H = a.heads, KV = a.kv_heads, hd = a.head_dim;
    const int64_t rep = H / KV, L = pos0 + t;
    const int64_t qs = H * hd, ks = KV * hd;
    // Keys [lo, hi) are visible to query i: causal, and inside the window when there is one.
    auto range = [&](int64_t i, int64_t* lo, int64_t* hi) {
      *hi = pos0 + i + 1;
      *lo = a.window > 0 ? std::max<int64_t>(0, *hi - a.window) : 0;
    };
    auto cap = [&](float* s, int64_t lo, int64_t hi) {
      if (a.softcap > 0) {
        for (int64_t j = lo; j < hi; ++j) s[j] = a.softcap * std::tanh(s[j] / a.softcap);
      }
    };
    if (t >= kPrefillRows) {
      // Prefill: one task per (head, block of kQueryBlock queries), two single-threaded sgemms
      // each (scores over the keys the block can see, then weighted values), so the causal
      // half of the T^2 work is skipped and softmax runs on every thread. The tasks go round
      // robin to prefill_slots() scratch slots, which the pool's threads take in turn; a task's
      // result does not depend on its slot or thread, so neither does the output.
      const int64_t B = std::min(t, kQueryBlock);
      const int64_t nb = (t + B - 1) / B;
      const int64_t slots = prefill_slots(t, a);
      const core::ScopedSingleThreadedBlas one_thread;
      core::parallel_for(slots, [&](int64_t w0, int64_t w1) {
        for (int64_t w = w0; w < w1; ++w) {
          float* s = scratch + w * B * L;
          for (int64_t task = w; task < H * nb; task += slots) {
            const int64_t h = task / nb, i0 = task % nb * B, i1 = std::min(t, i0 + B);
            const int64_t g = h / rep;
            int64_t klo, khi, unused;
            range(i0, &klo, &unused);
            range(i1 - 1, &unused, &khi);
            const int64_t span = khi - klo;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(i1 - i0), static_cast<int>(span),
                        static_cast<int>(hd), a.scale, q + i0 * qs + h * hd, static_cast<int>(qs),
                        k + klo * ks + g * hd, static_cast<int>(ks), 0.0f, s, static_cast<int>(span));
            for (int64_t i = i0; i < i1; ++i) {
              float* row = s + (i - i0) * span;  // row[j - klo] for keys j in [klo, khi)
              int64_t lo, hi;
              range(i, &lo, &hi);
              cap(row, lo - klo, hi - klo);
              softmax_range(row, lo - klo, hi - klo);
              std::fill(row, row + (lo - klo), 0.0f);
              std::fill(row + (hi - klo), row + span, 0.0f);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(i1 - i0), static_cast<int>(hd),
                        static_cast<int>(span), 1.0f, s, static_cast<int>(span), v + klo * ks + g * hd,
                        static_cast<int>(ks), 0.0f, out + i0 * qs + h * hd, static_cast<int>(qs));
          }
        }
      });
      return;
    }
    // Decode (few tokens): plain loops, parallel over heads.
    core::parallel_for(H, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) {
        float* s = scratch + h * L;
        const int64_t g = h / rep;
        for (int64_t i = 0; i < t; ++i) {
          const float* qi = q + i * qs + h * hd;
          int64_t lo, hi;
          range(i, &lo, &hi);
          for (int64_t j = lo; j < hi; ++j) s[j] = core::dot_f32(qi, k + j * ks + g * hd, hd) * a.scale;
          cap(s, lo, hi);
          softmax_range(s, lo, hi);
          float* oi = out + i * qs + h * hd;
          std::fill(oi, oi + hd, 0.0f);
          for (int64_t j = lo; j < hi; ++j) {
            const float* vj = v + j * ks + g * hd;
            const float p = s[j];
            for (int64_t c = 0; c < hd; ++c) oi[c] += p * vj[c];
          }
        }
      }
    });
  }
};

}  // namespace

const Ops& ops_for(Device) {
  static const CpuOps cpu;
  return cpu;
}

}  // namespace gptq::backend
