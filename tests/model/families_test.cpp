// Every supported family against transformers: tiny random-weight models that transformers itself
// wrote (tests/data/families/<family>, made by scripts/gen_family_goldens.py with torch and
// transformers; versions in each golden.json), and transformers' fp32 outputs for them.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>

#include "common/test_util.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"

namespace gptq {
namespace {

std::filesystem::path family_dir(const std::string& f) { return test::data_dir() / "families" / f; }

// Folders <family>_<variant> hold a family with a feature of its config (RoPE scaling).
std::string model_type_of(const std::string& folder) {
  static const std::map<std::string, std::string> variants = {{"phi3_longrope", "phi3"}, {"qwen2_yarn", "qwen2"},
                                                                     {"stablelm_parallel", "stablelm"}};
  auto it = variants.find(folder);
  return it == variants.end() ? folder : it->second;
}

// `rows` calibration sequences of 48 tokens, BOS then random ids of the families' 512 vocabulary.
std::vector<std::vector<int32_t>> random_calib(size_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(3, 511);
  std::vector<std::vector<int32_t>> calib(rows, std::vector<int32_t>(48));
  for (auto& s : calib) {
    s[0] = 1;
    for (size_t i = 1; i < s.size(); ++i) s[i] = tok(rng);
  }
  return calib;
}

class Family : public ::testing::TestWithParam<std::string> {
 protected:
  nlohmann::json golden() const { return test::read_json(family_dir(GetParam()) / "golden.json"); }
};

TEST_P(Family, LastLogitsMatchTransformers) {
  const auto g = golden();
  const CausalLM m = CausalLM::from_pretrained(family_dir(GetParam()));
  EXPECT_EQ(m.info().model_type, model_type_of(GetParam()));
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  const auto expect = g["last_logits"].get<std::vector<double>>();
  const int64_t V = static_cast<int64_t>(expect.size());
  const auto logits = m.logits(ids);
  ASSERT_EQ(logits.size(), ids.size() * static_cast<size_t>(V));
  const float* last = logits.data() + (ids.size() - 1) * V;
  double max_abs = 0, max_diff = 0;
  for (int64_t v = 0; v < V; ++v) {
    max_abs = std::max(max_abs, std::abs(expect[v]));
    max_diff = std::max(max_diff, std::abs(last[v] - expect[v]));
  }
  // The tolerance: 1e-4 of the largest |logit| (fp32 on both sides; the summation order
  // differs).
  EXPECT_LT(max_diff, 1e-4 * max_abs) << "largest |logit| " << max_abs;
}

TEST_P(Family, GreedyTokensMatchTransformers) {
  const auto g = golden();
  const CausalLM m = CausalLM::from_pretrained(family_dir(GetParam()));
  GenerateOptions go;
  go.n_predict = 32;
  go.temperature = 0;
  go.ignore_eos = true;
  // Exact: the golden records the smallest top-1/top-2 gap along its path (>= 9e-4 for every
  // family), far above fp32 summation noise. Prompt and continuation outgrow the sliding windows.
  // phi3_longrope's continuation passes original_max_position_embeddings (32): generation must
  // recompute the sequence with the long factors there, as transformers does (keeping the cache
  // rotated with the short ones leaves the golden path at its 17th token).
  const auto r = m.generate_ids(g["prompt_ids"].get<std::vector<int32_t>>(), go);
  EXPECT_EQ(r.new_ids, g["greedy_new_ids"].get<std::vector<int32_t>>())
      << "smallest golden gap " << g["greedy_min_top2_gap"].get<double>();
}

PerplexityResult stream_ppl(const CausalLM& m, const nlohmann::json& g) {
  PerplexityOptions po;
  po.ctx = g["ppl_ctx"].get<int64_t>();
  // The golden's windows are [BOS=1] + the stream, cut into windows of ctx, as perplexity_ids
  // builds them when the tokenizer adds BOS (stories260k's does).
  EXPECT_EQ(m.tokenizer().bos_id(), 1);
  return m.perplexity_ids(g["ppl_stream"].get<std::vector<int32_t>>(), po);
}

TEST_P(Family, PerplexityMatchesTransformers) {
  const auto g = golden();
  const CausalLM m = CausalLM::from_pretrained(family_dir(GetParam()));
  const auto r = stream_ppl(m, g);
  const auto sums = g["ppl_window_nll_sum"].get<std::vector<double>>();
  ASSERT_EQ(r.windows, static_cast<int64_t>(sums.size()));
  const double nll = g["ppl_mean_nll"].get<double>();
  EXPECT_NEAR(r.nll, nll, 1e-4 * nll);  // the tolerance: 1e-4 relative
  for (size_t w = 0; w < sums.size(); ++w)
    EXPECT_NEAR(r.window_nll_sum[w], sums[w], 1e-4 * sums[w]) << "window " << w;
}

// 4-bit g32 GPTQ in memory, written as a GPTQ folder and loaded back: every linear of every block
// quantized under its checkpoint name (a fused tensor as one linear), the reloaded model's
// kernels agree with the in-memory dequantized weights, and the perplexity stays near fp32.
TEST_P(Family, QuantizesAt4BitG32AndReloads) {
  const auto g = golden();
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  CausalLM m = CausalLM::from_pretrained(family_dir(GetParam()), q);
  const double fp = stream_ppl(m, g).nll;
  const QuantizeReport rep = m.quantize(random_calib(16, 11));
  const double in_memory = stream_ppl(m, g).nll;
  test::TempDir tmp;
  const auto out = tmp.path() / "q";
  m.save_quantized(out);

  const auto cfg = test::read_json(family_dir(GetParam()) / "config.json");
  const int64_t layers = cfg.contains("n_layer") ? cfg["n_layer"].get<int64_t>()
                                                 : cfg["num_hidden_layers"].get<int64_t>();
  const auto store = io::TensorStore::open_dir(out);
  int64_t qweights = 0;
  for (const auto& f : store.files()) {
    for (const auto& t : f->tensors()) {
      if (t.name.ends_with(".qweight")) ++qweights;
      if (model_type_of(GetParam()) == "phi3") {
        // Only the fused tensors, under the model's own names (transformers' and vLLM's).
        EXPECT_EQ(t.name.find("self_attn.q_proj"), std::string::npos) << t.name;
        EXPECT_EQ(t.name.find("mlp.up_proj"), std::string::npos) << t.name;
      }
    }
  }
  // Linears per block: fused tensors (Phi-3, GPT-NeoX, GPT-2) and plain MLPs (OPT, GPT-NeoX,
  // GPT-2) have fewer.
  const std::map<std::string, int64_t> fewer = {
      {"phi3", 4}, {"gpt_neox", 4}, {"opt", 6}, {"gpt2", 4}, {"starcoder2", 6}};
  const std::string mt = model_type_of(GetParam());
  const int64_t per_block = fewer.count(mt) ? fewer.at(mt) : 7;
  EXPECT_EQ(qweights, layers * per_block);
  EXPECT_EQ(static_cast<int64_t>(rep.modules.size()), layers * per_block);
  if (mt == "phi3") {
    EXPECT_NE(store.find("model.layers.0.self_attn.qkv_proj.qweight"), nullptr);
  }

  const CausalLM back = CausalLM::from_pretrained(out);
  EXPECT_TRUE(back.info().quantized);
  const double reloaded = stream_ppl(back, g).nll;
  RecordProperty("nll", fmt::format("fp32 {} in-memory {} reloaded {}", fp, in_memory, reloaded));
  ASSERT_TRUE(std::isfinite(reloaded));
  // The kernels round activations to int16 per 32 inputs; the in-memory model runs the
  // dequantized weights in fp32.
  EXPECT_NEAR(reloaded, in_memory, 2e-3 * in_memory);
  // Random weights of spread 0.12 at 4 bits: within a few percent of fp32's NLL.
  EXPECT_NEAR(in_memory, fp, 0.05 * fp);
}

// True-sequential passes start at the MLP from the saved residual stream once attention is
// quantized (QuantizationPipeline::mid_); recomputing attention in every pass instead
// (GPTQ_RECOMPUTE_SUBLAYERS=1) must give the same bytes, for every block wiring (parallel
// residuals, post-norms, fused tensors, plain MLPs).
TEST_P(Family, ReusedSublayerStatesGiveTheSameBytes) {
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  test::TempDir tmp;
  auto quantized = [&](const std::string& name) {
    CausalLM m = CausalLM::from_pretrained(family_dir(GetParam()), q);
    m.quantize(random_calib(4, 12));
    m.save_quantized(tmp.path() / name);
    return test::read_file(tmp.path() / name / "model.safetensors");
  };
  const std::string reused = quantized("reused");
  ::setenv("GPTQ_RECOMPUTE_SUBLAYERS", "1", 1);
  const std::string recomputed = quantized("recomputed");
  ::unsetenv("GPTQ_RECOMPUTE_SUBLAYERS");
  EXPECT_TRUE(reused == recomputed) << GetParam();
}

// The goldens depend on the family keys: without its sliding window (sliding_window: null) the
// Mistral model's last logits leave the tolerance by far, so the window is what the test checks.
TEST(FamilyKeys, MistralSlidingWindowChangesTheLogits) {
  test::TempDir tmp;
  const auto src = family_dir("mistral");
  for (const auto& e : std::filesystem::directory_iterator(src))
    std::filesystem::copy(e.path(), tmp.path() / e.path().filename());
  auto cfg = test::read_json(src / "config.json");
  ASSERT_EQ(cfg["sliding_window"].get<int>(), 16);
  cfg["sliding_window"] = nullptr;
  std::filesystem::remove(tmp.path() / "config.json");
  std::ofstream(tmp.path() / "config.json") << cfg.dump();
  const auto g = test::read_json(src / "golden.json");
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  const auto expect = g["last_logits"].get<std::vector<double>>();
  const auto logits = CausalLM::from_pretrained(tmp.path()).logits(ids);
  const float* last = logits.data() + (ids.size() - 1) * expect.size();
  double max_abs = 0, max_diff = 0;
  for (size_t v = 0; v < expect.size(); ++v) {
    max_abs = std::max(max_abs, std::abs(expect[v]));
    max_diff = std::max(max_diff, std::abs(last[v] - expect[v]));
  }
  EXPECT_GT(max_diff, 1e-2 * max_abs);
}

// Likewise the YaRN scaling: the same model with plain RoPE misses the golden logits by far.
TEST(FamilyKeys, YarnScalingChangesTheLogits) {
  test::TempDir tmp;
  const auto src = family_dir("qwen2_yarn");
  for (const auto& e : std::filesystem::directory_iterator(src))
    std::filesystem::copy(e.path(), tmp.path() / e.path().filename());
  auto cfg = test::read_json(src / "config.json");
  ASSERT_EQ(cfg["rope_parameters"]["rope_type"].get<std::string>(), "yarn");
  cfg["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", cfg["rope_parameters"]["rope_theta"]}};
  std::filesystem::remove(tmp.path() / "config.json");
  std::ofstream(tmp.path() / "config.json") << cfg.dump();
  const auto g = test::read_json(src / "golden.json");
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  const auto expect = g["last_logits"].get<std::vector<double>>();
  const auto logits = CausalLM::from_pretrained(tmp.path()).logits(ids);
  const float* last = logits.data() + (ids.size() - 1) * expect.size();
  double max_abs = 0, max_diff = 0;
  for (size_t v = 0; v < expect.size(); ++v) {
    max_abs = std::max(max_abs, std::abs(expect[v]));
    max_diff = std::max(max_diff, std::abs(last[v] - expect[v]));
  }
  EXPECT_GT(max_diff, 1e-2 * max_abs);
}

// GPTQModel 7.7 quantizes Phi-3's mlp.gate_up_proj as mlp.gate_proj and mlp.up_proj (Phi3MLP
// split in two: gate is the first half of gate_up's outputs). A folder in that layout, made here
// by cutting our fused tensors along N (qweight and scales columns, qzeros words, g_idx copied),
// loads and runs bit for bit as the fused one; parts whose g_idx differ are refused.
TEST(FamilyKeys, Phi3SplitGateUpAsGPTQModelWritesItLoadsAsTheFused) {
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 16;   // hidden 32: two groups
  q.desc_act = true;   // a g_idx that is not k / g
  CausalLM m = CausalLM::from_pretrained(family_dir("phi3"), q);
  m.quantize(random_calib(8, 5));
  test::TempDir tmp;
  const auto fused = tmp.path() / "fused", split = tmp.path() / "split";
  m.save_quantized(fused);

  // break_g_idx: up_proj's g_idx differs from gate_proj's; half_bias: only gate_proj has a bias.
  auto write_split = [&](bool break_g_idx, bool half_bias = false) {
    std::filesystem::remove_all(split);
    std::filesystem::create_directories(split);
    for (const auto& e : std::filesystem::directory_iterator(fused)) {
      if (e.path().extension() != ".safetensors") std::filesystem::copy(e.path(), split / e.path().filename());
    }
    const auto store = io::TensorStore::open_dir(fused);
    std::vector<io::TensorToWrite> out;
    std::vector<std::vector<uint8_t>> keep;  // the cut tensors' bytes
    auto cut = [&](const io::TensorInfo& t, const std::string& name, int64_t col0, int64_t cols) {
      const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, all = t.shape.back();
      const size_t es = t.nbytes / static_cast<size_t>(rows * all);
      std::vector<uint8_t> b(static_cast<size_t>(rows * cols) * es);
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(&b[static_cast<size_t>(r * cols) * es], t.data + static_cast<size_t>(r * all + col0) * es,
                    static_cast<size_t>(cols) * es);
      }
      keep.push_back(std::move(b));
      Shape sh = t.shape;
      sh.back() = cols;
      out.push_back({name, t.dtype, sh, keep.back().data(), keep.back().size()});
    };
    keep.reserve(64);
    int split_modules = 0;
    for (const auto& f : store.files()) {
      for (const auto& t : f->tensors()) {
        const auto at = t.name.find("mlp.gate_up_proj.");
        if (at == std::string::npos) {
          out.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
          continue;
        }
        const std::string prefix = t.name.substr(0, at), field = t.name.substr(at + 17);
        if (field == "g_idx") {
          for (const char* part : {"mlp.gate_proj.", "mlp.up_proj."}) {
            keep.emplace_back(t.data, t.data + t.nbytes);
            if (break_g_idx && std::string(part) == "mlp.up_proj.") {
              auto* g = reinterpret_cast<int32_t*>(keep.back().data());
              int64_t j = 1;
              while (j < t.shape[0] && g[j] == g[0]) ++j;
              ASSERT_LT(j, t.shape[0]) << "one group only";
              std::swap(g[0], g[j]);
            }
            out.push_back({prefix + part + field, t.dtype, t.shape, keep.back().data(), keep.back().size()});
          }
          ++split_modules;
          continue;
        }
        const int64_t half = t.shape.back() / 2;  // N/2 columns, or their N*b/64 zero words
        cut(t, prefix + "mlp.gate_proj." + field, 0, half);
        cut(t, prefix + "mlp.up_proj." + field, half, half);
      }
    }
    EXPECT_EQ(split_modules, 2);  // one per layer
    const std::vector<float> zero_bias(64, 0.0f);  // intermediate_size 64
    if (half_bias) {
      out.push_back({"model.layers.0.mlp.gate_proj.bias", DType::kF32, {64}, zero_bias.data(), 64 * sizeof(float)});
    }
    io::write_safetensors(split / "model.safetensors", out);
  };

  write_split(false);
  const CausalLM a = CausalLM::from_pretrained(fused), b = CausalLM::from_pretrained(split);
  const std::vector<int32_t> ids = {1, 17, 300, 42, 99, 7, 250, 3, 511, 64};
  EXPECT_EQ(a.logits(ids), b.logits(ids));  // the same codes through the same kernels
  LoadOptions deq;
  deq.dequantize = true;
  EXPECT_EQ(CausalLM::from_pretrained(fused, deq).logits(ids), CausalLM::from_pretrained(split, deq).logits(ids));

  write_split(true);
  try {
    (void)CausalLM::from_pretrained(split);
    ADD_FAILURE() << "parts with different g_idx were joined";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.up_proj"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot run as one linear"), std::string::npos) << e.what();
  }

  write_split(false, true);
  try {
    (void)CausalLM::from_pretrained(split);
    ADD_FAILURE() << "parts with a bias on one side only were joined";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only some parts of model.layers.0.mlp.gate_up_proj have a bias"),
              std::string::npos)
        << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Family,
                         ::testing::Values("qwen3", "mistral", "phi3", "gemma", "gemma2",
                                           "gemma3_text", "gpt_neox", "opt", "gpt2", "phi3_longrope",
                                           "qwen2_yarn", "starcoder2", "granite", "olmo2",
                                           "stablelm", "stablelm_parallel", "cohere"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gptq
