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
            "num_attention_heads": 4, "vocab_size": 10, "hidden_act": "gelu"})", ErrorKind::kUnsupported, "gelu");
}

}  // namespace
}  // namespace gptq::config
