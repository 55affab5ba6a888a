#include <fmt/format.h>

#include <filesystem>
#include <set>

#include "arch/arch.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "gptq/runtime.h"
#include "api/causal_lm_impl.h"
#include "pipeline/head_quant.h"

namespace gptq {

CausalLM::CausalLM(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CausalLM::CausalLM(CausalLM&&) noexcept = default;
CausalLM& CausalLM::operator=(CausalLM&&) noexcept = default;
CausalLM::~CausalLM() = default;

CausalLM CausalLM::from_pretrained(const std::filesystem::path& dir, const LoadOptions& opts) {
  return from_pretrained(dir, QuantizeConfig{}, opts);
}

CausalLM CausalLM::from_pretrained(const std::filesystem::path& dir, const QuantizeConfig& qcfg,
                                   const LoadOptions& opts) {
  if (!std::filesystem::is_directory(dir)) {
    throw Error(ErrorKind::kIo, fmt::format("{}: not a folder (expected a Hugging Face model folder)", dir.string()));
  }
  if (opts.lm_head_bits != 0 && opts.lm_head_bits != 8) {
    throw Error(ErrorKind::kArgument,
                fmt::format("lm_head bits must be 0 (as stored) or 8, got {}", opts.lm_head_bits));
  }
  validate_quantize_config(qcfg);
  core::set_num_threads(opts.threads);
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->qcfg = qcfg;
  impl->threads = opts.threads;
  impl->cfg = config::load_model_config(dir);
  backend::Device device = backend::Device::kCpu;
  switch (opts.device) {
    case Device::kCpu: device = backend::Device::kCpu; break;
  }
  impl->decoder = std::make_unique<model::Decoder>(impl->cfg, impl->cfg.arch, device);
  impl->tokenizer.emplace(Tokenizer::from_dir(dir));
  if (impl->tokenizer->vocab_size() > impl->cfg.vocab_size) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: tokenizer.json has ids up to {} but config.json says vocab_size = {}",
                            dir.string(), impl->tokenizer->vocab_size() - 1, impl->cfg.vocab_size));
  }
  impl->store = std::make_unique<io::TensorStore>(io::TensorStore::open_dir(dir));
  const auto& desc = impl->decoder->desc();
  // Inference keeps dense weights stored as BF16/F16 in 16 bits (a decode step is bound by the
  // bytes of weights it reads); quantize() widens each block to fp32 before solving it.
  model::load_globals(*impl->store, impl->cfg, desc, &impl->weights, model::DenseStorage::kStored);
  if (opts.lm_head_bits == 8) {
    model::Linear head = impl->weights.head();  // a copy: the embedding stays for lookups
    head.widen_to_fp32();
    impl->weights.lm_head = model::Linear(
        pipeline::round_to_8bit(head.weight().data(), head.n(), head.k(), desc.lm_head + " (8-bit copy)"));
  }
  const int64_t L = impl->cfg.num_hidden_layers;
  impl->weights.blocks.reserve(L);
  for (int64_t l = 0; l < L; ++l) {
    impl->weights.blocks.push_back(model::load_block(*impl->store, impl->cfg, desc, static_cast<int>(l),
                                                     opts.dequantize, model::DenseStorage::kStored));
    if (opts.progress) opts.progress({"load", l + 1, L, fmt::format("layer {}", l)});
    check_interrupt();
  }
  return CausalLM(std::move(impl));
}

void CausalLM::Impl::check_usable() const {
  if (!unusable.empty()) throw Error(ErrorKind::kArgument, unusable);
}

const Tokenizer& CausalLM::tokenizer() const { return *impl_->tokenizer; }

int64_t CausalLM::context_length() const { return impl_->cfg.max_position_embeddings; }

std::vector<float> CausalLM::logits(const std::vector<int32_t>& ids) const {
  impl_->check_usable();
  const auto& dec = *impl_->decoder;
  const int64_t t = static_cast<int64_t>(ids.size());
  if (t == 0) return {};
  if (t > context_length()) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{} tokens exceed the model's context of {}", t, context_length()));
  }
  auto cache = dec.make_cache(t);
  std::vector<float> out(static_cast<size_t>(t * impl_->cfg.vocab_size));
  dec.forward(impl_->weights, ids.data(), t, cache, t, out.data());
  return out;
}

ModelInfo CausalLM::info() const {
  const auto& c = impl_->cfg;
  ModelInfo m;
  m.model_type = c.model_type;
  m.architecture = c.architectures.empty() ? "" : c.architectures[0];
  m.layers = c.num_hidden_layers;
  m.hidden = c.hidden_size;
  m.intermediate = c.intermediate_size;
  m.heads = c.num_attention_heads;
  m.kv_heads = c.num_key_value_heads;
  m.head_dim = c.head_dim;
  m.vocab = c.vocab_size;
  m.max_positions = c.max_position_embeddings;
  m.tied_embeddings = c.tie_word_embeddings;
  std::set<std::string> dtypes;
  for (const auto& f : impl_->store->files()) {
    m.file_bytes += std::filesystem::file_size(f->path());
    for (const auto& t : f->tensors()) {
      dtypes.insert(std::string(dtype_name(t.dtype)));
      if (t.name.ends_with(".qweight") && c.quant && t.shape.size() == 2) {
        m.parameters += t.shape[0] * 32 / c.quant->bits * t.shape[1];  // [K*b/32, N] holds N*K weights
        ++m.quantized_linears;
        continue;
      }
      if (t.name.ends_with(".qzeros") || t.name.ends_with(".scales") || t.name.ends_with(".g_idx")) continue;
      m.parameters += t.numel();
    }
  }
  for (const auto& b : impl_->weights.blocks) {
    for (const auto& l : b.linears) {
      if (!l.empty()) ++m.dense_linears;  // a fused tensor's other roles are empty
    }
  }
  m.dense_linears -= m.quantized_linears;
  std::string dt;
  for (const auto& d : dtypes) dt += (dt.empty() ? "" : "+") + d;
  m.dtype = dt;
  if (c.quant) {
    m.quantized = true;
    m.bits = c.quant->bits;
    m.group_size = c.quant->group_size;
    m.desc_act = c.quant->desc_act;
    m.sym = c.quant->sym;
    m.checkpoint_format = c.quant->checkpoint_format;
  }
  return m;
}

}  // namespace gptq
