// An architecture is a description, not a forward pass: tensor names, the quirks that change the
// maths (biases, norms, activation, positions), the block as an ordered list of sublayers, which
// linears share an input, and the order in which GPTQ quantizes the block's linears. It is the
// single source of these facts: config parsing (the supported model types, the bias rules), the
// executor (src/model), the quantization pipeline, the checkpoint writer and tools/synth all read
// it. arch depends on core only, so config can resolve a description while it parses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gptq::arch {

// What a linear does in the block; the executor wires it by role.
enum class Role { kQ, kK, kV, kO, kGate, kUp, kDown };
std::string_view role_name(Role r);

// Where a linear's bias comes from.
enum class BiasRule {
  kNone,           // never
  kAlways,         // always present (Qwen2's q/k/v)
  kAttentionBias,  // present when config.json's attention_bias is true
  kMlpBias,        // present when config.json's mlp_bias is true
};

struct LinearDesc {
  Role role;
  std::string name;  // module path inside the block, e.g. "self_attn.q_proj"
  bool bias = false;
};

enum class SublayerKind {
  kAttention,  // self-attention: q/k/v projections, attention, o
  kGatedMlp,   // down(act(gate(x)) * up(x))
  kMlp,        // down(act(up(x))) (GPT-2, OPT, GPT-NeoX: `up` is the first linear)
};

enum class NormKind { kRms, kLayer };  // RMSNorm (weight only) or LayerNorm (weight and bias)
enum class Activation { kSilu, kGelu, kGeluTanh, kRelu };
enum class Positions { kRope, kLearned };           // RoPE, or a learned absolute-position table
enum class RopeStyle { kRotateHalf, kInterleaved };  // HF rotate_half pairs (i, i+d/2) / GPT-J (2i, 2i+1)
enum class AttentionKind { kGlobal, kSliding };

// One sublayer: x = x + post_norm(f(norm(x))) (post_norm only where named: Gemma 2/3, OLMo 2).
struct SublayerDesc {
  SublayerKind kind;
  std::string norm;       // norm weight inside the block, e.g. "input_layernorm"; empty: none (OLMo 2)
  std::string post_norm;  // empty: none
};

// Several roles stored as one checkpoint tensor, split by rows in `roles` order (Phi-3 qkv_proj
// and gate_up_proj, GPT-NeoX query_key_value, GPT-2 c_attn). The block holds it as one linear,
// listed in `linears` under the first role with the fused module name (the other roles have no
// linear of their own): GPTQ quantizes it as one linear, as GPTQModel does, and the executor
// splits its output rows.
struct FusedDesc {
  std::string name;  // module path inside the block, e.g. "self_attn.qkv_proj"
  std::vector<Role> roles;
  // false: the parts one after the other ([q; k; v]); true: per head ([heads, parts, head_dim],
  // GPT-NeoX's query_key_value).
  bool per_head = false;
  // The modules (one per role, inside the block) of a checkpoint that stores the parts apart,
  // e.g. GPTQModel 7.7 splits Phi-3's mlp.gate_up_proj into mlp.gate_proj and mlp.up_proj before
  // quantizing them. Read (and joined along the outputs) when the fused module is absent; empty:
  // no such layout. Only for parts one after the other.
  std::vector<std::string> split_names = {};
};

// How a family's config.json chooses sliding-window layers.
enum class SlidingRule {
  kNone,        // never (a sliding_window key is not read)
  kEveryLayer,  // every layer when sliding_window is set (Mistral, Phi-3)
  kQwen,        // layers >= max_window_layers when use_sliding_window (Qwen2/3), or layer_types
  kPattern,     // attention_pattern, or sliding_window_pattern / layer_types (Gemma 2/3)
};

// The config.json keys a family reads beyond the common ones, with transformers' class defaults
// for absent keys. Keys a family does not read are ignored, as transformers ignores them.
struct ConfigKeys {
  // Names of the size keys (GPT-2: n_embd, n_inner, n_layer, n_head, n_positions; OPT: ffn_dim).
  const char* hidden_size = "hidden_size";
  const char* intermediate_size = "intermediate_size";  // GPT-2's n_inner: null means 4 * hidden
  const char* num_layers = "num_hidden_layers";
  const char* num_heads = "num_attention_heads";
  const char* max_positions = "max_position_embeddings";
  const char* bias = "attention_bias";      // OPT: "enable_bias"
  const char* activation = "hidden_act";    // Gemma 2/3: "hidden_activation"
  const char* norm_eps = "rms_norm_eps";    // GPT-NeoX: "layer_norm_eps"; empty: no key (OPT)
  double default_norm_eps = 1e-6;
  bool default_attention_bias = false;      // attention_bias when absent (GPT-NeoX: true)
  bool parallel_residual_key = false;       // use_parallel_residual (GPT-NeoX; default true)
  bool default_parallel_residual = true;    // use_parallel_residual when absent (StableLM: false)
  bool parallel_shares_norm = false;        // StableLM: a parallel block's MLP reads the attention's norm
  bool neox_rope_keys = false;              // transformers 4's rotary_pct and rotary_emb_base
  bool opt_layout = false;                  // OPT: do_layer_norm_before, word_embed_proj_dim, ... (refused unless plain)
  bool gpt2_attention = false;              // GPT-2: scale_attn_weights, scale_attn_by_inverse_layer_idx
  SlidingRule sliding = SlidingRule::kNone;
  int64_t default_sliding_window = 0;       // absent key (0: none)
  bool softcapping = false;                 // attn_logit_softcapping, final_logit_softcapping
  double default_attn_softcap = 0, default_final_softcap = 0;
  bool query_pre_attn_scalar = false;       // attention scale query_pre_attn_scalar^-0.5
  bool partial_rotary = false;              // partial_rotary_factor (top level or in rope_parameters)
  double default_partial_rotary = 1.0;      // when absent (GPT-NeoX: 0.25)
  bool local_rope = false;                  // Gemma 3: a second RoPE for sliding layers
  bool longrope_aliases = false;            // Phi-3: rope_type "su" and "yarn" mean longrope
  int64_t default_original_max_positions = 0;  // original_max_position_embeddings when absent (0: none; Phi-3 4096)
  bool bidirectional = false;               // use_bidirectional_attention (refused when true)
  bool granite_multipliers = false;         // embedding_multiplier, residual_multiplier, attention_multiplier, logits_scaling
  bool logit_scale = false;                 // Cohere: logits times logit_scale (default 0.0625)
  std::vector<const char*> refused_if_true;  // boolean keys whose true value is refused (unsupported maths)
  bool default_tied = false;                // tie_word_embeddings when absent (transformers' class default)
};

struct ArchDesc {
  std::string model_type;
  // Tensor names (module paths; ".weight"/".bias" are appended).
  std::string embed = "model.embed_tokens";  // [vocab, hidden]
  std::string final_norm = "model.norm";     // [hidden]
  std::string lm_head = "lm_head";           // [vocab, hidden]; absent when tied
  std::string block_prefix = "model.layers.{layer}.";
  std::vector<SublayerDesc> sublayers;
  std::vector<LinearDesc> linears;  // every linear of a block
  // Linears that read the same input, each group in the order the executor reaches it. A role in
  // no group reads an input of its own.
  std::vector<std::vector<Role>> shared_inputs;
  // GPTQ's true-sequential groups: each group's inputs are collected after the previous groups
  // were quantized (SPEC §3).
  std::vector<std::vector<Role>> sequential_groups;

  // Maths that differ between families (defaults: Llama).
  NormKind norm = NormKind::kRms;
  bool norm_bias = true;            // LayerNorm with a bias (Cohere's has none)
  float norm_weight_offset = 0.0f;  // Gemma stores w - 1: the norm multiplies by (offset + w)
  Activation activation = Activation::kSilu;
  bool scale_embedding = false;     // Gemma: embeddings times sqrt(hidden)
  std::string q_norm, k_norm;       // per-head RMSNorm over head_dim inside the block (Qwen3, Gemma 3)
  bool qk_norm_full = false;        // OLMo 2: q/k norms over the whole projection (heads * head_dim)
  std::vector<FusedDesc> fused;     // fused checkpoint tensors (empty: one tensor per linear)
  bool conv1d_weights = false;      // GPT-2 Conv1D: linears stored transposed, [in, out]
  bool parallel_residual = false;   // GPT-NeoX: x + attn(norm1(x)) + mlp(norm2(x))
  Positions positions = Positions::kRope;
  std::string position_embed;       // learned positions: the table's module path
  int64_t position_offset = 0;      // learned positions: row of position 0 (OPT: 2)
  RopeStyle rope_style = RopeStyle::kRotateHalf;
  // Per-layer attention: layer l uses attention_pattern[l % size]; empty means all global.
  std::vector<AttentionKind> attention_pattern;
  ConfigKeys keys;

  // The fused tensor carrying r, or null (r has a linear of its own, or none).
  const FusedDesc* fused_of(Role r) const;

  const LinearDesc& linear(Role r) const;
  bool has(Role r) const;
  // "model.layers.3.self_attn.q_proj"
  std::string block_module(int layer, const std::string& name) const;
  // The first role of r's shared-input group (r itself when it reads an input of its own): the
  // role under which the executor reports that input.
  Role input_slot(Role r) const;
  // The order in which the executor reaches r's input within a block (0, 1, ...).
  int input_order(Role r) const;
  // The index in `sublayers` of the sublayer that runs r (-1 when none does).
  int sublayer_of(Role r) const;
  // The group of roles that read r's input, in executor order.
  std::vector<Role> shared_with(Role r) const;
  AttentionKind attention_kind(int64_t layer) const;
  // Throws Error(kArgument) naming the model type when the description contradicts itself: a
  // role listed twice or never in the sequential groups, a shared-input or fused group with a
  // role the block lacks or split across sequential groups, learned positions without a table.
  void validate() const;
};

// What a config.json says that a description depends on.
struct ArchOptions {
  bool attention_bias = false;  // the "attention_bias" key
  bool mlp_bias = false;        // the "mlp_bias" key
};

// Every model_type gptq.cpp runs, in registry order.
std::vector<std::string> supported_model_types();
bool is_supported(std::string_view model_type);
// The description of a model type. Throws Error(kUnsupported) naming `origin` (the config file)
// and listing the supported types.
ArchDesc describe(std::string_view model_type, const ArchOptions& opts, std::string_view origin);

}  // namespace gptq::arch
