// The executor's ops (backend/ops.h) on every ISA against naive double-precision formulas written
// here: norms (RMSNorm with and without Gemma's +1 offset, per-head q/k norm, LayerNorm with and
// without bias), residual add, scaling, activations and gated ones, softcapping, RoPE (rotate-half,
// interleaved, partial), and attention (causal, grouped-query, sliding window, softcap; decode and
// prefill paths).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/isa.h"
#include "backend/cpu/ops_kernels.h"
#include "core/parallel.h"
#include "backend/ops.h"

namespace gptq::backend {
namespace {

class IsaScope {
 public:
  explicit IsaScope(Isa isa) : saved_(active_isa()) { set_isa_for_testing(isa); }
  ~IsaScope() { set_isa_for_testing(saved_); }

 private:
  Isa saved_;
};

std::vector<float> rnd(int64_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i]));
    worst = std::max(worst, e);
    if (!(e <= tol)) ++bad;
  }
  EXPECT_EQ(bad, 0) << what << ": worst relative error " << worst;
}

class OpsTest : public ::testing::TestWithParam<std::tuple<Isa, int64_t>> {
 protected:
  void SetUp() override {
    if (!cpu_supports(std::get<0>(GetParam()))) GTEST_SKIP() << "CPU lacks " << isa_name(std::get<0>(GetParam()));
  }
  const Ops& ops = ops_for(Device::kCpu);
  int64_t n() const { return std::get<1>(GetParam()); }
};

TEST_P(OpsTest, RmsNormWithAndWithoutOffset) {
  IsaScope scope(std::get<0>(GetParam()));
  const int64_t rows = 3, d = n();
  const auto x = rnd(rows * d, 1), w = rnd(d, 2);
  for (float offset : {0.0f, 1.0f}) {
    std::vector<float> y(x.size());
    ops.rms_norm(x.data(), w.data(), offset, rows, d, 1e-6f, y.data());
    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[r * d + j]) * x[r * d + j];
      const double inv = 1.0 / std::sqrt(ss / d + 1e-6);
      for (int64_t j = 0; j < d; ++j) ref[r * d + j] = x[r * d + j] * inv * (offset + w[j]);
    }
    expect_close(y, ref, 1e-5, "rms_norm offset " + std::to_string(offset));
    // In place (the per-head q/k norm runs on the projection's output).
    std::vector<float> z = x;
    ops.rms_norm(z.data(), w.data(), offset, rows, d, 1e-6f, z.data());
    EXPECT_EQ(z, y);
  }
}

TEST_P(OpsTest, LayerNormWithAndWithoutBias) {
  IsaScope scope(std::get<0>(GetParam()));
  const int64_t rows = 2, d = n();
  const auto x = rnd(rows * d, 3, 1.0f, 3.0f), w = rnd(d, 4), b = rnd(d, 5);  // a mean far from 0
  for (bool bias : {false, true}) {
    std::vector<float> y(x.size());
    ops.layer_norm(x.data(), w.data(), bias ? b.data() : nullptr, rows, d, 1e-5f, y.data());
    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      double m = 0, v = 0;
      for (int64_t j = 0; j < d; ++j) m += x[r * d + j];
      m /= d;
      for (int64_t j = 0; j < d; ++j) v += (x[r * d + j] - m) * (x[r * d + j] - m);
      v /= d;
      for (int64_t j = 0; j < d; ++j) ref[r * d + j] = (x[r * d + j] - m) / std::sqrt(v + 1e-5) * w[j] + (bias ? b[j] : 0);
    }
    expect_close(y, ref, 1e-5, bias ? "layer_norm bias" : "layer_norm");
  }
}

TEST_P(OpsTest, AddScaleActivationsSoftcap) {
  IsaScope scope(std::get<0>(GetParam()));
  const int64_t m = n();
  const auto x = rnd(m, 6, -6, 6), y = rnd(m, 7);
  std::vector<float> a = x;
  ops.add(a.data(), y.data(), m);
  std::vector<double> ra(x.size()), rs(x.size());
  for (int64_t i = 0; i < m; ++i) ra[i] = static_cast<double>(x[i]) + y[i];
  expect_close(a, ra, 1e-7, "add");
  a = x;
  ops.scale(a.data(), m, 45.25f);
  for (int64_t i = 0; i < m; ++i) rs[i] = x[i] * 45.25;
  expect_close(a, rs, 1e-7, "scale");
  auto ref_act = [](Act k, double v) {
    switch (k) {
      case Act::kSilu: return v / (1 + std::exp(-v));
      case Act::kGelu: return 0.5 * v * (1 + std::erf(v / std::numbers::sqrt2));
      case Act::kGeluTanh: return 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
      case Act::kRelu: return v > 0 ? v : 0.0;
    }
    return v;
  };
  for (Act k : {Act::kSilu, Act::kGelu, Act::kGeluTanh, Act::kRelu}) {
    std::vector<float> g = x;
    ops.activation(k, g.data(), m);
    std::vector<double> r1(x.size()), r2(x.size());
    for (int64_t i = 0; i < m; ++i) r1[i] = ref_act(k, x[i]);
    expect_close(g, r1, 1e-5, "activation " + std::to_string(static_cast<int>(k)));
    g = x;
    ops.gated(k, g.data(), y.data(), m);
    for (int64_t i = 0; i < m; ++i) r2[i] = ref_act(k, x[i]) * y[i];
    expect_close(g, r2, 1e-5, "gated " + std::to_string(static_cast<int>(k)));
  }
  a = x;
  ops.softcap(a.data(), m, 3.0f);
  for (int64_t i = 0; i < m; ++i) rs[i] = 3.0 * std::tanh(x[i] / 3.0);
  expect_close(a, rs, 1e-6, "softcap");
}

TEST_P(OpsTest, RopeStylesAndPartialRotation) {
  IsaScope scope(std::get<0>(GetParam()));
  const int64_t hd = n() * 2, heads = 3, t = 4, pos0 = 5;
  for (int64_t rot : {hd, hd / 2}) {
    if (rot % 2) continue;
    backend::RopeFreqs freqs;
    freqs.inv_freq.resize(static_cast<size_t>(rot / 2));
    freqs.attention_factor = 1.25f;  // cos and sin scaled (yarn, longrope)
    std::vector<float>& inv = freqs.inv_freq;
    for (int64_t j = 0; j < rot / 2; ++j) inv[j] = static_cast<float>(std::pow(10000.0, -2.0 * j / rot));
    for (Rope style : {Rope::kRotateHalf, Rope::kInterleaved}) {
      const auto x = rnd(t * heads * hd, 8);
      std::vector<float> y = x;
      ops.rope(y.data(), t, heads, hd, rot, freqs, pos0, style);
      std::vector<double> ref(x.begin(), x.end());
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t base = (i * heads + h) * hd;
          for (int64_t j = 0; j < rot / 2; ++j) {
            const double ang = static_cast<double>(pos0 + i) * inv[j];
            const int64_t lo = style == Rope::kInterleaved ? 2 * j : j;
            const int64_t hi = style == Rope::kInterleaved ? 2 * j + 1 : j + rot / 2;
            const double c = 1.25 * std::cos(ang), s = 1.25 * std::sin(ang);
            ref[base + lo] = x[base + lo] * c - x[base + hi] * s;
            ref[base + hi] = x[base + hi] * c + x[base + lo] * s;
          }
        }
      }
      expect_close(y, ref, 2e-5, "rope rot " + std::to_string(rot));
    }
  }
}

// Attention in double, straight from the definition.
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                    int64_t t, int64_t pos0, const AttentionShape& a) {
  const int64_t H = a.heads, KV = a.kv_heads, hd = a.head_dim;
  std::vector<double> out(static_cast<size_t>(t * H * hd), 0.0);
  for (int64_t i = 0; i < t; ++i) {
    const int64_t p = pos0 + i;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / KV);
      std::vector<double> s;
      std::vector<int64_t> js;
      for (int64_t j = 0; j <= p; ++j) {
        if (a.window > 0 && p - j >= a.window) continue;
        double d = 0;
        for (int64_t c = 0; c < hd; ++c) d += static_cast<double>(q[(i * H + h) * hd + c]) * k[(j * KV + g) * hd + c];
        d *= a.scale;
        if (a.softcap > 0) d = a.softcap * std::tanh(d / a.softcap);
        s.push_back(d);
        js.push_back(j);
      }
      double mx = -INFINITY, sum = 0;
      for (double d : s) mx = std::max(mx, d);
      for (double& d : s) sum += (d = std::exp(d - mx));
      for (size_t u = 0; u < s.size(); ++u) {
        for (int64_t c = 0; c < hd; ++c) out[(i * H + h) * hd + c] += s[u] / sum * v[(js[u] * KV + g) * hd + c];
      }
    }
  }
  return out;
}

TEST_P(OpsTest, AttentionCausalGqaWindowSoftcap) {
  IsaScope scope(std::get<0>(GetParam()));
  const int64_t hd = std::max<int64_t>(n(), 4);
  // Decode loops below 8 tokens, BLAS from 8; 150 queries are three blocks of the prefill
  // tasks (64, 64, 22), a window of 70 starts inside a block.
  for (int64_t t : {1, 3, 12, 150}) {
    for (int64_t window : {0, 5, 70}) {
      if (t == 150 && n() > 33) continue;  // the double reference is O(t^2 hd)
      for (float cap : {0.0f, 2.0f}) {
        AttentionShape a{.heads = 4, .kv_heads = 2, .head_dim = hd, .scale = 1.0f / std::sqrt(static_cast<float>(hd)),
                         .window = window, .softcap = cap};
        const int64_t pos0 = 6, L = pos0 + t;
        const auto q = rnd(t * 4 * hd, 9), k = rnd(L * 2 * hd, 10), v = rnd(L * 2 * hd, 11);
        std::vector<float> out(static_cast<size_t>(t * 4 * hd));
        ops.attention(q.data(), k.data(), v.data(), t, pos0, a, out.data(), nullptr);
        expect_close(out, naive_attention(q, k, v, t, pos0, a), 1e-5,
                     "attention t " + std::to_string(t) + " window " + std::to_string(window) + " cap " +
                         std::to_string(cap));
        // With caller-provided scratch (the executor's arena), filled with garbage first: the
        // same bits.
        std::vector<float> scratch(static_cast<size_t>(ops.attention_scratch(t, pos0, a)), 1e30f);
        std::vector<float> out2(out.size());
        ops.attention(q.data(), k.data(), v.data(), t, pos0, a, out2.data(), scratch.data());
        EXPECT_EQ(out2, out);
        // On one thread and on three: the same bits (each task is computed whole on one thread).
        for (int threads : {1, 3}) {
          const int saved = core::num_threads();
          core::set_num_threads(threads);
          std::vector<float> out3(out.size());
          ops.attention(q.data(), k.data(), v.data(), t, pos0, a, out3.data(), nullptr);
          core::set_num_threads(saved);
          EXPECT_EQ(out3, out) << threads << " threads, t " << t;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, OpsTest,
                         ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2),
                                            ::testing::Values<int64_t>(1, 7, 8, 33, 64, 130)),
                         [](const auto& info) {
                           return std::string(isa_name(std::get<0>(info.param))) + "_n" +
                                  std::to_string(std::get<1>(info.param));
                         });

// The AVX2 softmax (polynomial exp, float lanes) against the scalar one (std::exp): within a
// few ulp, on rows of every length mod 8, scores from -100 to 20 (so exp sees -120 to 0 and
// underflows below -87), and only inside [lo, hi).
TEST(Ops, Avx2SoftmaxMatchesScalar) {
  if (!cpu_supports(Isa::kAvx2)) GTEST_SKIP() << "CPU lacks avx2";
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> ud(-100.0f, 20.0f);
  for (int64_t n : {1, 2, 7, 8, 9, 15, 16, 17, 100, 2048}) {
    std::vector<float> row(static_cast<size_t>(n + 6));
    for (auto& v : row) v = ud(gen);
    std::vector<float> a = row, b = row;
    detail::softmax_scalar(a.data(), 3, n + 3);
    detail::softmax_avx2(b.data(), 3, n + 3);
    for (int64_t j = 0; j < n + 6; ++j) {
      if (j < 3 || j >= n + 3) {
        EXPECT_EQ(b[j], row[j]) << "outside the range, n " << n;
      } else {
        EXPECT_NEAR(b[j], a[j], 2e-6f * a[j] + 1e-37f) << "n " << n << " j " << j;
      }
    }
  }
}

TEST(Ops, Avx2MatchesScalarClosely) {
  if (!cpu_supports(Isa::kAvx2)) GTEST_SKIP() << "CPU lacks avx2";
  const Ops& ops = ops_for(Device::kCpu);
  const int64_t d = 2048;
  const auto x = rnd(2 * d, 12), w = rnd(d, 13);
  std::vector<float> ys(x.size()), yv(x.size());
  {
    IsaScope s(Isa::kScalar);
    ops.rms_norm(x.data(), w.data(), 0.0f, 2, d, 1e-5f, ys.data());
  }
  {
    IsaScope s(Isa::kAvx2);
    ops.rms_norm(x.data(), w.data(), 0.0f, 2, d, 1e-5f, yv.data());
  }
  // Only the order of the double sum of squares differs: at most an ulp or two of fp32.
  for (size_t i = 0; i < ys.size(); ++i) EXPECT_NEAR(ys[i], yv[i], 4e-7 * std::max(1.0f, std::abs(ys[i]))) << i;
  EXPECT_EQ(ops.device(), Device::kCpu);
}

}  // namespace
}  // namespace gptq::backend
