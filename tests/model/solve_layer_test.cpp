// gptq::solve_layer (the `gptq solve-layer` command): files in, packed tensors and the
// dequantized weight out, and its reported output error against a naive computation.
#include <gtest/gtest.h>

#include <random>

#include "common/test_util.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"

namespace gptq {
namespace {

TEST(SolveLayer, WritesTensorsAndReportsTheOutputError) {
  test::TempDir tmp;
  const int64_t n = 64, k = 96, tokens = 256;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(n * k), x(tokens * k), h(k * k, 0.0f);
  for (auto& v : w) v = 0.02f * nd(rng);
  for (auto& v : x) v = nd(rng);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t a = 0; a < k; ++a) {
      for (int64_t b = 0; b < k; ++b) h[a * k + b] += 2.0f * x[t * k + a] * x[t * k + b] / tokens;
    }
  }
  io::write_safetensors(tmp.path() / "w.safetensors", {{"weight", DType::kF32, {n, k}, w.data(), w.size() * 4}});
  io::write_safetensors(tmp.path() / "h.safetensors", {{"hessian", DType::kF32, {k, k}, h.data(), h.size() * 4}});
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  const auto rep = solve_layer(tmp.path() / "w.safetensors", tmp.path() / "h.safetensors", tmp.path() / "q.safetensors", q, 1);
  EXPECT_EQ(rep.n, n);
  EXPECT_EQ(rep.k, k);

  const auto out = io::TensorStore::open_files({tmp.path() / "q.safetensors"});
  EXPECT_EQ(out.get("qweight").shape, (Shape{k * 4 / 32, n}));
  EXPECT_EQ(out.get("scales").shape, (Shape{k / 32, n}));
  const auto deq = out.read_f32("dequantized", {n, k});
  // Naive tr(E H E^T) / N in double, E = W - Q (relative tolerance 1e-6: summation order only).
  double err = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t a = 0; a < k; ++a) {
      for (int64_t b = 0; b < k; ++b) {
        err += (static_cast<double>(w[i * k + a]) - deq[i * k + a]) * h[a * k + b] *
               (static_cast<double>(w[i * k + b]) - deq[i * k + b]);
      }
    }
  }
  err /= n;
  EXPECT_GT(err, 0.0);
  EXPECT_NEAR(rep.output_error, err, 1e-6 * err);

  // GPTQ's point: a smaller output error than round-to-nearest on the same layer.
  q.method = "rtn";
  const auto rtn = solve_layer(tmp.path() / "w.safetensors", tmp.path() / "h.safetensors", tmp.path() / "r.safetensors", q, 1);
  EXPECT_LT(rep.output_error, rtn.output_error);
}

}  // namespace
}  // namespace gptq
