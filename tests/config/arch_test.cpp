// Architecture descriptions: the registry (one list of model types), the bias rules, the
// shared-input and true-sequential groups the pipeline and executor read, and the consistency
// checks, including hand-made descriptions with the fields later families need.
#include <gtest/gtest.h>

#include <string>

#include "arch/arch.h"
#include "config/model_config.h"
#include "gptq/error.h"

namespace gptq::arch {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Arch, RegistryIsTheListConfigAccepts) {
  const auto types = supported_model_types();
  ASSERT_EQ(types, (std::vector<std::string>{"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2",
                                              "gemma3_text", "gpt_neox", "opt", "gpt2", "starcoder2", "granite",
                                              "olmo2", "stablelm", "cohere"}));
  for (const auto& t : types) {
    EXPECT_TRUE(is_supported(t));
    const auto d = describe(t, {}, "x/config.json");
    EXPECT_EQ(d.model_type, t);
    // Fused q/k/v (Phi-3, GPT-NeoX, GPT-2), fused gate/up (Phi-3), plain MLPs (GPT-NeoX, OPT, GPT-2).
    EXPECT_EQ(d.linears.size(),
              t == "phi3" || t == "gpt_neox" || t == "gpt2" ? 4u : t == "opt" || t == "starcoder2" ? 6u : 7u);
  }
  EXPECT_FALSE(is_supported("gpt_bigcode"));
  const std::string msg = error_of([] { describe("gpt_bigcode", {}, "x/config.json"); });
  EXPECT_NE(msg.find("x/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("llama, mistral, qwen2, qwen3"), std::string::npos) << msg;
  // config.json parsing rejects the same types with the same list.
  const std::string cmsg = error_of([] {
    config::parse_model_config(R"({"model_type": "gpt_bigcode"})", "y/config.json");
  });
  EXPECT_NE(cmsg.find("y/config.json"), std::string::npos) << cmsg;
  EXPECT_NE(cmsg.find("llama, mistral, qwen2"), std::string::npos) << cmsg;
}

TEST(Arch, BiasRules) {
  const auto llama = describe("llama", {.attention_bias = true, .mlp_bias = false}, "c");
  for (Role r : {Role::kQ, Role::kK, Role::kV, Role::kO}) EXPECT_TRUE(llama.linear(r).bias);
  for (Role r : {Role::kGate, Role::kUp, Role::kDown}) EXPECT_FALSE(llama.linear(r).bias);
  const auto mlp = describe("llama", {.attention_bias = false, .mlp_bias = true}, "c");
  EXPECT_FALSE(mlp.linear(Role::kQ).bias);
  EXPECT_TRUE(mlp.linear(Role::kDown).bias);
  // Qwen2: q/k/v always (whatever attention_bias says), o never.
  for (bool ab : {false, true}) {
    const auto q = describe("qwen2", {.attention_bias = ab}, "c");
    EXPECT_TRUE(q.linear(Role::kQ).bias);
    EXPECT_TRUE(q.linear(Role::kV).bias);
    EXPECT_FALSE(q.linear(Role::kO).bias);
    EXPECT_FALSE(q.linear(Role::kUp).bias);
  }
  const auto c = config::parse_model_config(R"({"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "max_position_embeddings": 8,
    "attention_bias": false})", "q/config.json");
  EXPECT_TRUE(c.arch.linear(Role::kK).bias);
}

TEST(Arch, SharedInputsAndOrder) {
  const auto d = describe("llama", {}, "c");
  EXPECT_EQ(d.input_slot(Role::kV), Role::kQ);
  EXPECT_EQ(d.input_slot(Role::kUp), Role::kGate);
  EXPECT_EQ(d.input_slot(Role::kO), Role::kO);
  EXPECT_EQ(d.shared_with(Role::kK), (std::vector<Role>{Role::kQ, Role::kK, Role::kV}));
  EXPECT_EQ(d.shared_with(Role::kDown), (std::vector<Role>{Role::kDown}));
  EXPECT_LT(d.input_order(Role::kK), d.input_order(Role::kO));
  EXPECT_LT(d.input_order(Role::kO), d.input_order(Role::kUp));
  EXPECT_LT(d.input_order(Role::kUp), d.input_order(Role::kDown));
  EXPECT_EQ(d.block_module(11, "mlp.up_proj"), "model.layers.11.mlp.up_proj");
  EXPECT_EQ(d.attention_kind(5), AttentionKind::kGlobal);
}

// A GPT-NeoX-shaped description: fused query_key_value, LayerNorm, parallel residual, plain MLP.
ArchDesc neox_like() {
  ArchDesc d;
  d.model_type = "neox-like";
  d.embed = "gpt_neox.embed_in";
  d.final_norm = "gpt_neox.final_layer_norm";
  d.lm_head = "embed_out";
  d.block_prefix = "gpt_neox.layers.{layer}.";
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm", ""}, {SublayerKind::kMlp, "post_attention_layernorm", ""}};
  // The fused tensor is the linear of its first role; k and v have none of their own.
  d.linears = {{Role::kQ, "attention.query_key_value", true}, {Role::kO, "attention.dense", true},
               {Role::kUp, "mlp.dense_h_to_4h", true}, {Role::kDown, "mlp.dense_4h_to_h", true}};
  d.shared_inputs = {{Role::kQ}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.fused = {{"attention.query_key_value", {Role::kQ, Role::kK, Role::kV}}};
  d.norm = NormKind::kLayer;
  d.activation = Activation::kGelu;
  d.parallel_residual = true;
  return d;
}

TEST(Arch, HandMadeDescriptionsValidate) {
  EXPECT_NO_THROW(neox_like().validate());
  ArchDesc g = describe("llama", {}, "c");  // Gemma 2-shaped: +1 norms, post-norms, alternating attention
  g.model_type = "gemma2-like";
  g.norm_weight_offset = 1.0f;
  g.activation = Activation::kGeluTanh;
  g.scale_embedding = true;
  g.sublayers[0].post_norm = "post_attention_layernorm";
  g.sublayers[1] = {SublayerKind::kGatedMlp, "pre_feedforward_layernorm", "post_feedforward_layernorm"};
  g.attention_pattern = {AttentionKind::kSliding, AttentionKind::kGlobal};
  EXPECT_NO_THROW(g.validate());
  EXPECT_EQ(g.attention_kind(0), AttentionKind::kSliding);
  EXPECT_EQ(g.attention_kind(3), AttentionKind::kGlobal);
  EXPECT_EQ(g.attention_kind(4), AttentionKind::kSliding);
  ArchDesc opt = neox_like();  // OPT-shaped: learned positions with an offset of 2
  opt.parallel_residual = false;
  opt.fused.clear();
  opt.positions = Positions::kLearned;
  opt.position_embed = "model.decoder.embed_positions";
  opt.position_offset = 2;
  EXPECT_NO_THROW(opt.validate());
}

TEST(Arch, ContradictionsAreRejected) {
  auto expect_bad = [](ArchDesc d, const char* what) {
    const std::string msg = error_of([&] { d.validate(); });
    EXPECT_NE(msg.find(what), std::string::npos) << "got: " << msg;
    EXPECT_NE(msg.find(d.model_type), std::string::npos) << msg;
  };
  ArchDesc d = neox_like();
  d.sequential_groups.push_back({Role::kO});
  expect_bad(d, "two sequential groups");
  d = neox_like();
  d.sequential_groups.pop_back();
  expect_bad(d, "down is in no sequential group");
  d = describe("llama", {}, "c");
  d.sequential_groups = {{Role::kQ, Role::kK}, {Role::kV}, {Role::kO}, {Role::kGate, Role::kUp}, {Role::kDown}};
  expect_bad(d, "across sequential groups");
  d = neox_like();
  d.fused = {{"attention.query_key_value", {Role::kQ, Role::kK, Role::kV, Role::kO}}};
  expect_bad(d, "different inputs");
  d = neox_like();
  d.fused = {{"attention.qkv", {Role::kQ, Role::kK, Role::kV}}};
  expect_bad(d, "not the linear of its first role");
  d = neox_like();
  d.linears.push_back({Role::kK, "attention.k", true});
  d.sequential_groups[0].push_back(Role::kK);
  d.shared_inputs[0].push_back(Role::kK);
  expect_bad(d, "also has a linear of its own");
  d = neox_like();
  d.shared_inputs.push_back({Role::kGate});
  expect_bad(d, "gate, which the block lacks");
  d = neox_like();
  d.positions = Positions::kLearned;
  expect_bad(d, "without a position table");
  d = neox_like();
  d.position_offset = 2;
  expect_bad(d, "offset with RoPE");
  d = neox_like();
  d.norm_weight_offset = 1.0f;
  expect_bad(d, "offset on LayerNorm");
}

}  // namespace
}  // namespace gptq::arch
