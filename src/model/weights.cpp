#include "model/weights.h"

#include <fmt/format.h>

#include "gptq/error.h"

namespace gptq::model {

std::array<int64_t, 2> linear_shape(const config::ModelConfig& c, arch::Role r) {
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  switch (r) {
    case arch::Role::kQ: return {q, c.hidden_size};
    case arch::Role::kK:
    case arch::Role::kV: return {kv, c.hidden_size};
    case arch::Role::kO: return {c.hidden_size, q};
    case arch::Role::kGate:
    case arch::Role::kUp: return {c.intermediate_size, c.hidden_size};
    case arch::Role::kDown: return {c.hidden_size, c.intermediate_size};
  }
  return {0, 0};
}

BlockWeights load_block(const io::TensorStore& store, const config::ModelConfig& cfg,
                        const arch::ArchDesc& desc, int layer, bool dequantize_quantized) {
  BlockWeights b;
  for (const auto& sl : desc.sublayers) {
    b.norms.push_back(store.read_f32(desc.block_module(layer, sl.norm) + ".weight", {cfg.hidden_size}));
  }
  for (const auto& ld : desc.linears) {
    const auto [n, k] = linear_shape(cfg, ld.role);
    const std::string module = desc.block_module(layer, ld.name);
    if (cfg.quant && store.find(module + ".qweight")) {
      b.at(ld.role) = load_quantized_linear(store, module, n, k, *cfg.quant, dequantize_quantized);
      continue;
    }
    if (!store.find(module + ".weight") && store.find(module + ".qweight")) {
      throw Error(ErrorKind::kConfig,
                  fmt::format("{}: {} is quantized but config.json has no quantization_config "
                              "(and there is no quantize_config.json)",
                              store.dir().string(), module));
    }
    std::vector<float> w = store.read_f32(module + ".weight", {n, k});
    std::vector<float> bias;
    if (ld.bias) bias = store.read_f32(module + ".bias", {n});
    b.at(ld.role) = Linear::dense(n, k, std::move(w), std::move(bias));
  }
  return b;
}

void load_globals(const io::TensorStore& store, const config::ModelConfig& cfg, const arch::ArchDesc& desc,
                  ModelWeights* w) {
  w->embed = store.read_f32(desc.embed + ".weight", {cfg.vocab_size, cfg.hidden_size});
  w->final_norm = store.read_f32(desc.final_norm + ".weight", {cfg.hidden_size});
  const bool has_head = store.find(desc.lm_head + ".weight") != nullptr;
  if (has_head) {
    // A tied model may still store a copy; we use it either way (it equals the embedding then).
    w->lm_head = store.read_f32(desc.lm_head + ".weight", {cfg.vocab_size, cfg.hidden_size});
  } else if (!cfg.tie_word_embeddings) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: tensor \"{}.weight\" is missing, and config.json does not set "
                            "tie_word_embeddings",
                            store.dir().string(), desc.lm_head));
  }
}

}  // namespace gptq::model
