// Random-weight model folders of real shapes, for benchmarks and tests. Weights are drawn from
// N(0, 0.02^2) (the usual initializer_range), norms are 1, so activations keep a realistic scale.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "synth/synth.h"
#include "io/safetensors.h"

namespace gptq {
namespace {

struct SynthShape {
  const char* name;
  int64_t hidden, inter, layers, heads, kv_heads, vocab, max_pos;
};

constexpr SynthShape kShapes[] = {
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048},
    {"llama-350m", 1024, 2816, 24, 16, 16, 32000, 2048},
    {"tiny", 128, 384, 2, 4, 2, 320, 256},
};

// splitmix64: a tiny, good-enough generator; each chunk of a tensor gets its own stream so the
// result does not depend on the thread count.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void fill_normal(float* out, int64_t n, float stddev, uint64_t seed) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  core::parallel_for(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      uint64_t s = seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(c + 1));
      const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
      for (int64_t i = b; i < e; i += 2) {
        // Box-Muller on two uniforms in (0, 1].
        const double u1 = (static_cast<double>(splitmix(s) >> 11) + 1.0) * 0x1.0p-53;
        const double u2 = static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
        out[i] = static_cast<float>(r * std::cos(2 * M_PI * u2));
        if (i + 1 < e) out[i + 1] = static_cast<float>(r * std::sin(2 * M_PI * u2));
      }
    }
  });
}

std::string synth_tokenizer_json(int64_t vocab) {
  // Llama-2 style: <unk> <s> </s>, 256 byte-fallback tokens, then printable characters; no
  // merges, so text encodes to characters and bytes. Good enough for timing.
  nlohmann::json v = nlohmann::json::object();
  v["<unk>"] = 0;
  v["<s>"] = 1;
  v["</s>"] = 2;
  for (int b = 0; b < 256; ++b) v[fmt::format("<0x{:02X}>", b)] = 3 + b;
  int64_t id = 259;
  v["\xE2\x96\x81"] = id++;
  for (char c = 33; c < 127 && id < vocab; ++c) v[std::string(1, c)] = id++;
  for (; id < vocab; ++id) v[fmt::format("\xE2\x96\x81tok{}", id)] = id;
  nlohmann::json added = nlohmann::json::array();
  const char* specials[] = {"<unk>", "<s>", "</s>"};
  for (int i = 0; i < 3; ++i) {
    added.push_back({{"id", i}, {"content", specials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", nlohmann::json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", v},
        {"merges", nlohmann::json::array()}}},
  };
  return j.dump();
}

}  // namespace

std::vector<std::string> synth_shapes() {
  std::vector<std::string> r;
  for (const auto& s : kShapes) r.push_back(s.name);
  return r;
}

void synthesize_model(const SynthOptions& o) {
  const SynthShape* shape = nullptr;
  for (const auto& s : kShapes) {
    if (o.shape == s.name) shape = &s;
  }
  if (!shape) {
    throw Error(ErrorKind::kArgument, fmt::format("unknown shape \"{}\"; known: {}", o.shape,
                                                  fmt::join(synth_shapes(), ", ")));
  }
  DType dt;
  std::string torch_dtype;
  if (o.dtype == "bf16") {
    dt = DType::kBF16;
    torch_dtype = "bfloat16";
  } else if (o.dtype == "fp16") {
    dt = DType::kF16;
    torch_dtype = "float16";
  } else if (o.dtype == "fp32") {
    dt = DType::kF32;
    torch_dtype = "float32";
  } else {
    throw Error(ErrorKind::kArgument, fmt::format("unknown dtype \"{}\" (expected bf16, fp16 or fp32)", o.dtype));
  }
  namespace fs = std::filesystem;
  if (fs::exists(o.out) && !o.force) {
    throw Error(ErrorKind::kArgument, fmt::format("{} exists; pass --force to replace it", o.out.string()));
  }
  const fs::path tmp = o.out.string() + ".tmp-synth";
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  SynthShape s = *shape;
  if (o.layers < 0) throw Error(ErrorKind::kArgument, fmt::format("--layers {}: expected >= 1 (0: the shape's)", o.layers));
  if (o.layers > 0) s.layers = o.layers;
  const int64_t hd = s.hidden / s.heads;
  struct T {
    std::string name;
    Shape shape;
    float stddev;  // 0: ones
  };
  std::vector<T> specs;
  // Names come from the architecture description (one source for every tensor name).
  const arch::ArchDesc desc = arch::describe("llama", {}, "synth");
  auto rows_cols = [&](arch::Role r) -> Shape {
    using arch::Role;
    switch (r) {
      case Role::kQ: return {s.heads * hd, s.hidden};
      case Role::kK:
      case Role::kV: return {s.kv_heads * hd, s.hidden};
      case Role::kO: return {s.hidden, s.heads * hd};
      case Role::kGate:
      case Role::kUp: return {s.inter, s.hidden};
      case Role::kDown: return {s.hidden, s.inter};
    }
    return {};
  };
  specs.push_back({desc.embed + ".weight", {s.vocab, s.hidden}, 0.02f});
  specs.push_back({desc.lm_head + ".weight", {s.vocab, s.hidden}, 0.02f});
  specs.push_back({desc.final_norm + ".weight", {s.hidden}, 0});
  for (int64_t l = 0; l < s.layers; ++l) {
    const int layer = static_cast<int>(l);
    for (const auto& sl : desc.sublayers) specs.push_back({desc.block_module(layer, sl.norm) + ".weight", {s.hidden}, 0});
    for (const auto& ld : desc.linears) {
      specs.push_back({desc.block_module(layer, ld.name) + ".weight", rows_cols(ld.role), 0.02f});
    }
  }
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<io::TensorToWrite> out;
  bufs.reserve(specs.size());
  uint64_t seed = o.seed * 0x9E3779B97F4A7C15ull + 1;
  std::vector<float> f32;
  for (const auto& t : specs) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    f32.assign(static_cast<size_t>(n), 1.0f);
    if (t.stddev > 0) fill_normal(f32.data(), n, t.stddev, seed++);
    std::vector<uint8_t> b(static_cast<size_t>(n) * dtype_size(dt));
    if (dt == DType::kF32) {
      std::memcpy(b.data(), f32.data(), b.size());
    } else {
      auto* h = reinterpret_cast<uint16_t*>(b.data());
      for (int64_t i = 0; i < n; ++i) h[i] = dt == DType::kBF16 ? core::fp32_to_bf16(f32[i]) : core::fp32_to_fp16(f32[i]);
    }
    bufs.push_back(std::move(b));
    out.push_back({t.name, dt, t.shape, bufs.back().data(), bufs.back().size()});
  }
  io::write_safetensors(tmp / "model.safetensors", std::move(out));
  bufs.clear();

  nlohmann::json cfg = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", s.hidden},
      {"intermediate_size", s.inter}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads}, {"vocab_size", s.vocab}, {"max_position_embeddings", s.max_pos},
      {"hidden_act", "silu"}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"rope_scaling", nullptr},
      {"attention_bias", false}, {"mlp_bias", false}, {"tie_word_embeddings", false},
      {"torch_dtype", torch_dtype}, {"bos_token_id", 1}, {"eos_token_id", 2}, {"initializer_range", 0.02},
      {"_synthesized_by", fmt::format("gptq.cpp {} synth --shape {} --seed {}", GPTQ_VERSION, s.name, o.seed)}};
  io::write_file_atomic(tmp / "config.json", cfg.dump(2) + "\n");
  io::write_file_atomic(tmp / "generation_config.json",
                        nlohmann::json({{"bos_token_id", 1}, {"eos_token_id", 2}}).dump(2) + "\n");
  io::write_file_atomic(tmp / "tokenizer.json", synth_tokenizer_json(s.vocab));
  io::write_file_atomic(tmp / "tokenizer_config.json",
                        nlohmann::json({{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", "<s>"},
                                        {"eos_token", "</s>"}, {"unk_token", "<unk>"},
                                        {"tokenizer_class", "LlamaTokenizer"}})
                                .dump(2) + "\n");
  if (fs::exists(o.out)) fs::remove_all(o.out);
  fs::rename(tmp, o.out);
}

}  // namespace gptq
