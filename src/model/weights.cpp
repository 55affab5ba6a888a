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

std::array<int64_t, 2> linear_shape(const config::ModelConfig& c, const arch::ArchDesc& desc, arch::Role r) {
  const arch::FusedDesc* f = desc.fused_of(r);
  if (!f) return linear_shape(c, r);
  std::array<int64_t, 2> s{0, linear_shape(c, f->roles.front())[1]};
  for (arch::Role p : f->roles) s[0] += linear_shape(c, p)[0];
  return s;
}

namespace {

// "<module>.weight" [n, k] (and "<module>.bias" [n] when `bias`) as a dense Linear: the weight
// in 16 bits when asked for and stored so (the bias always fp32), else fp32.
// [rows, cols] -> [cols, rows].
template <typename T>
std::vector<T> transposed(const std::vector<T>& a, int64_t rows, int64_t cols) {
  std::vector<T> b(a.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) b[static_cast<size_t>(c * rows + r)] = a[static_cast<size_t>(r * cols + c)];
  }
  return b;
}

// conv1d: GPT-2's Conv1D stores the weight as [k, n]; it is transposed to [n, k] here.
Linear load_dense(const io::TensorStore& store, const std::string& module, int64_t n, int64_t k,
                  bool bias, DenseStorage dense, bool conv1d = false) {
  const std::string name = module + ".weight";
  const io::TensorInfo& t = store.get(name);
  const bool keep16 =
      dense == DenseStorage::kStored && (t.dtype == DType::kBF16 || t.dtype == DType::kF16);
  std::vector<float> w;
  std::vector<uint16_t> w16;
  if (keep16) {
    w16 = conv1d ? transposed(store.read_16bit(name, {k, n}), k, n) : store.read_16bit(name, {n, k});
  } else {
    w = conv1d ? transposed(store.read_f32(name, {k, n}), k, n) : store.read_f32(name, {n, k});
  }
  std::vector<float> b;
  if (bias) b = store.read_f32(module + ".bias", {n});
  if (keep16) return Linear::dense16(n, k, t.dtype, std::move(w16), std::move(b));
  return Linear::dense(n, k, std::move(w), std::move(b));
}

}  // namespace

std::vector<std::pair<std::string, int64_t>> split_parts(const io::TensorStore& store, const config::ModelConfig& cfg,
                                                         const arch::ArchDesc& desc, int layer, arch::Role r) {
  const arch::FusedDesc* f = desc.fused_of(r);
  if (!cfg.quant || !f || f->split_names.empty() || f->roles.front() != r) return {};
  const std::string fused = desc.block_module(layer, f->name);
  if (store.find(fused + ".qweight") || store.find(fused + ".weight")) return {};
  std::vector<std::pair<std::string, int64_t>> parts;
  for (size_t i = 0; i < f->roles.size(); ++i) {
    parts.emplace_back(desc.block_module(layer, f->split_names[i]), linear_shape(cfg, f->roles[i])[0]);
  }
  if (!store.find(parts.front().first + ".qweight")) return {};
  return parts;
}

BlockWeights load_block(const io::TensorStore& store, const config::ModelConfig& cfg,
                        const arch::ArchDesc& desc, int layer, bool dequantize_quantized,
                        DenseStorage dense) {
  BlockWeights b;
  for (const auto& sl : desc.sublayers) {
    b.norms.push_back(sl.norm.empty()
                          ? std::vector<float>{}
                          : store.read_f32(desc.block_module(layer, sl.norm) + ".weight", {cfg.hidden_size}));
    if (desc.norm == arch::NormKind::kLayer && desc.norm_bias) {
      b.norm_biases.push_back(store.read_f32(desc.block_module(layer, sl.norm) + ".bias", {cfg.hidden_size}));
    }
    b.post_norms.push_back(sl.post_norm.empty()
                               ? std::vector<float>{}
                               : store.read_f32(desc.block_module(layer, sl.post_norm) + ".weight", {cfg.hidden_size}));
  }
  // Per head ([head_dim]), or over the whole projection (OLMo 2: [heads * head_dim]).
  const int64_t qn = desc.qk_norm_full ? cfg.num_attention_heads * cfg.head_dim : cfg.head_dim;
  const int64_t kn = desc.qk_norm_full ? cfg.num_key_value_heads * cfg.head_dim : cfg.head_dim;
  if (!desc.q_norm.empty()) b.q_norm = store.read_f32(desc.block_module(layer, desc.q_norm) + ".weight", {qn});
  if (!desc.k_norm.empty()) b.k_norm = store.read_f32(desc.block_module(layer, desc.k_norm) + ".weight", {kn});
  for (const auto& ld : desc.linears) {
    const auto [n, k] = linear_shape(cfg, desc, ld.role);
    const std::string module = desc.block_module(layer, ld.name);
    if (const auto parts = split_parts(store, cfg, desc, layer, ld.role); !parts.empty()) {
      b.at(ld.role) = load_quantized_parts(store, module, parts, k, *cfg.quant, dequantize_quantized);
      continue;
    }
    if (cfg.quant && store.find(module + ".qweight")) {
      // Each linear with its own scheme: the first matching "dynamic" rule over the base config.
      const config::ModuleScheme sc = cfg.quant->scheme_for(module);
      if (!sc.quantized) {
        throw Error(ErrorKind::kConfig,
                    fmt::format("{}: {} has quantized tensors but the dynamic rule \"{}\" says it is not quantized",
                                store.dir().string(), module, cfg.quant->dynamic[sc.rule].key));
      }
      b.at(ld.role) = load_quantized_linear(store, module, n, k, cfg.quant->for_module(module), dequantize_quantized);
      continue;
    }
    if (!store.find(module + ".weight") && store.find(module + ".qweight")) {
      throw Error(ErrorKind::kConfig,
                  fmt::format("{}: {} is quantized but config.json has no quantization_config "
                              "(and there is no quantize_config.json)",
                              store.dir().string(), module));
    }
    b.at(ld.role) = load_dense(store, module, n, k, ld.bias, dense, desc.conv1d_weights);
  }
  return b;
}

std::vector<float> load_positions(const io::TensorStore& store, const config::ModelConfig& cfg,
                                  const arch::ArchDesc& desc) {
  if (desc.positions != arch::Positions::kLearned) return {};
  return store.read_f32(desc.position_embed + ".weight",
                        {cfg.max_position_embeddings + desc.position_offset, cfg.hidden_size});
}

void load_globals(const io::TensorStore& store, const config::ModelConfig& cfg, const arch::ArchDesc& desc,
                  ModelWeights* w, DenseStorage dense) {
  w->embed = load_dense(store, desc.embed, cfg.vocab_size, cfg.hidden_size, false, dense);
  w->positions = load_positions(store, cfg, desc);
  w->final_norm = store.read_f32(desc.final_norm + ".weight", {cfg.hidden_size});
  if (desc.norm == arch::NormKind::kLayer && desc.norm_bias) w->final_norm_bias = store.read_f32(desc.final_norm + ".bias", {cfg.hidden_size});
  const bool has_head = store.find(desc.lm_head + ".weight") != nullptr;
  if (has_head) {
    // A tied model may still store a copy; we use it either way (it equals the embedding then).
    w->lm_head = load_dense(store, desc.lm_head, cfg.vocab_size, cfg.hidden_size, false, dense);
  } else if (!cfg.tie_word_embeddings) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: tensor \"{}.weight\" is missing, and config.json does not set "
                            "tie_word_embeddings",
                            store.dir().string(), desc.lm_head));
  }
}

}  // namespace gptq::model
