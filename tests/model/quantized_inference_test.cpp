// Running GPTQ checkpoints: the quantized kernels against the dequantize-to-fp32 reference, and
// a checkpoint written by an independent packer (scripts/gptq_format.py), not by our writer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cpu/qlinear.h"
#include "common/test_util.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"
#include "api/causal_lm_impl.h"

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

// Perplexity of the first 192 tokens of the evaluation text fed one token at a time through the
// KV cache: every linear runs the decode (m = 1) kernels, where perplexity() above runs the
// prefill ones.
double stepwise_ppl(const std::filesystem::path& dir, bool dequantize) {
  LoadOptions lo;
  lo.dequantize = dequantize;
  auto m = CausalLM::from_pretrained(dir, lo);
  const auto& impl = api::impl(m);
  std::vector<int32_t> ids =
      m.tokenizer().encode(test::read_file(test::data_dir() / "text" / "tinystories-eval.txt"));
  ids.resize(192);
  auto cache = impl.decoder->make_cache(static_cast<int64_t>(ids.size()));
  std::vector<float> logits(static_cast<size_t>(impl.cfg.vocab_size));
  double nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    impl.decoder->forward(impl.weights, &ids[i], 1, cache, 1, logits.data());
    double mx = logits[0], sum = 0;
    for (float v : logits) mx = std::max(mx, double{v});
    for (float v : logits) sum += std::exp(v - mx);
    nll += mx + std::log(sum) - logits[static_cast<size_t>(ids[i + 1])];
  }
  return std::exp(nll / static_cast<double>(ids.size() - 1));
}

TEST_P(KernelsVsDequantized, PerplexityWithin1e3Relative) {
  test::TempDir tmp;
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 16;
  c.seqlen = 256;
  quantize_model(test::stories_dir(), tmp.path() / "q", GetParam().q, c);
  const double kern = ppl(tmp.path() / "q", false), ref = ppl(tmp.path() / "q", true);
  EXPECT_NEAR(kern, ref, 1e-3 * ref) << "kernels " << kern << " dequantized " << ref;
  const double kern1 = stepwise_ppl(tmp.path() / "q", false),
               ref1 = stepwise_ppl(tmp.path() / "q", true);
  EXPECT_NEAR(kern1, ref1, 1e-3 * ref1) << "decode kernels " << kern1 << " dequantized " << ref1;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e / %.2e", std::fabs(kern - ref) / ref, std::fabs(kern1 - ref1) / ref1);
  ::testing::Test::RecordProperty("rel_diff_prefill_decode", buf);
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

// Packs stories260k with the independent numpy implementation (scripts/gptq_format.py pack
// ARGS) into `out`, loads it with the kernels and dequantized, and checks that every quantized
// linear reproduces exactly the weights the packer says it encodes (reference.safetensors).
// Returns the number of linears checked, -1 when python3 with numpy is missing.
int check_foreign(const std::string& args, const std::filesystem::path& out) {
  const std::string py = GPTQ_PYTHON3;
  if (py.empty()) return -1;
  const std::string cmd = py + " " + GPTQ_FORMAT_PY + " pack --from " + test::stories_dir().string() + " --out " +
                          out.string() + " " + args + " >/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
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
    const auto& desc = api::impl(a).decoder->desc();
    for (const auto& ld : desc.linears) {
      if (ld.name != suffix) continue;
      const auto& la = api::impl(a).weights.blocks[layer].at(ld.role);
      const auto& lb = api::impl(b).weights.blocks[layer].at(ld.role);
      // Kernels need N % 32 == 0; other quantized linears are loaded dense (dequantized).
      EXPECT_EQ(la.is_quantized(), la.n() % 32 == 0) << name;
      const auto wa = la.to_fp32();
      const auto& wb = lb.weight();
      EXPECT_EQ(wa.size(), expect.size());
      size_t bad = 0;
      for (size_t i = 0; i < expect.size() && i < wa.size(); ++i) {
        // Exact: both are fp16 scale times a small integer, computed in fp32.
        bad += wa[i] != expect[i] || wb[i] != expect[i];
      }
      EXPECT_EQ(bad, 0u) << name;
      ++checked;
    }
  }
  return checked;
}

// 3-bit, act-order g_idx, asymmetric, gptq_v2.
TEST(ForeignCheckpoint, LoadsToTheWeightsItEncodes) {
  test::TempDir tmp;
  const auto out = tmp.path() / "foreign";
  const int checked = check_foreign("--bits 3 --group-size 32 --desc-act --asym --format gptq_v2", out);
  if (checked < 0) GTEST_SKIP() << "no python3 with numpy found at configure time";
  EXPECT_EQ(checked, 20);
  const auto info = CausalLM::from_pretrained(out).info();
  EXPECT_EQ(info.bits, 3);
  EXPECT_EQ(info.checkpoint_format, "gptq_v2");
  EXPECT_TRUE(info.desc_act);
}

// Asymmetric v1 packed as GPTQModel saves it, and a mixed-precision folder with GPTQModel's
// dynamic rules (each linear its own bits, group size and symmetry, one left out).
TEST(ForeignCheckpoint, AsymmetricV1AndDynamicRules) {
  test::TempDir tmp;
  const int v1 = check_foreign("--bits 4 --group-size 32 --asym --format gptq", tmp.path() / "v1");
  if (v1 < 0) GTEST_SKIP() << "no python3 with numpy found at configure time";
  EXPECT_EQ(v1, 20);
  const std::string rules =
      R"('{"-:model\\.layers\\.0\\.self_attn\\.q_proj$": {}, "+:.*self_attn\\.[qo]_proj": {"bits": 8, "group_size": 64},)"
      R"( ".*self_attn\\.v_proj": {"bits": 2, "sym": true, "desc_act": true}, "+:.*k_proj": {"bits": 3, "group_size": -1}}')";
  EXPECT_EQ(check_foreign("--bits 4 --group-size 32 --asym --format gptq --dynamic " + rules, tmp.path() / "mixed"), 19);
  // N = 172 (gate/up), as GPTQModel packs it: ceil(N*b/32) qzeros words per row; such linears
  // run dense here.
  EXPECT_EQ(check_foreign("--bits 4 --group-size 32 --asym --format gptq --odd-n", tmp.path() / "oddn"), 30);
  EXPECT_EQ(check_foreign("--bits 8 --group-size -1 --format gptq --odd-n", tmp.path() / "oddn8"), 30);
  // And the kernels agree with the dequantized reference on the whole model.
  EXPECT_NEAR(ppl(tmp.path() / "mixed", false), ppl(tmp.path() / "mixed", true), 1e-3 * ppl(tmp.path() / "mixed", true));
}

// Every linear of stories260k quantized as GPTQModel 7.7 quantizes it: gate/up N = 172
// (ceil(N*b/32) qzeros words) and down_proj K = 172 (ceil(K*b/32) qweight rows, the fields past
// K of the last word 0; 6 groups of 32, the last one of 12 inputs). Packed by the numpy packer
// written from GPTQModel's pack_original, not by our writer; read exactly, and down_proj runs on
// the kernels (the last group padded), gate/up dense.
TEST(ForeignCheckpoint, GptqModelShapesNotMultiplesOf32) {
  test::TempDir tmp;
  const int asym = check_foreign("--bits 4 --group-size 32 --asym --format gptq --odd-n --odd-k", tmp.path() / "a");
  if (asym < 0) GTEST_SKIP() << "no python3 with numpy found at configure time";
  EXPECT_EQ(asym, 35);
  EXPECT_EQ(check_foreign("--bits 4 --group-size 32 --format gptq --odd-n --odd-k", tmp.path() / "s"), 35);
  EXPECT_EQ(check_foreign("--bits 2 --group-size 64 --asym --format gptq_v2 --odd-n --odd-k", tmp.path() / "b2"), 35);
  EXPECT_EQ(check_foreign("--bits 8 --group-size -1 --desc-act --format gptq --odd-n --odd-k", tmp.path() / "b8"), 35);
  const auto a = CausalLM::from_pretrained(tmp.path() / "a");
  const auto& down = api::impl(a).weights.blocks[0].at(arch::Role::kDown);
  ASSERT_TRUE(down.is_quantized());
  EXPECT_EQ(down.k(), 172);
  EXPECT_TRUE(dynamic_cast<const backend::QLinear&>(down.impl()).permuted());
  const double kernels = ppl(tmp.path() / "a", false), dense = ppl(tmp.path() / "a", true);
  EXPECT_NEAR(kernels, dense, 1e-3 * dense);
}

// --desc-act --static-groups: the g_idx is trivial, so the folder says desc_act false (meta keeps
// the setting); the independent checker and our loader read exactly the weights quantized.
TEST(StaticGroups, DeclaredWithoutActOrderAndReadExactly) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.group_size = 32;
  q.desc_act = true;
  q.static_groups = true;
  q.sym = false;
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 8;
  c.seqlen = 128;
  QuantizeRunOptions ro;
  ro.dequantized_out = tmp.path() / "deq.safetensors";
  quantize_model(test::stories_dir(), tmp.path() / "q", q, c, ro);
  const auto cfg = test::read_json(tmp.path() / "q" / "config.json").at("quantization_config");
  EXPECT_EQ(cfg.at("desc_act"), false);
  EXPECT_EQ(cfg.at("static_groups"), true);
  EXPECT_EQ(cfg.at("meta").at("desc_act"), true);
  EXPECT_EQ(cfg.at("checkpoint_format"), "gptq");
  const std::string py = GPTQ_PYTHON3;
  if (!py.empty()) {
    const std::string cmd = py + " " + GPTQ_FORMAT_PY + " verify " + (tmp.path() / "q").string() + " --reference " +
                            ro.dequantized_out.string() + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  const auto ref = io::TensorStore::open_files({ro.dequantized_out});
  LoadOptions deq;
  deq.dequantize = true;
  const auto m = CausalLM::from_pretrained(tmp.path() / "q", deq);
  const auto& desc = api::impl(m).decoder->desc();
  int checked = 0;
  for (const auto& name : ref.names()) {
    const auto rest = name.substr(std::string("model.layers.").size());
    const int layer = std::stoi(rest);
    for (const auto& ld : desc.linears) {
      if (rest.substr(rest.find('.') + 1) != ld.name) continue;
      EXPECT_EQ(api::impl(m).weights.blocks[layer].at(ld.role).to_fp32(), ref.read_f32(name)) << name;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace gptq
