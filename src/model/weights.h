// Weights of a decoder model, loaded from a TensorStore according to an architecture
// description. Blocks can be loaded one at a time (calibration streams them from the mmap).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "arch/arch.h"
#include "config/model_config.h"
#include "io/safetensors.h"
#include "model/linear.h"

namespace gptq::model {

inline constexpr int kNumRoles = 7;
inline int role_index(arch::Role r) { return static_cast<int>(r); }

struct BlockWeights {
  std::vector<std::vector<float>> norms;       // one per sublayer, each [hidden]
  std::vector<std::vector<float>> norm_biases; // LayerNorm: one per sublayer, each [hidden]; else empty
  std::vector<std::vector<float>> post_norms;  // one per sublayer, each [hidden] or empty (none)
  std::vector<float> q_norm, k_norm;           // [hd] each, or empty (no q/k norms)
  std::array<Linear, kNumRoles> linears;   // by role: q [H*hd, hidden], k/v [KV*hd, hidden],
                                           // o [hidden, H*hd], gate/up [inter, hidden],
                                           // down [hidden, inter]; a fused tensor sits under its
                                           // first role ([sum of the parts' N, K]) and its other
                                           // roles stay empty
  Linear& at(arch::Role r) { return linears[role_index(r)]; }
  const Linear& at(arch::Role r) const { return linears[role_index(r)]; }
};

// How dense weights stored as BF16 or F16 are held once loaded. F32 (and F64) tensors always
// become fp32; quantized linears are unaffected.
enum class DenseStorage {
  kFp32,    // widened to fp32: what the quantizer's solver and calibration work on
  kStored,  // kept in the stored 16-bit dtype (inference: a decode step reads half the bytes)
};

struct ModelWeights {
  Linear embed;                   // [vocab, hidden], dense (fp32 or 16-bit); rows are looked up
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> final_norm_bias;  // [hidden] for LayerNorm, else empty
  std::vector<float> positions;   // learned positions: [max_positions + offset, hidden], else empty
  Linear lm_head;                 // [vocab, hidden], dense; empty when tied to embed
  std::vector<BlockWeights> blocks;

  // The logits projection: lm_head, or the embedding when tied. head().forward(x, rows, logits).
  const Linear& head() const { return lm_head.empty() ? embed : lm_head; }
};

// Expected [N, K] of one role's part of a linear, from the config.
std::array<int64_t, 2> linear_shape(const config::ModelConfig& cfg, arch::Role r);
// Expected [N, K] of the linear the description stores under r: a fused tensor's N is the sum of
// its parts'.
std::array<int64_t, 2> linear_shape(const config::ModelConfig& cfg, const arch::ArchDesc& desc, arch::Role r);

// A fused linear that this checkpoint stores as its parts (arch::FusedDesc::split_names): the
// parts' modules and N, in the fused order, when the folder is quantized, has neither
// "<fused>.qweight" nor "<fused>.weight", and has the first part's qweight; else empty.
std::vector<std::pair<std::string, int64_t>> split_parts(const io::TensorStore& store, const config::ModelConfig& cfg,
                                                         const arch::ArchDesc& desc, int layer, arch::Role r);

// Loads block `layer`. Dense linears come from "<module>.weight" (F32/F16/BF16, held as `dense`
// says); quantized ones (when cfg.quant is set and "<module>.qweight" exists) become backend
// kernels. Every tensor's shape is checked against the config (Error(kShape): tensor, expected,
// found).
BlockWeights load_block(const io::TensorStore& store, const config::ModelConfig& cfg,
                        const arch::ArchDesc& desc, int layer, bool dequantize_quantized = false,
                        DenseStorage dense = DenseStorage::kFp32);
// The learned position table [max_position_embeddings + offset, hidden] (empty for RoPE).
std::vector<float> load_positions(const io::TensorStore& store, const config::ModelConfig& cfg,
                                  const arch::ArchDesc& desc);
// Loads embeddings, positions, final norm and lm_head (checking tied vs. untied against the config); the
// embedding and lm_head are held as `dense` says.
void load_globals(const io::TensorStore& store, const config::ModelConfig& cfg, const arch::ArchDesc& desc,
                  ModelWeights* w, DenseStorage dense = DenseStorage::kFp32);

}  // namespace gptq::model
