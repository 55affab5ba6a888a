// Dense weights kept in their stored 16-bit dtype for inference (model::DenseStorage::kStored):
// a synthesized bf16 / fp16 model gives the same logits as the same weights widened to fp32 (the
// loading the quantizer uses), through prefill (m > 1, panel sgemm) and decode (m = 1, the
// 16-bit GEMV), untied and tied; weight_bytes() counts 2 bytes per weight; and the in-memory
// quantize() widens 16-bit blocks so it solves on exactly the fp32 weights.
//
// Tolerance: max |logit16 - logit32| <= 1e-4 * max |logit32| per position. Both sides multiply
// the same values (widening is exact); only the order of fp32 additions differs (the AVX2 GEMV
// vs dense_gemv), which changes a sum of k terms by a few ulps and then propagates through two
// layers; a small sgemm panel may also take another OpenBLAS kernel than the whole matrix.
// Observed worst (avx2 and scalar): 3.7e-7.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "api/causal_lm_impl.h"
#include "arch/arch.h"
#include "common/test_util.h"
#include "config/model_config.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/weights.h"
#include "pipeline/quantize_pipeline.h"
#include "synth/synth.h"

namespace gptq {
namespace {

constexpr double kLogitTol = 1e-4;

struct Loaded {
  config::ModelConfig cfg;
  std::unique_ptr<model::Decoder> dec;
  model::ModelWeights w;
};

Loaded load(const io::TensorStore& store, const std::filesystem::path& dir, model::DenseStorage how) {
  Loaded l;
  l.cfg = config::load_model_config(dir);
  l.dec = std::make_unique<model::Decoder>(l.cfg, l.cfg.arch);
  model::load_globals(store, l.cfg, l.dec->desc(), &l.w, how);
  for (int64_t i = 0; i < l.cfg.num_hidden_layers; ++i) {
    l.w.blocks.push_back(model::load_block(store, l.cfg, l.dec->desc(), static_cast<int>(i), false, how));
  }
  return l;
}

// Logits of a 12-token prefill (every row: the m > 1 path) followed by 6 decode steps (m = 1),
// concatenated [18, V].
std::vector<float> run(const Loaded& l, const model::ModelWeights& w) {
  const int64_t V = l.cfg.vocab_size, T = 12, steps = 6;
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < T + steps; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 5) % V));
  auto cache = l.dec->make_cache(T + steps);
  std::vector<float> out(static_cast<size_t>((T + steps) * V));
  l.dec->forward(w, ids.data(), T, cache, T, out.data());
  for (int64_t s = 0; s < steps; ++s) {
    l.dec->forward(w, &ids[T + s], 1, cache, 1, out.data() + (T + s) * V);
  }
  return out;
}

void expect_logits_close(const std::vector<float>& got, const std::vector<float>& want, int64_t V,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t r = 0; r < got.size() / V; ++r) {
    double scale = 0, diff = 0;
    for (int64_t j = 0; j < V; ++j) {
      scale = std::max(scale, std::abs(static_cast<double>(want[r * V + j])));
      diff = std::max(diff, std::abs(static_cast<double>(got[r * V + j]) - want[r * V + j]));
    }
    ASSERT_TRUE(std::isfinite(diff)) << what << " row " << r;
    ASSERT_GT(scale, 0.0) << what << " row " << r;
    EXPECT_LE(diff, kLogitTol * scale) << what << " row " << r;
    worst = std::max(worst, diff / scale);
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", worst);
  ::testing::Test::RecordProperty("worst_relative_diff_" + what, buf);
}

class Dense16Model : public ::testing::TestWithParam<const char*> {};

TEST_P(Dense16Model, SameLogitsAs32BitWeights) {
  test::TempDir tmp;
  const auto dir = tmp.path() / "m";
  synthesize_model({.out = dir, .shape = "tiny", .dtype = GetParam(), .seed = 3});
  const auto store = io::TensorStore::open_dir(dir);
  const Loaded l32 = load(store, dir, model::DenseStorage::kFp32);
  const Loaded l16 = load(store, dir, model::DenseStorage::kStored);
  const int64_t V = l32.cfg.vocab_size, D = l32.cfg.hidden_size;

  // What is held: 16-bit embedding, lm_head and linears, at 2 bytes per weight.
  EXPECT_TRUE(l16.w.embed.is_dense16());
  EXPECT_TRUE(l16.w.lm_head.is_dense16());
  EXPECT_FALSE(l32.w.lm_head.is_dense16());
  EXPECT_EQ(l16.w.head().weight_bytes(), static_cast<size_t>(V * D * 2));
  EXPECT_EQ(l32.w.head().weight_bytes(), static_cast<size_t>(V * D * 4));
  for (const auto& lin : l16.w.blocks[0].linears) {
    EXPECT_TRUE(lin.is_dense16());
    EXPECT_EQ(lin.weight_bytes(), static_cast<size_t>(lin.n() * lin.k() * 2));
  }
  // Embedding rows convert exactly.
  std::vector<float> r16(static_cast<size_t>(D)), r32(static_cast<size_t>(D));
  l16.w.embed.row(V - 1, r16.data());
  l32.w.embed.row(V - 1, r32.data());
  EXPECT_EQ(r16, r32);

  expect_logits_close(run(l16, l16.w), run(l32, l32.w), V, "untied");

  // Tied: the embedding becomes the logits projection.
  model::ModelWeights t16 = l16.w, t32 = l32.w;
  t16.lm_head = {};
  t32.lm_head = {};
  EXPECT_TRUE(t16.head().is_dense16());
  expect_logits_close(run(l16, t16), run(l32, t32), V, "tied");

  // CausalLM::from_pretrained keeps 16 bits, and its logits agree with the fp32 reference.
  const auto m = CausalLM::from_pretrained(dir);
  EXPECT_TRUE(api::impl(m).weights.lm_head.is_dense16());
  std::vector<int32_t> ids = {1, 50, 77, 100, 3};
  const auto got = m.logits(ids);
  auto cache = l32.dec->make_cache(5);
  std::vector<float> want(static_cast<size_t>(5 * V));
  l32.dec->forward(l32.w, ids.data(), 5, cache, 5, want.data());
  expect_logits_close(got, want, V, "from_pretrained");
}

// The in-memory quantize() on a model loaded with 16-bit weights solves on the widened weights:
// RTN (no calibration) gives the same codes as on the fp32-loaded blocks.
TEST_P(Dense16Model, InMemoryQuantizeWidensFirst) {
  test::TempDir tmp;
  const auto dir = tmp.path() / "m";
  synthesize_model({.out = dir, .shape = "tiny", .dtype = GetParam(), .seed = 4});
  QuantizeConfig q{.bits = 4, .group_size = 32};
  q.method = "rtn";
  auto m = CausalLM::from_pretrained(dir, q);
  ASSERT_TRUE(api::impl(m).weights.blocks[0].linears[0].is_dense16());
  m.quantize(std::vector<std::vector<int32_t>>{});
  for (const auto& lin : api::impl(m).weights.blocks[0].linears) EXPECT_FALSE(lin.is_dense16());

  const auto store = io::TensorStore::open_dir(dir);
  Loaded l32 = load(store, dir, model::DenseStorage::kFp32);
  pipeline::QuantizationPipeline pipe(*l32.dec, q, {});
  pipe.start([&](int32_t id, float* row) { l32.w.embed.row(id, row); });
  for (int64_t layer = 0; layer < l32.cfg.num_hidden_layers; ++layer) {
    const auto res = pipe.quantize_layer(layer, l32.w.blocks[layer]);
    const auto& got = api::impl(m).packed[layer];
    ASSERT_EQ(got.size(), res.packed.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].qweight, res.packed[i].qweight) << got[i].module;
      EXPECT_EQ(got[i].scales, res.packed[i].scales) << got[i].module;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Synth, Dense16Model, ::testing::Values("bf16", "fp16"),
                         [](const auto& i) { return std::string(i.param); });

}  // namespace
}  // namespace gptq
