// YaRN and LongRoPE frequency tables against transformers': config.json dicts of real sizes
// (tests/data/families/rope_tables.json, written by scripts/gen_family_goldens.py from
// transformers' ROPE_INIT_FUNCTIONS), parsed by config and turned into tables by the backend.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/ops.h"
#include "backend/rope.h"
#include "common/test_util.h"
#include "config/model_config.h"

namespace gptq {
namespace {

nlohmann::json tables() { return test::read_json(test::data_dir() / "families" / "rope_tables.json"); }

void expect_table(const std::vector<float>& got, const nlohmann::json& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = want[i].get<double>();
    // transformers computes in fp32, we in double rounded once: a few fp32 ulps apart.
    EXPECT_NEAR(got[i], w, 2e-6 * std::abs(w)) << what << " [" << i << "]";
  }
}

TEST(RopeScaling, TablesMatchTransformers) {
  const auto t = tables();
  ASSERT_GE(t["cases"].size(), 8u);
  for (const auto& [name, c] : t["cases"].items()) {
    SCOPED_TRACE(name);
    const config::ModelConfig cfg = config::parse_model_config(c["config"].dump(), name + "/config.json");
    const backend::RopeFreqs f = backend::rope_freqs(cfg.rope_theta, cfg.rotary_dim, cfg.rope_scaling);
    expect_table(f.inv_freq, c["inv_freq"], "inv_freq");
    EXPECT_NEAR(f.attention_factor, c["attention_scaling"].get<double>(), 1e-6);
    if (c.contains("long_inv_freq")) {
      expect_table(f.inv_freq_long, c["long_inv_freq"], "long_inv_freq");
      EXPECT_EQ(f.long_after, c["long_after"].get<int64_t>());
    } else {
      EXPECT_TRUE(f.inv_freq_long.empty());
    }
  }
}

// Ops::rope with a LongRoPE table: a call that ends at long_after keeps the short frequencies,
// one position further switches every position of the call to the long ones; both scaled by the
// attention factor. Expected values straight from the definition, in double.
TEST(RopeScaling, OpSwitchesLongropePerCallAndScales) {
  const int64_t hd = 8, rot = 8, heads = 2;
  backend::RopeFreqs f;
  f.inv_freq = {1.0f, 0.5f, 0.25f, 0.125f};
  f.inv_freq_long = {0.5f, 0.2f, 0.05f, 0.01f};
  f.long_after = 6;
  f.attention_factor = 1.3f;
  const backend::Ops& ops = backend::ops_for(backend::Device::kCpu);
  for (int64_t t : {6, 7}) {
    std::vector<float> x(static_cast<size_t>(t * heads * hd));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i) + 1.0);
    std::vector<float> y = x;
    ops.rope(y.data(), t, heads, hd, rot, f, 0, backend::Rope::kRotateHalf);
    const auto& inv = t > f.long_after ? f.inv_freq_long : f.inv_freq;
    for (int64_t p = 0; p < t; ++p) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t b = (p * heads + h) * hd;
        for (int64_t j = 0; j < rot / 2; ++j) {
          const double a = static_cast<double>(p) * inv[j], c = std::cos(a) * 1.3, s = std::sin(a) * 1.3;
          EXPECT_NEAR(y[b + j], x[b + j] * c - x[b + j + 4] * s, 1e-5) << "t " << t << " p " << p;
          EXPECT_NEAR(y[b + j + 4], x[b + j + 4] * c + x[b + j] * s, 1e-5) << "t " << t << " p " << p;
        }
      }
    }
  }
}

}  // namespace
}  // namespace gptq
