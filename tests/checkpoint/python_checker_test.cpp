// Our writer's folders checked by scripts/gptq_format.py, the independent numpy implementation
// of SPEC §1-2: real codes from the quantizer, packed by quant::pack_*, written by
// CheckpointWriter, must dequantize there to exactly the quantizer's own dequantized weights
// (tolerance 0: scale * (q - z) is exact in fp32 for fp16 scales and b <= 8 bit codes).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "checkpoint/gptq_checkpoint.h"
#include "common/test_util.h"
#include "config/model_config.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "quant/quantizer.h"

#ifndef GPTQ_PYTHON3
#define GPTQ_PYTHON3 ""
#endif
#ifndef GPTQ_FORMAT_PY
#define GPTQ_FORMAT_PY ""
#endif

namespace gptq::checkpoint {
namespace {

namespace fs = std::filesystem;

struct Case {
  int bits;
  int group_size;
  bool sym;
  bool desc_act;  // through gptq_quantize with a random Hessian (RTN has no act-order)
  std::string format;
  uint64_t max_shard_bytes;
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  const Case& c = i.param;
  std::string s = "b";
  s += std::to_string(c.bits);
  s += "_g";
  s += c.group_size < 0 ? std::string("all") : std::to_string(c.group_size);
  s += c.sym ? "_sym" : "_asym";
  if (c.desc_act) s += "_act";
  s += "_";
  s += c.format;
  if (c.max_shard_bytes < 1'000'000) s += "_sharded";
  return s;
}

class PythonChecker : public ::testing::TestWithParam<Case> {};

// A bf16 Llama-like source: 2 layers, hidden 64, intermediate 128, an untied lm_head.
void write_source(const fs::path& dir, std::mt19937& rng,
                  std::map<std::string, std::vector<float>>* linears) {
  fs::create_directories(dir);
  io::write_file_atomic(dir / "config.json", R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 4, "vocab_size": 32, "max_position_embeddings": 64,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "attention_bias": true})");
  io::write_file_atomic(dir / "tokenizer.json", "{}");
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::map<std::string, std::vector<uint16_t>> bf;
  std::vector<io::TensorToWrite> ts;
  std::vector<float> ones(64, 1.0f);
  auto add = [&](const std::string& name, int64_t n, int64_t k) {
    std::vector<float> w(static_cast<size_t>(k == 0 ? n : n * k));
    for (float& x : w) x = nd(rng);
    auto& b = bf[name];
    for (float x : w) b.push_back(core::fp32_to_bf16(x));
    if (linears && name.find(".layers.") != std::string::npos && name.size() > 7 &&
        name.compare(name.size() - 7, 7, ".weight") == 0) {
      (*linears)[name.substr(0, name.size() - 7)] = w;
    }
    ts.push_back({name, DType::kBF16, k == 0 ? Shape{n} : Shape{n, k}, nullptr, b.size() * 2});
  };
  add("model.embed_tokens.weight", 32, 64);
  add("lm_head.weight", 32, 64);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* s : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}) {
      add(p + s + ".weight", 64, 64);
    }
    add(p + "self_attn.q_proj.bias", 64, 0);
    add(p + "mlp.gate_proj.weight", 128, 64);
    add(p + "mlp.up_proj.weight", 128, 64);
    add(p + "mlp.down_proj.weight", 64, 128);
    ts.push_back({p + "input_layernorm.weight", DType::kF32, {64}, ones.data(), 256});
  }
  ts.push_back({"model.norm.weight", DType::kF32, {64}, ones.data(), 256});
  for (auto& t : ts) {
    if (t.data == nullptr) t.data = bf.at(t.name).data();
  }
  io::write_safetensors(dir / "model.safetensors", ts);
}

TEST_P(PythonChecker, VerifiesOurFolder) {
  const std::string python = GPTQ_PYTHON3;
  if (python.empty()) GTEST_SKIP() << "no python3 with numpy found at configure time";
  const Case c = GetParam();
  test::TempDir tmp;
  std::mt19937 rng(1234);
  std::map<std::string, std::vector<float>> linears;  // module -> W [N, K]
  write_source(tmp.path() / "src", rng, &linears);
  const config::ModelConfig cfg = config::load_model_config(tmp.path() / "src");
  const io::TensorStore source = io::TensorStore::open_dir(tmp.path() / "src");

  quant::QuantParams qp;
  qp.bits = c.bits;
  qp.group_size = c.group_size;
  qp.sym = c.sym;
  qp.desc_act = c.desc_act;
  WriterOptions wo;
  wo.run_signature = case_name({c, 0});
  wo.max_shard_bytes = c.max_shard_bytes;
  CheckpointWriter w(tmp.path() / "src", tmp.path() / "out", wo);

  std::vector<std::vector<float>> dequant;
  std::vector<io::TensorToWrite> ref;
  std::vector<PackedLinear> packed;
  packed.reserve(linears.size());
  dequant.reserve(linears.size());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int l = 0; l < 2; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    std::vector<io::TensorToWrite> part;
    for (const auto& [module, wts] : linears) {
      if (module.rfind(prefix, 0) != 0) continue;
      const io::TensorInfo& src_w = source.get(module + ".weight");
      const int64_t n = src_w.shape[0], k = src_w.shape[1];
      quant::QuantResult r;
      if (c.desc_act) {
        // H = X^T X of random activations whose scales differ per column, so that the act-order
        // permutation is far from the identity.
        std::vector<float> x(static_cast<size_t>(4 * k * k));
        for (int64_t i = 0; i < 4 * k; ++i) {
          for (int64_t j = 0; j < k; ++j) x[i * k + j] = nd(rng) * (1.0f + static_cast<float>((j * 37) % k) / 8.0f);
        }
        quant::HessianAccumulator h(k);
        h.add(x.data(), 4 * k);
        r = quant::gptq_quantize(wts.data(), n, k, h.hessian(), qp);
      } else {
        r = quant::rtn_quantize(wts.data(), n, k, qp);
      }
      PackedLinear p;
      p.module = module;
      p.n = n;
      p.k = k;
      p.bits = c.bits;
      const int64_t g = c.group_size == -1 ? k : c.group_size;
      p.groups = (k + g - 1) / g;
      p.qweight = quant::pack_qweight(r.codes.data(), n, k, c.bits);
      p.qzeros = quant::pack_qzeros(r.zeros.data(), p.groups, n, c.bits);
      if (c.format == "gptq") quant::qzeros_v2_to_v1(p.qzeros, c.bits);
      for (float s : r.scales) p.scales.push_back(core::fp32_to_fp16(s));
      p.g_idx = r.g_idx;
      if (source.find(module + ".bias") != nullptr) p.bias.assign(static_cast<size_t>(n), 0x3c00);
      packed.push_back(std::move(p));
      for (const auto& t : tensors_of(packed.back())) part.push_back(t);
      dequant.push_back(r.dequant);
      ref.push_back({module, DType::kF32, {n, k}, dequant.back().data(), dequant.back().size() * 4});
    }
    w.write_layer(l, part);
  }
  QuantizationSummary s;
  s.q.bits = c.bits;
  s.q.group_size = c.group_size;
  s.q.sym = c.sym;
  s.q.desc_act = c.desc_act;
  s.q.checkpoint_format = c.format;
  s.num_layers = 2;
  s.block_linear_groups = {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
                           {"self_attn.o_proj"},
                           {"mlp.gate_proj", "mlp.up_proj"},
                           {"mlp.down_proj"}};
  w.finalize(source, cfg, s);
  io::write_safetensors(tmp.path() / "reference.safetensors", ref);

  const fs::path log = tmp.path() / "verify.log";
  const std::string cmd = "'" + python + "' '" + GPTQ_FORMAT_PY + "' verify '" + (tmp.path() / "out").string() +
                          "' --reference '" + (tmp.path() / "reference.safetensors").string() + "' --atol 0 > '" +
                          log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd << "\n" << test::read_file(log);
  if (c.max_shard_bytes < 1'000'000) {
    EXPECT_TRUE(fs::exists(tmp.path() / "out" / "model.safetensors.index.json"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllFormats, PythonChecker,
    ::testing::Values(Case{2, 32, true, false, "gptq", 4'000'000'000ull},
                      Case{3, 32, true, false, "gptq", 4'000'000'000ull},
                      Case{4, 32, true, false, "gptq", 4'000'000'000ull},
                      Case{8, 32, true, false, "gptq", 4'000'000'000ull},
                      Case{2, 64, false, false, "gptq_v2", 4'000'000'000ull},
                      Case{3, -1, false, false, "gptq_v2", 4'000'000'000ull},
                      Case{4, 32, false, false, "gptq", 4'000'000'000ull},
                      Case{8, 32, false, false, "gptq_v2", 4'000'000'000ull},
                      Case{4, 32, true, true, "gptq", 30000},
                      Case{3, 32, false, true, "gptq_v2", 4'000'000'000ull}),
    case_name);

}  // namespace
}  // namespace gptq::checkpoint
