// What a CausalLM holds. Internal to the library: src/api implements CausalLM on it; tests reach it
// through api::impl().
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "gptq/model.h"
#include "checkpoint/gptq_checkpoint.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/weights.h"

namespace gptq {

struct CausalLM::Impl {
  std::filesystem::path dir;
  config::ModelConfig cfg;
  std::unique_ptr<model::Decoder> decoder;
  std::unique_ptr<io::TensorStore> store;  // mapped files; weights are copied out of them
  model::ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
  QuantizeConfig qcfg;
  // Filled by quantize(): packed linears and the report of each layer.
  std::vector<std::vector<checkpoint::PackedLinear>> packed;
  std::vector<ModuleReport> reports;
  int threads = 0;
  // Set when quantize() stopped part-way (an error, or an interrupt): some blocks hold quantized
  // weights and others not, so every later call refuses with this reason instead of running a
  // half-quantized model.
  std::string unusable;

  // Throws Error(kArgument) with `unusable` when it is set.
  void check_usable() const;
};

namespace api {
// The library's own way in to a model's state (not part of the public API).
struct Access {
  static CausalLM::Impl& impl(CausalLM& m) { return *m.impl_; }
  static const CausalLM::Impl& impl(const CausalLM& m) { return *m.impl_; }
};
inline CausalLM::Impl& impl(CausalLM& m) { return Access::impl(m); }
inline const CausalLM::Impl& impl(const CausalLM& m) { return Access::impl(m); }
}  // namespace api

}  // namespace gptq
