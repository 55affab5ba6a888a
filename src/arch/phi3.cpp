// Phi-3 and Phi-4-mini: the Llama block with q/k/v fused into self_attn.qkv_proj and gate/up into
// mlp.gate_up_proj (each quantized as one linear; GPTQModel's split gate/up folders load too), no biases, partial rotary
// (partial_rotary_factor, Phi-4-mini 0.75), LongRoPE (Phi-3.5-mini, Phi-4-mini; "su" and "yarn"
// are older names for it), and a sliding window on every layer when the config sets one.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_phi3(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kNone, BiasRule::kNone, BiasRule::kNone);
  d.linears = {{Role::kQ, "self_attn.qkv_proj", false},
               {Role::kO, "self_attn.o_proj", false},
               {Role::kGate, "mlp.gate_up_proj", false},
               {Role::kDown, "mlp.down_proj", false}};
  // GPTQModel 7.7 quantizes mlp.gate_up_proj as two modules (its defuser splits Phi3MLP), so
  // its folders hold mlp.gate_proj and mlp.up_proj; ours keep the model's own fused layout.
  d.fused = {{"self_attn.qkv_proj", {Role::kQ, Role::kK, Role::kV}},
             {"mlp.gate_up_proj", {Role::kGate, Role::kUp}, false, {"mlp.gate_proj", "mlp.up_proj"}}};
  d.shared_inputs = {{Role::kQ}, {Role::kO}, {Role::kGate}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ}, {Role::kO}, {Role::kGate}, {Role::kDown}};
  d.keys.sliding = SlidingRule::kEveryLayer;
  d.keys.partial_rotary = true;
  d.keys.longrope_aliases = true;
  d.keys.default_original_max_positions = 4096;  // Phi3Config's class default
  return d;
}

}  // namespace gptq::arch
