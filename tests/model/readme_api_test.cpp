// The C++ API example of README.md, on the bundled model, so the README stays true.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "gptq/gptq.h"

namespace gptq {
namespace {

TEST(ReadmeApi, QuantizeSaveLoadGenerate) {
  test::TempDir tmp;
  const std::string text = test::read_file(test::data_dir() / "text" / "tinystories-calib.txt");
  std::vector<std::string> examples;
  for (int i = 0; i < 8; ++i) examples.push_back(text.substr(i * 10000, 1500));

  gptq::QuantizeConfig cfg{.bits = 4, .group_size = 128};
  auto model = gptq::CausalLM::from_pretrained(test::stories_dir(), cfg);
  model.quantize(examples);
  model.save_quantized(tmp.path() / "stories-gptq");

  auto q = gptq::CausalLM::from_pretrained(tmp.path() / "stories-gptq");
  auto r = q.generate("Once upon a time", {.n_predict = 64, .temperature = 0});
  EXPECT_EQ(r.new_ids.size(), 64u);
  double ppl = q.perplexity(text.substr(0, 20000), {.ctx = 256}).ppl;
  EXPECT_GT(ppl, 1.0);
  EXPECT_LT(ppl, 20.0);
  EXPECT_TRUE(q.info().quantized);
}

}  // namespace
}  // namespace gptq
