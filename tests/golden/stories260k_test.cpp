// stories260k against goldens from an independent fp32 PyTorch implementation (checked against
// llama2.c's run.c): tests/data/stories260k/golden and its README.
#include <gtest/gtest.h>

#include <cmath>

#include "common/test_util.h"
#include "gptq/gptq.h"

namespace gptq {
namespace {

const CausalLM& model() {
  static CausalLM m = CausalLM::from_pretrained(test::stories_dir());
  return m;
}

class PromptGolden : public ::testing::TestWithParam<int> {};

TEST_P(PromptGolden, PromptIdsLogitsAndGreedyContinuation) {
  const auto g = test::read_json(test::stories_dir() / "golden" / ("prompt_" + std::to_string(GetParam()) + ".json"));
  const auto& m = model();
  const auto ids = m.tokenizer().encode(g["prompt"].get<std::string>(), true);
  ASSERT_EQ(ids, g["prompt_ids"].get<std::vector<int32_t>>());

  // Last-position logits: within 1e-4 absolute (the golden README's tolerance; fp32 summation
  // order changes the last digits by up to ~1e-5).
  const auto logits = m.logits(ids);
  const int64_t V = 512;
  const auto expect = g["last_logits"].get<std::vector<double>>();
  ASSERT_EQ(expect.size(), static_cast<size_t>(V));
  const float* last = logits.data() + (ids.size() - 1) * V;
  double max_diff = 0;
  for (int64_t v = 0; v < V; ++v) max_diff = std::max(max_diff, std::abs(last[v] - expect[v]));
  EXPECT_LT(max_diff, 1e-4);

  // 64 greedy tokens: exact (the smallest top-2 gap along the golden paths is 0.037).
  GenerateOptions go;
  go.n_predict = 64;
  go.temperature = 0;
  go.ignore_eos = true;
  const auto r = m.generate_ids(ids, go);
  EXPECT_EQ(r.new_ids, g["greedy_new_ids"].get<std::vector<int32_t>>());
  // The golden decodes the new ids on their own; generate() decodes them in context (after the
  // prompt), which is what a user sees printed after the prompt.
  EXPECT_EQ(m.tokenizer().decode(r.new_ids), g["greedy_new_text"].get<std::string>());
  EXPECT_EQ(m.tokenizer().decode(ids) + r.text, g["greedy_full_text"].get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(Stories260k, PromptGolden, ::testing::Values(0, 1, 2, 3));

struct PplCase {
  const char* text;
  const char* golden;
  bool bos_per_window;
  int64_t max_windows;  // -1: whole file
};

class PplGolden : public ::testing::TestWithParam<PplCase> {};

TEST_P(PplGolden, MatchesWithin1e4Relative) {
  const auto c = GetParam();
  const auto g = test::read_json(test::stories_dir() / "golden" / c.golden);
  const auto& proto = g[c.bos_per_window ? "bos_per_window" : "gptq_convention"];
  PerplexityOptions po;
  po.ctx = 256;
  po.bos_per_window = c.bos_per_window;
  po.max_windows = c.max_windows;
  const auto r = model().perplexity(test::read_file(test::data_dir() / "text" / c.text), po);
  const double expect = c.max_windows < 0 ? proto["mean_nll"].get<double>()
                                          : proto["first_64_windows_mean_nll"].get<double>();
  const int64_t windows = c.max_windows < 0 ? proto["n_windows"].get<int64_t>() : 64;
  EXPECT_EQ(r.windows, windows);
  EXPECT_EQ(r.tokens, windows * 255);
  // Mean NLL within 1e-4 relative (the tolerance; the golden README expects ~1e-5).
  EXPECT_NEAR(r.nll, expect, 1e-4 * expect);
  EXPECT_NEAR(r.ppl, std::exp(expect), 1e-4 * std::exp(expect));
  // Each window's sum too, for the first few.
  const auto per = proto["per_window_sum_nll"].get<std::vector<double>>();
  for (int w = 0; w < 8; ++w) EXPECT_NEAR(r.window_nll_sum[w], per[w], 1e-4 * per[w]) << "window " << w;
}

INSTANTIATE_TEST_SUITE_P(
    Stories260k, PplGolden,
    ::testing::Values(PplCase{"tinystories-eval.txt", "ppl_tinystories-eval_ctx256.json", false, -1},
                      PplCase{"tinystories-eval.txt", "ppl_tinystories-eval_ctx256.json", true, -1},
                      PplCase{"wikitext2-test.txt", "ppl_wikitext2-test_ctx256.json", false, 64},
                      PplCase{"wikitext2-test.txt", "ppl_wikitext2-test_ctx256.json", true, 64}));

TEST(Stories260kInfo, Describes) {
  const auto i = model().info();
  EXPECT_EQ(i.model_type, "llama");
  EXPECT_EQ(i.parameters, 260032);  // from the model's README: 260,032 parameters
  EXPECT_TRUE(i.tied_embeddings);
  EXPECT_FALSE(i.quantized);
  EXPECT_EQ(i.layers, 5);
}

}  // namespace
}  // namespace gptq
