// SmolLM2-135M-Instruct (a transformers 5 folder: rope_parameters, theta 1e5) against the
// numbers transformers computed for it (REFERENCE.json, written by the model fetch script).
// Skipped unless the folder exists: $GPTQ_SMOLLM2_DIR, else ~/.cache/gptq-models/smollm2-135m-instruct.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "common/test_util.h"
#include "gptq/gptq.h"

namespace gptq {
namespace {

std::filesystem::path smollm2_dir() {
  if (const char* e = std::getenv("GPTQ_SMOLLM2_DIR"); e && *e) return e;
  if (const char* h = std::getenv("HOME"); h && *h) return std::filesystem::path(h) / ".cache/gptq-models/smollm2-135m-instruct";
  return {};
}

class SmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = smollm2_dir();
    if (dir_.empty() || !std::filesystem::exists(dir_ / "REFERENCE.json")) {
      GTEST_SKIP() << "no SmolLM2 folder (set GPTQ_SMOLLM2_DIR)";
    }
    ref_ = test::read_json(dir_ / "REFERENCE.json");
  }
  std::filesystem::path dir_;
  nlohmann::json ref_;
};

// 40 windows of 512 tokens of wikitext2-test, no BOS, every token but each window's first.
TEST_F(SmolLM2, PerplexityEqualsTransformers) {
  const auto m = CausalLM::from_pretrained(dir_);
  PerplexityOptions po;
  po.ctx = ref_["perplexity"]["ctx"].get<int64_t>();
  po.max_windows = ref_["perplexity"]["windows"].get<int64_t>();
  const auto r = m.perplexity(test::read_file(test::data_dir() / "text" / "wikitext2-test.txt"), po);
  const double want = ref_["perplexity"]["ppl"].get<double>();
  EXPECT_EQ(r.tokens, ref_["perplexity"]["scored_tokens"].get<int64_t>());
  EXPECT_NEAR(r.ppl, want, 1e-4 * want) << "ours " << r.ppl << " transformers " << want;
}

// Greedy continuation: the same tokens up to the first step where transformers' top-2 logits are
// within 0.1 (a near-tie fp32 rounding may flip).
TEST_F(SmolLM2, GreedyTokensEqualTransformers) {
  const auto m = CausalLM::from_pretrained(dir_);
  const auto& g = ref_["generation"]["plain"];
  const auto want = g["new_ids"].get<std::vector<int32_t>>();
  const auto margins = g["top2_logit_margins"].get<std::vector<double>>();
  GenerateOptions o;
  o.temperature = 0;
  o.n_predict = static_cast<int>(want.size());
  const auto r = m.generate_ids(g["prompt_ids"].get<std::vector<int32_t>>(), o);
  size_t n = 0;
  while (n < want.size() && margins[n] >= 0.1) ++n;  // steps before the first near-tie
  ASSERT_GE(r.new_ids.size(), n);
  EXPECT_GT(n, 12u);  // past where a wrong rope_theta diverged
  for (size_t i = 0; i <= n && i < want.size() && i < r.new_ids.size(); ++i) {
    EXPECT_EQ(r.new_ids[i], want[i]) << "token " << i << " (margin " << margins[i] << ")";
  }
}

// GPTQ beats round-to-nearest at 4 bits, g64 (the weights sit on a 4-bit asymmetric g32 grid,
// so symmetric g64 is where the two differ). With act-order: on this model plain GPTQ at 4-bit
// g64 is within noise of RTN (wikitext2, 16 windows of calibration: 40.93 vs 40.61; the GPTQ
// paper's code gives 42.18), while act-order is clearly below it (36.61).
TEST_F(SmolLM2, Gptq4BitG64BelowRtn) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.group_size = 64;
  q.desc_act = true;
  // Calibration from wikitext2 past the evaluated part (the first 8 windows of 512 tokens are
  // about 16 k characters): in-domain, disjoint. TinyStories calibration overfits GPTQ to
  // another domain (plain: 45.1, act-order: 50.3, RTN 42.5 here).
  const std::string all = test::read_file(test::data_dir() / "text" / "wikitext2-test.txt");
  ASSERT_GT(all.size(), 400000u);
  {
    std::ofstream f(tmp.path() / "calib.txt", std::ios::binary);
    f << all.substr(100000);
  }
  CalibrationOptions c;
  c.file = tmp.path() / "calib.txt";
  c.nsamples = 16;
  c.seqlen = 512;
  quantize_model(dir_, tmp.path() / "gptq", q, c);
  q.method = "rtn";
  quantize_model(dir_, tmp.path() / "rtn", q, c);
  PerplexityOptions po;
  po.ctx = 512;
  po.max_windows = 8;
  const std::string text = test::read_file(test::data_dir() / "text" / "wikitext2-test.txt");
  const double gptq = CausalLM::from_pretrained(tmp.path() / "gptq").perplexity(text, po).ppl;
  const double rtn = CausalLM::from_pretrained(tmp.path() / "rtn").perplexity(text, po).ppl;
  const double fp = CausalLM::from_pretrained(dir_).perplexity(text, po).ppl;
  EXPECT_LT(gptq, rtn) << "gptq " << gptq << " rtn " << rtn << " fp32 " << fp;
  EXPECT_GT(gptq, fp * 0.99);
}

}  // namespace
}  // namespace gptq
