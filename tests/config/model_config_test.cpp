#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "arch/arch.h"
#include "config/model_config.h"
#include "gptq/error.h"

namespace gptq::config {
namespace {

constexpr const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
  "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
  "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";

TEST(ModelConfig, Llama31) {
  const auto c = parse_model_config(kLlama31, "config.json");
  EXPECT_EQ(c.head_dim, 128);  // hidden / heads when head_dim is absent
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.quant.has_value());
  const auto& d = c.arch;
  EXPECT_FALSE(d.linear(arch::Role::kQ).bias);
  EXPECT_EQ(d.block_module(7, "mlp.down_proj"), "model.layers.7.mlp.down_proj");
  ASSERT_EQ(d.sequential_groups.size(), 4u);
}

TEST(ModelConfig, Qwen2HasQkvBiasAndExplicitHeadDim) {
  const auto c = parse_model_config(R"({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "tie_word_embeddings": true,
    "sliding_window": 32768, "use_sliding_window": false})", "qwen2/config.json");
  EXPECT_EQ(c.head_dim, 64);
  const auto& d = c.arch;
  EXPECT_TRUE(d.linear(arch::Role::kQ).bias);
  EXPECT_TRUE(d.linear(arch::Role::kV).bias);
  EXPECT_FALSE(d.linear(arch::Role::kO).bias);
}

TEST(ModelConfig, MistralLinearRopeAndQuantizationConfig) {
  const auto c = parse_model_config(R"({"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 32000, "max_position_embeddings": 32768, "rope_scaling": {"type": "linear", "factor": 2.0},
    "quantization_config": {"quant_method": "gptq", "bits": 3, "group_size": 64, "desc_act": true,
                            "sym": false, "checkpoint_format": "gptq_v2"}})", "m/config.json");
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  ASSERT_TRUE(c.quant.has_value());
  EXPECT_EQ(c.quant->bits, 3);
  EXPECT_EQ(c.quant->group_size, 64);
  EXPECT_TRUE(c.quant->desc_act);
  EXPECT_FALSE(c.quant->sym);
  EXPECT_EQ(c.quant->checkpoint_format, "gptq_v2");
}

constexpr const char* kTiny = R"("model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "max_position_embeddings": 2048)";

ModelConfig tiny(const std::string& extra) {
  std::string text = "{";  // appended piece by piece: GCC 12's -Wrestrict misfires on "lit" + string
  text += kTiny;
  if (!extra.empty()) {
    text += ", ";
    text += extra;
  }
  text += "}";
  return parse_model_config(text, "dir/config.json");
}

// What transformers 5.24's LlamaConfig(...).to_dict() writes (rope_theta=100000, and the llama3
// scaling of Llama 3.1), and the transformers 4 spelling of the same settings.
TEST(ModelConfig, RopeParametersOfTransformers5) {
  ModelConfig v5 = tiny(R"("rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"})");
  EXPECT_EQ(v5.rope_theta, 100000.0);
  EXPECT_EQ(v5.rope_scaling.type, RopeScaling::Type::kNone);
  ModelConfig l3 = tiny(R"("rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0})");
  ModelConfig l3v4 = tiny(R"("rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  for (const ModelConfig* c : {&l3, &l3v4}) {
    EXPECT_EQ(c->rope_theta, 500000.0);
    EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
    EXPECT_EQ(c->rope_scaling.factor, 8.0);
    EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0);
    EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  }
  // transformers fills a missing original_max_position_embeddings from max_position_embeddings.
  ModelConfig l3d = tiny(R"("rope_parameters": {"rope_type": "llama3", "factor": 2.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "rope_theta": 500000.0})");
  EXPECT_EQ(l3d.rope_scaling.original_max_position_embeddings, 2048);
  ModelConfig lin = tiny(R"("rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6})");
  EXPECT_EQ(lin.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(lin.rope_theta, 1e6);
  // Both spellings, agreeing (a v5 config that kept the old keys).
  EXPECT_EQ(tiny(R"("rope_theta": 100000.0, "rope_parameters": {"rope_theta": 100000.0})").rope_theta, 100000.0);
  // No theta anywhere: transformers' class default.
  EXPECT_EQ(tiny("").rope_theta, 10000.0);
}

// The keys of yarn and longrope, with transformers 5.24's defaults and precedence (the values
// these produce are compared with transformers' tables in tests/model/rope_scaling_test.cpp).
TEST(ModelConfig, YarnAndLongropeKeys) {
  const ModelConfig y = tiny(R"("rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512,
      "beta_fast": null, "mscale": 0.5, "truncate": false}, "rope_theta": 1e4)");
  EXPECT_EQ(y.rope_scaling.type, RopeScaling::Type::kYarn);
  EXPECT_EQ(y.rope_scaling.factor, 4.0);
  EXPECT_EQ(y.rope_scaling.original_max_position_embeddings, 512);
  EXPECT_EQ(y.rope_scaling.beta_fast, 32.0);  // null: the default
  EXPECT_EQ(y.rope_scaling.beta_slow, 1.0);
  EXPECT_EQ(y.rope_scaling.mscale, 0.5);
  EXPECT_EQ(y.rope_scaling.mscale_all_dim, 0.0);
  EXPECT_FALSE(y.rope_scaling.truncate);
  EXPECT_FALSE(y.rope_scaling.attention_factor);
  // A null factor is max_position_embeddings / original; the top-level original wins.
  const ModelConfig n = tiny(R"("original_max_position_embeddings": 256, "rope_parameters": {"rope_type": "yarn",
      "factor": null, "original_max_position_embeddings": 512, "attention_factor": 1.5, "rope_theta": 1e4})");
  EXPECT_EQ(n.rope_scaling.original_max_position_embeddings, 256);
  EXPECT_EQ(n.rope_scaling.factor, 8.0);
  EXPECT_EQ(n.rope_scaling.attention_factor, 1.5);
  const ModelConfig l = tiny(R"("rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4,
      "short_factor": [1, 1, 1, 1, 1, 1, 1, 2], "long_factor": [1, 2, 3, 4, 5, 6, 7, 8]})");
  EXPECT_EQ(l.rope_scaling.type, RopeScaling::Type::kLongrope);
  EXPECT_EQ(l.rope_scaling.original_max_position_embeddings, 2048);  // max_position_embeddings
  EXPECT_EQ(l.rope_scaling.factor, 1.0);
  EXPECT_EQ(l.rope_scaling.long_factor.back(), 8.0);
  EXPECT_EQ(l.rope_scaling.short_factor.back(), 2.0);
}

// Phi-3: "su" and "yarn" are LongRoPE, and original_max_position_embeddings defaults to 4096.
TEST(ModelConfig, Phi3LongropeNames) {
  for (const char* type : {"su", "yarn", "longrope"}) {
    const std::string text = fmt::format(R"({{"model_type": "phi3", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "max_position_embeddings": 131072,
        "rope_scaling": {{"type": "{}", "short_factor": [1, 1, 1, 1, 1, 1, 1, 1],
        "long_factor": [1, 2, 3, 4, 5, 6, 7, 8], "original_max_position_embeddings": 999}}}})", type);
    const ModelConfig c = parse_model_config(text, "phi3/config.json");
    EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLongrope) << type;
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096) << type;
    EXPECT_EQ(c.rope_scaling.factor, 32.0) << type;  // 131072 / 4096
  }
}

TEST(ModelConfig, RopeErrors) {
  auto expect = [](const std::string& extra, ErrorKind kind, const char* needle) {
    try {
      tiny(extra);
      ADD_FAILURE() << "accepted " << extra;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find("dir/config.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect(R"("rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4, "extrapolation": 2})",
         ErrorKind::kUnsupported, "key \"extrapolation\"");
  expect(R"("rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4})", ErrorKind::kConfig, "factor");
  expect(R"("rope_parameters": {"rope_type": "yarn", "factor": 4.0, "attention_factor": -1})", ErrorKind::kConfig,
         "attention_factor");
  expect(R"("rope_parameters": {"rope_type": "longrope", "long_factor": [1, 1, 1, 1, 1, 1, 1, 1]})",
         ErrorKind::kConfig, "short_factor");
  expect(R"("rope_parameters": {"rope_type": "longrope", "short_factor": [1, 1, 1], "long_factor": [1, 1, 1]})",
         ErrorKind::kConfig, "16 rotary dims need 8");
  expect(R"("rope_parameters": {"rope_type": "longrope", "short_factor": [1, 1, 1, 1, 1, 1, 1, "x"],
            "long_factor": [1, 1, 1, 1, 1, 1, 1, 1]})", ErrorKind::kConfig, "positive numbers");
  expect(R"("rope_scaling": {"type": "su", "short_factor": [1], "long_factor": [1]})", ErrorKind::kUnsupported,
         "rope_type \"su\"");  // a Phi-3 name only
  expect(R"("rope_scaling": {"type": "dynamic", "factor": 2.0})", ErrorKind::kUnsupported, "rope_type \"dynamic\"");
  expect(R"("rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4})", ErrorKind::kConfig,
         "low_freq_factor");
  expect(R"("rope_parameters": {"rope_type": "linear", "rope_theta": 1e4})", ErrorKind::kConfig, "factor");
  expect(R"("rope_theta": 10000.0, "rope_parameters": {"rope_theta": 100000.0})", ErrorKind::kConfig, "disagrees");
  expect(R"("rope_scaling": {"type": "linear", "factor": 2.0}, "rope_parameters": {"rope_type": "linear",
            "factor": 4.0})", ErrorKind::kConfig, "disagree");
  expect(R"("rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e4}})",
         ErrorKind::kUnsupported, "per layer type");
  expect(R"("rope_parameters": {"rope_theta": "big"})", ErrorKind::kConfig, "rope_theta");
  expect(R"("rope_theta": -1)", ErrorKind::kConfig, "positive");
}

TEST(QuantizationConfig, ReadsMetaQuantizerAsStringOrList) {
  EXPECT_EQ(parse_quantization_config(R"({"bits": 4, "meta": {"quantizer": "gptqmodel:1.2.3"}})", "q.json").meta_quantizer,
            std::vector<std::string>{"gptqmodel:1.2.3"});
  const auto q = parse_quantization_config(
      R"({"bits": 4, "meta": {"quantizer": ["optimum:1.0", "gptqmodel:7.7.0"], "desc_act": true}})", "q.json");
  EXPECT_EQ(q.meta_quantizer, (std::vector<std::string>{"optimum:1.0", "gptqmodel:7.7.0"}));
  EXPECT_EQ(q.meta_desc_act, std::optional<bool>(true));
  EXPECT_TRUE(parse_quantization_config(R"({"bits": 4})", "q.json").meta_quantizer.empty());
}

// GPTQModel's "dynamic" rules: file order, first match wins (re.match from the start), "-:"
// excludes, "+:" or no prefix overrides.
TEST(QuantizationConfig, DynamicRules) {
  const auto q = parse_quantization_config(R"({"bits": 4, "group_size": 128, "sym": true, "dynamic": {
      "-:model\\.layers\\.0\\.mlp\\.down_proj$": {},
      "+:.*\\.mlp\\.down_proj": {"bits": 8, "group_size": 64},
      ".*\\.mlp\\.": {"bits": 2, "sym": false, "desc_act": true},
      "+:.*\\.mlp\\.up_proj": {"bits": 3}}})", "q.json");
  ASSERT_EQ(q.dynamic.size(), 4u);
  EXPECT_EQ(q.dynamic[0].key, "-:model\\.layers\\.0\\.mlp\\.down_proj$");  // file order kept
  EXPECT_FALSE(q.scheme_for("model.layers.0.mlp.down_proj").quantized);
  const auto d1 = q.scheme_for("model.layers.1.mlp.down_proj");
  EXPECT_TRUE(d1.quantized);
  EXPECT_EQ(d1.bits, 8);
  EXPECT_EQ(d1.group_size, 64);
  EXPECT_TRUE(d1.sym);
  EXPECT_EQ(d1.rule, 1);
  const auto up = q.scheme_for("model.layers.1.mlp.up_proj");  // rule 2 comes first
  EXPECT_EQ(up.bits, 2);
  EXPECT_EQ(up.group_size, 128);
  EXPECT_FALSE(up.sym);
  EXPECT_TRUE(up.desc_act);
  const auto qp = q.scheme_for("model.layers.1.self_attn.q_proj");
  EXPECT_EQ(qp.rule, -1);
  EXPECT_EQ(qp.bits, 4);
  // Matched from the start only: ".*\\.mlp\\." needs nothing before, "mlp" alone would not match.
  const auto q2 = parse_quantization_config(R"({"bits": 4, "dynamic": {"mlp": {"bits": 8}}})", "q.json");
  EXPECT_EQ(q2.scheme_for("model.layers.0.mlp.up_proj").bits, 4);
  EXPECT_EQ(q2.for_module("mlp.x").bits, 8);
}

TEST(QuantizationConfig, DynamicRuleErrors) {
  auto expect = [](const std::string& dyn, ErrorKind kind, const char* needle) {
    try {
      parse_quantization_config(R"({"bits": 4, "dynamic": )" + dyn + "}", "dir/quantize_config.json");
      ADD_FAILURE() << "accepted " << dyn;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find("dir/quantize_config.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect(R"({"+:model.(layers": {"bits": 8}})", ErrorKind::kConfig, "not a valid regular expression");
  expect(R"({"+:.*mlp": {"bits": 5}})", ErrorKind::kUnsupported, "bits = 5");
  expect(R"({"+:.*mlp": {"group_size": 0}})", ErrorKind::kConfig, "group_size");
  expect(R"({"+:.*mlp": {"sym": 1}})", ErrorKind::kConfig, "sym");
  expect(R"({"+:.*mlp": 8})", ErrorKind::kConfig, "object");
  expect(R"([1])", ErrorKind::kConfig, "dynamic");
}

TEST(ModelConfig, ErrorsNameTheFileAndKey) {
  auto expect = [](const char* json, ErrorKind kind, const char* needle) {
    try {
      parse_model_config(json, "dir/config.json");
      ADD_FAILURE() << "accepted " << json;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find("dir/config.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect(R"({"model_type": "llama"})", ErrorKind::kConfig, "hidden_size");
  expect(R"({"model_type": "bert", "hidden_size": 8})", ErrorKind::kUnsupported, "supported: llama");
  expect(R"([1, 2])", ErrorKind::kConfig, "object");
  expect(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 3, "vocab_size": 10})", ErrorKind::kConfig, "num_attention_heads");
  expect(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "vocab_size": 10, "quantization_config": {"bits": 5}})",
         ErrorKind::kUnsupported, "bits");
  expect(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "vocab_size": 10, "hidden_act": "quick_gelu"})", ErrorKind::kUnsupported,
         "hidden_act \"quick_gelu\"");
}

}  // namespace
}  // namespace gptq::config

namespace gptq::config {
namespace {

// A 4-layer config of `type` with `extra` keys.
ModelConfig family(const std::string& type, const std::string& extra) {
  std::string text = R"({"model_type": ")";
  text += type;
  text += R"(", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
             "vocab_size": 10)";
  if (!extra.empty()) {
    text += ", ";
    text += extra;
  }
  text += "}";
  return parse_model_config(text, "fam/config.json");
}

using arch::AttentionKind;
constexpr AttentionKind S = AttentionKind::kSliding, G = AttentionKind::kGlobal;

TEST(FamilyKeys, SlidingWindowsAsTransformersReadsThem) {
  // Mistral: every layer, when set; transformers' default (4096) when absent; none when null.
  auto m = family("mistral", R"("sliding_window": 16)");
  EXPECT_EQ(m.sliding_window, 16);
  EXPECT_EQ(m.layer_attention, (std::vector<AttentionKind>{S, S, S, S}));
  EXPECT_EQ(family("mistral", "").sliding_window, 4096);
  m = family("mistral", R"("sliding_window": null)");
  EXPECT_EQ(m.sliding_window, 0);
  EXPECT_EQ(m.layer_attention, (std::vector<AttentionKind>{G, G, G, G}));
  // Llama does not read the key.
  EXPECT_EQ(family("llama", R"("sliding_window": 16)").sliding_window, 0);
  // Qwen2: only with use_sliding_window, from max_window_layers on.
  EXPECT_EQ(family("qwen2", R"("sliding_window": 32768, "use_sliding_window": false)").sliding_window, 0);
  m = family("qwen2", R"("sliding_window": 8, "use_sliding_window": true, "max_window_layers": 2)");
  EXPECT_EQ(m.layer_attention, (std::vector<AttentionKind>{G, G, S, S}));
  // Gemma 2: alternating by default; layer_types wins.
  m = family("gemma2", "");
  EXPECT_EQ(m.layer_attention, (std::vector<AttentionKind>{S, G, S, G}));
  EXPECT_EQ(m.sliding_window, 4096);
  m = family("gemma2", R"("sliding_window": 8, "layer_types": ["full_attention", "sliding_attention",
                          "full_attention", "full_attention"])");
  EXPECT_EQ(m.layer_attention, (std::vector<AttentionKind>{G, S, G, G}));
  // Gemma 3: 5 sliding : 1 global by default, or transformers 4's sliding_window_pattern.
  EXPECT_EQ(family("gemma3_text", R"("sliding_window_pattern": 2)").layer_attention,
            (std::vector<AttentionKind>{S, G, S, G}));
  EXPECT_EQ(family("gemma3_text", "").layer_attention, (std::vector<AttentionKind>{S, S, S, S}));
}

TEST(FamilyKeys, GemmaDefaultsAndRopes) {
  auto g = family("gemma2", "");
  EXPECT_EQ(g.attn_softcap, 50.0);  // transformers' Gemma2Config defaults
  EXPECT_EQ(g.final_softcap, 30.0);
  EXPECT_DOUBLE_EQ(g.attn_scale, 1.0 / 16.0);  // query_pre_attn_scalar 256
  EXPECT_EQ(g.arch.activation, arch::Activation::kGeluTanh);
  g = family("gemma2", R"("attn_logit_softcapping": null, "final_logit_softcapping": 7.5, "query_pre_attn_scalar": 4,
                          "hidden_activation": "gelu")");
  EXPECT_EQ(g.attn_softcap, 0.0);
  EXPECT_EQ(g.final_softcap, 7.5);
  EXPECT_DOUBLE_EQ(g.attn_scale, 0.5);
  EXPECT_EQ(g.arch.activation, arch::Activation::kGelu);
  // Gemma 1's legacy "gelu" means the tanh form, as transformers reads it.
  EXPECT_EQ(family("gemma", R"("hidden_act": "gelu")").arch.activation, arch::Activation::kGeluTanh);
  // Llama's attention scale stays head_dim^-0.5 even with a Gemma key present.
  EXPECT_DOUBLE_EQ(family("llama", R"("query_pre_attn_scalar": 4)").attn_scale, 0.25);
  // Gemma 3: two RoPEs, both spellings.
  auto g3 = family("gemma3_text", R"("rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
                                     "rope_scaling": {"rope_type": "linear", "factor": 8.0})");
  EXPECT_EQ(g3.rope_theta, 1e6);
  EXPECT_EQ(g3.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(*g3.rope_local_theta, 1e4);
  EXPECT_EQ(g3.rope_local_scaling.type, RopeScaling::Type::kNone);
  g3 = family("gemma3_text", R"("rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}})");
  EXPECT_EQ(g3.rope_theta, 1e6);
  EXPECT_EQ(g3.rope_scaling.factor, 8.0);
  EXPECT_EQ(*g3.rope_local_theta, 1e4);
  EXPECT_EQ(g3.attn_softcap, 0.0);
  // Phi-3 / Phi-4-mini partial rotary.
  EXPECT_EQ(family("phi3", R"("rope_parameters": {"rope_type": "default", "rope_theta": 1e4,
                               "partial_rotary_factor": 0.75})").rotary_dim, 12);
  EXPECT_EQ(family("phi3", R"("partial_rotary_factor": 0.5)").rotary_dim, 8);
  EXPECT_EQ(family("llama", R"("partial_rotary_factor": 0.5)").rotary_dim, 16);  // not a Llama key
}

TEST(FamilyKeys, NeoxOptGpt2KeyNames) {
  // GPT-NeoX, transformers 4 spelling: rotary_pct and rotary_emb_base; attention_bias and
  // use_parallel_residual default to true.
  auto n = family("gpt_neox", R"("rotary_pct": 0.5, "rotary_emb_base": 5000, "layer_norm_eps": 1e-4)");
  EXPECT_EQ(n.rotary_dim, 8);
  EXPECT_EQ(n.rope_theta, 5000.0);
  EXPECT_EQ(n.rms_norm_eps, 1e-4);
  EXPECT_TRUE(n.arch.parallel_residual);
  EXPECT_TRUE(n.arch.linear(arch::Role::kQ).bias);
  EXPECT_EQ(n.arch.activation, arch::Activation::kGelu);
  EXPECT_EQ(family("gpt_neox", "").rotary_dim, 4);  // transformers' default factor 0.25
  n = family("gpt_neox", R"("use_parallel_residual": false, "attention_bias": false)");
  EXPECT_FALSE(n.arch.parallel_residual);
  EXPECT_FALSE(n.arch.linear(arch::Role::kQ).bias);
  // OPT: ffn_dim, enable_bias, activation_function, fixed LayerNorm epsilon.
  const auto o = parse_model_config(R"({"model_type": "opt", "hidden_size": 64, "ffn_dim": 96,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "enable_bias": false,
      "activation_function": "relu"})", "fam/config.json");
  EXPECT_EQ(o.intermediate_size, 96);
  EXPECT_FALSE(o.arch.linear(arch::Role::kUp).bias);
  EXPECT_EQ(o.rms_norm_eps, 1e-5);
  EXPECT_EQ(o.arch.activation, arch::Activation::kRelu);
  // GPT-2: n_* names; n_inner null means 4 * n_embd.
  const auto g = parse_model_config(R"({"model_type": "gpt2", "n_embd": 64, "n_inner": null, "n_layer": 3,
      "n_head": 4, "n_positions": 128, "vocab_size": 10, "activation_function": "gelu_new"})", "fam/config.json");
  EXPECT_EQ(g.hidden_size, 64);
  EXPECT_EQ(g.intermediate_size, 256);
  EXPECT_EQ(g.num_hidden_layers, 3);
  EXPECT_EQ(g.max_position_embeddings, 128);
  EXPECT_EQ(g.arch.activation, arch::Activation::kGeluTanh);
}

// The keys of the smaller families, with transformers' class defaults when absent.
TEST(FamilyKeys, SmallFamilies) {
  const ModelConfig sc = family("starcoder2", "");
  EXPECT_TRUE(sc.tie_word_embeddings);  // Starcoder2Config's default
  EXPECT_TRUE(sc.arch.linear(arch::Role::kUp).bias);  // use_bias defaults to true
  EXPECT_EQ(sc.rms_norm_eps, 1e-5);
  EXPECT_EQ(sc.arch.activation, arch::Activation::kGeluTanh);
  EXPECT_EQ(sc.sliding_window, 0);
  const ModelConfig sc2 = family("starcoder2", R"("use_bias": false, "norm_epsilon": 1e-6, "sliding_window": 8)");
  EXPECT_FALSE(sc2.arch.linear(arch::Role::kQ).bias);
  EXPECT_EQ(sc2.rms_norm_eps, 1e-6);
  EXPECT_EQ(sc2.sliding_window, 8);
  EXPECT_EQ(sc2.layer_attention[3], arch::AttentionKind::kSliding);
  const ModelConfig gr = family("granite", R"("embedding_multiplier": 12.0, "residual_multiplier": 0.22,
      "attention_multiplier": 0.0078125, "logits_scaling": 8.0)");
  EXPECT_EQ(gr.embedding_multiplier, 12.0);
  EXPECT_EQ(gr.residual_multiplier, 0.22);
  EXPECT_EQ(gr.attn_scale, 0.0078125);
  EXPECT_EQ(gr.logit_multiplier, 0.125);
  EXPECT_EQ(family("granite", "").attn_scale, 1.0);  // GraniteConfig's default, not head_dim^-0.5
  const ModelConfig ol = family("olmo2", "");
  EXPECT_TRUE(ol.arch.qk_norm_full);
  EXPECT_TRUE(ol.arch.sublayers[0].norm.empty());
  EXPECT_EQ(ol.arch.sublayers[1].post_norm, "post_feedforward_layernorm");
  const ModelConfig st = family("stablelm", "");
  EXPECT_FALSE(st.arch.parallel_residual);
  EXPECT_EQ(st.rotary_dim, 4);  // partial_rotary_factor 0.25 of head_dim 16
  EXPECT_FALSE(st.arch.linear(arch::Role::kQ).bias);
  EXPECT_EQ(st.arch.sublayers[1].norm, "post_attention_layernorm");
  const ModelConfig stp = family("stablelm", R"("use_parallel_residual": true, "use_qkv_bias": true)");
  EXPECT_TRUE(stp.arch.parallel_residual);
  EXPECT_EQ(stp.arch.sublayers[1].norm, "input_layernorm");
  EXPECT_TRUE(stp.arch.linear(arch::Role::kK).bias);
  EXPECT_FALSE(stp.arch.linear(arch::Role::kO).bias);
  const ModelConfig co = family("cohere", "");
  EXPECT_EQ(co.logit_multiplier, 0.0625);
  EXPECT_TRUE(co.tie_word_embeddings);
  EXPECT_FALSE(co.arch.norm_bias);
  EXPECT_EQ(co.arch.rope_style, arch::RopeStyle::kInterleaved);
  EXPECT_EQ(family("cohere", R"("logit_scale": 0.25)").logit_multiplier, 0.25);
}

TEST(FamilyKeys, UnsupportedValuesNameTheKey) {
  auto expect = [](const std::string& type, const std::string& extra, ErrorKind kind, const char* needle) {
    try {
      family(type, extra);
      ADD_FAILURE() << "accepted " << type << " " << extra;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find("fam/config.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Phi-3's longrope needs a factor per rotary frequency.
  expect("phi3", R"("rope_scaling": {"type": "longrope", "long_factor": [1.0], "short_factor": [1.0]})",
         ErrorKind::kConfig, "short_factor has 1 entries");
  expect("stablelm", R"("qk_layernorm": true)", ErrorKind::kUnsupported, "qk_layernorm");
  expect("cohere", R"("use_qk_norm": true)", ErrorKind::kUnsupported, "use_qk_norm");
  expect("phi3", R"("partial_rotary_factor": 0.1)", ErrorKind::kConfig, "partial_rotary_factor");
  expect("gemma2", R"("layer_types": ["full_attention", "chunked_attention", "full_attention", "full_attention"])",
         ErrorKind::kUnsupported, "layer_types[1]");
  expect("gemma2", R"("layer_types": ["full_attention"])", ErrorKind::kConfig, "layer_types");
  expect("gemma3_text", R"("use_bidirectional_attention": true)", ErrorKind::kUnsupported,
         "use_bidirectional_attention");
  expect("gemma2", R"("hidden_activation": "quick_gelu")", ErrorKind::kUnsupported, "hidden_activation");
  expect("mistral", R"("sliding_window": -3)", ErrorKind::kConfig, "sliding_window");
  expect("gemma2", R"("sliding_window": null)", ErrorKind::kConfig, "sliding_window");
  expect("gemma3_text", R"("rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6}})",
         ErrorKind::kConfig, "sliding_attention");
  expect("qwen3", R"("rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6}})",
         ErrorKind::kUnsupported, "per layer type");
  expect("opt", R"("ffn_dim": 64, "do_layer_norm_before": false)", ErrorKind::kUnsupported, "do_layer_norm_before");
  expect("opt", R"("ffn_dim": 64, "word_embed_proj_dim": 32)", ErrorKind::kUnsupported, "word_embed_proj_dim");
  expect("opt", "", ErrorKind::kConfig, "ffn_dim");
  expect("gpt_neox", R"("hidden_act": "gelu_10")", ErrorKind::kUnsupported, "hidden_act");
}

}  // namespace
}  // namespace gptq::config

namespace gptq::config {
namespace {

TEST(FamilyKeys, Gpt2Refusals) {
  for (const char* key : {"scale_attn_by_inverse_layer_idx", "add_cross_attention"}) {
    const std::string text = std::string(R"({"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 4,
        "vocab_size": 10, ")") + key + R"(": true})";
    try {
      parse_model_config(text, "fam/config.json");
      ADD_FAILURE() << "accepted " << key;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
  const auto g = parse_model_config(R"({"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 4,
      "vocab_size": 10, "scale_attn_weights": false})", "fam/config.json");
  EXPECT_EQ(g.attn_scale, 1.0);
}

}  // namespace
}  // namespace gptq::config
