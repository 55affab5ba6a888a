// Running GPTQ checkpoints: the quantized kernels against the dequantize-to-fp32 reference, and
// a checkpoint written by an independent packer (scripts/gptq_format.py), not by our writer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "backend/cpu/qlinear.h"
#include "common/test_util.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"
#include "model/causal_lm_impl.h"

namespace gptq {
namespace {

double ppl(const std::filesystem::path& dir, bool dequantize) {
  LoadOptions lo;
  lo.dequantize = dequantize;
  auto m = CausalLM::from_pretrained(dir, lo);
  PerplexityOptions po;
  po.ctx = 256;
  po.max_windows = 32;
  return m.perplexity(test::read_file(test::data_dir() / "text" / "tinystories-eval.txt"), po).ppl;
}

struct Case {
  const char* name;
  QuantizeConfig q;
};

class KernelsVsDequantized : public ::testing::TestWithParam<Case> {};

TEST_P(KernelsVsDequantized, PerplexityWithin1e3Relative) {
  test::TempDir tmp;
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 16;
  c.seqlen = 256;
  quantize_model(test::stories_dir(), tmp.path() / "q", GetParam().q, c);
  const double kern = ppl(tmp.path() / "q", false), ref = ppl(tmp.path() / "q", true);
  EXPECT_NEAR(kern, ref, 1e-3 * ref) << "kernels " << kern << " dequantized " << ref;
}

QuantizeConfig qc(int bits, int group, bool act, bool sym) {
  QuantizeConfig q;
  q.bits = bits;
  q.group_size = group;
  q.desc_act = act;
  q.sym = sym;
  return q;
}

INSTANTIATE_TEST_SUITE_P(Stories260k, KernelsVsDequantized,
                         ::testing::Values(Case{"b4g32", qc(4, 32, false, true)}, Case{"b4g128act", qc(4, 128, true, true)},
                                           Case{"b3g32actasym", qc(3, 32, true, false)},
                                           Case{"b2g64", qc(2, 64, false, true)},
                                           Case{"b8rowasym", qc(8, -1, false, false)}),
                         [](const auto& i) { return std::string(i.param.name); });

// A checkpoint packed by the independent numpy implementation: 3-bit, act-order g_idx,
// asymmetric, gptq_v2. Both the kernels and the dequantized path must reproduce the weights it
// says it encodes (reference.safetensors).
TEST(ForeignCheckpoint, LoadsToTheWeightsItEncodes) {
  const std::string py = GPTQ_PYTHON3;
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy found at configure time";
  test::TempDir tmp;
  const auto out = tmp.path() / "foreign";
  const std::string cmd = py + " " + GPTQ_FORMAT_PY + " pack --from " +
                          test::stories_dir().string() + " --out " + out.string() +
                          " --bits 3 --group-size 32 --desc-act --asym --format gptq_v2";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto ref = io::TensorStore::open_files({out / "reference.safetensors"});
  LoadOptions deq;
  deq.dequantize = true;
  const auto a = CausalLM::from_pretrained(out);       // kernels
  const auto b = CausalLM::from_pretrained(out, deq);  // dequantized fp32
  int checked = 0;
  for (const auto& name : ref.names()) {
    const auto expect = ref.read_f32(name);
    // "model.layers.<l>.<suffix>"
    const auto rest = name.substr(std::string("model.layers.").size());
    const int layer = std::stoi(rest);
    const std::string suffix = rest.substr(rest.find('.') + 1);
    const auto& desc = a.impl().decoder->desc();
    for (const auto& ld : desc.linears) {
      if (ld.name != suffix) continue;
      const auto& la = a.impl().weights.blocks[layer].at(ld.role);
      const auto& lb = b.impl().weights.blocks[layer].at(ld.role);
      ASSERT_TRUE(la.is_quantized()) << name;
      const auto wa = la.qlinear()->dequantize();
      const auto& wb = lb.weight();
      ASSERT_EQ(wa.size(), expect.size());
      for (size_t i = 0; i < expect.size(); ++i) {
        // Exact: both are fp16 scale times a small integer, computed in fp32.
        ASSERT_EQ(wa[i], expect[i]) << name << " [" << i << "]";
        ASSERT_EQ(wb[i], expect[i]) << name << " [" << i << "]";
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 20);
  const auto info = a.info();
  EXPECT_EQ(info.bits, 3);
  EXPECT_EQ(info.checkpoint_format, "gptq_v2");
  EXPECT_TRUE(info.desc_act);
}

}  // namespace
}  // namespace gptq
