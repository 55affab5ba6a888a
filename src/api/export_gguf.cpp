// export_gguf: a GPTQ folder as one GGUF file in llama.cpp's layout. Quantized linears are read
// through the checkpoint loader (model::read_packed_linear, the same view `gptq perplexity`
// dequantizes) and their codes copied into ggml blocks (quant/ggml_blocks.h); everything else is
// a dense tensor. Names and metadata keys follow llama.cpp's GGUF conventions for the llama and
// qwen2 architectures (mistral is written as llama, as llama.cpp's converter does).
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "checkpoint/gptq_checkpoint.h"
#include "config/model_config.h"
#include "core/dtype.h"
#include "core/log.h"
#include "gptq/error.h"
#include "gptq/export.h"
#include "gptq/tokenizer.h"
#include "io/gguf.h"
#include "io/json_strict.h"
#include "io/safetensors.h"
#include "model/linear.h"
#include "model/weights.h"
#include "quant/ggml_blocks.h"
#include "quant/quantizer.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;
using io::GgufType;
using io::GgufValue;
using json = nlohmann::json;
using KV = std::vector<std::pair<std::string, GgufValue>>;

// ggml token types (llama.cpp's llama_token_type).
constexpr int64_t kTokNormal = 1, kTokUnknown = 2, kTokControl = 3, kTokUserDefined = 4,
                  kTokUnused = 5, kTokByte = 6;

// The tensors being assembled: their bytes are owned here until the file is written.
struct Assembly {
  std::vector<std::vector<uint8_t>> owned;
  std::vector<io::GgufTensorToWrite> tensors;
  GgufExportReport* report = nullptr;

  void add(std::string name, std::vector<uint64_t> ne, uint32_t type, std::vector<uint8_t> bytes,
           std::string source, std::string note) {
    owned.push_back(std::move(bytes));
    const auto& b = owned.back();
    tensors.push_back({name, std::move(ne), type, b.data(), b.size()});
    report->tensors.push_back(
        {std::move(name), io::ggml_type_info(type)->name, std::move(source), std::move(note)});
  }
};

std::vector<uint8_t> f32_bytes(const std::vector<float>& v,
                               const std::vector<int64_t>& order = {}) {
  std::vector<uint8_t> out(v.size() * 4);
  if (order.empty()) {
    std::memcpy(out.data(), v.data(), out.size());
  } else {
    const int64_t k = static_cast<int64_t>(v.size()) / static_cast<int64_t>(order.size());
    for (size_t r = 0; r < order.size(); ++r) std::memcpy(&out[r * k * 4], &v[order[r] * k], k * 4);
  }
  return out;
}

// A dense [n, k] matrix as `type` (F32, F16, BF16, Q8_0, Q4_0), rows in `order`.
std::pair<uint32_t, std::vector<uint8_t>> dense_bytes(const std::vector<float>& w, int64_t n,
                                                      int64_t k, const std::string& type,
                                                      const std::vector<int64_t>& order,
                                                      const std::string& what) {
  if (type == "f32") return {io::kGgmlF32, f32_bytes(w, order)};
  if (type == "f16") return {io::kGgmlF16, quant::f16_rows(w.data(), n, k, order)};
  if (type == "bf16") {
    std::vector<uint8_t> out(static_cast<size_t>(n * k * 2));
    for (int64_t r = 0; r < n; ++r) {
      const int64_t src = order.empty() ? r : order[r];
      for (int64_t i = 0; i < k; ++i) {
        const uint16_t b = core::fp32_to_bf16(w[src * k + i]);
        std::memcpy(&out[(r * k + i) * 2], &b, 2);
      }
    }
    return {io::kGgmlBF16, std::move(out)};
  }
  if (k % 32 != 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: K = {} is not a multiple of 32, so it cannot be stored as {}",
                            what, k, type));
  }
  if (type == "q8_0")
    return {io::kGgmlQ8_0, quant::rtn_ggml_blocks(w.data(), n, k, quant::GgmlTarget::kQ8_0, order)};
  if (type == "q4_0")
    return {io::kGgmlQ4_0, quant::rtn_ggml_blocks(w.data(), n, k, quant::GgmlTarget::kQ4_0, order)};
  throw Error(ErrorKind::kArgument,
              fmt::format("dense type \"{}\": expected f32, f16, bf16, q8_0 or q4_0", type));
}

std::string dtype_default(DType t) {
  switch (t) {
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    default:
      return "f32";
  }
}

json read_json(const fs::path& p) {
  return io::detail::parse_json_strict(io::read_text_file(p), p.string(), "file");
}

std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string())
    return j["content"].get<std::string>();
  return {};
}

// The pre-tokenizer name llama.cpp uses for a byte-level BPE tokenizer.json, from its
// pre_tokenizer; empty when not recognised.
std::string recognise_pre(const json& pre) {
  static const std::string kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+";
  static const std::string kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (!pre.is_object()) return {};
  const std::string type = pre.value("type", "");
  if (type == "ByteLevel" && pre.value("use_regex", true)) return "gpt-2";
  if (type != "Sequence" || !pre.contains("pretokenizers") || !pre["pretokenizers"].is_array())
    return {};
  const json& seq = pre["pretokenizers"];
  if (seq.size() == 2 && seq[0].value("type", "") == "Digits" &&
      seq[0].value("individual_digits", false) && seq[1].value("type", "") == "ByteLevel" &&
      seq[1].value("use_regex", true)) {
    return "smollm";
  }
  if (seq.size() == 2 && seq[0].value("type", "") == "Split" &&
      seq[1].value("type", "") == "ByteLevel" && !seq[1].value("use_regex", true) &&
      seq[0].contains("pattern") && seq[0]["pattern"].contains("Regex")) {
    const std::string re =
        seq[0]["pattern"]["Regex"].is_string() ? seq[0]["pattern"]["Regex"].get<std::string>() : "";
    if (re == kQwen2) return "qwen2";
    if (re == kLlama3) return "llama-bpe";
  }
  return {};
}

// tokenizer.ggml.* and tokenizer.chat_template from tokenizer.json / tokenizer_config.json.
void tokenizer_kv(const fs::path& dir, int64_t vocab_size, const GgufExportOptions& opts, KV& kv) {
  const fs::path tj = dir / "tokenizer.json";
  if (!fs::exists(tj)) {
    throw Error(
        ErrorKind::kUnsupported,
        fmt::format("{}: no tokenizer.json; a GGUF file needs the vocabulary", dir.string()));
  }
  const json t = read_json(tj);
  const Tokenizer tok = Tokenizer::from_dir(dir);
  if (!t.contains("model") || t["model"].value("type", "") != "BPE") {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: model.type is not \"BPE\"; only BPE tokenizers are exported",
                            tj.string()));
  }
  const json& m = t["model"];
  const bool byte_fallback = m.value("byte_fallback", false);
  const json pre = t.value("pre_tokenizer", json());
  const json dec = t.value("decoder", json());
  auto has_type = [](const json& j, const char* type) {
    if (!j.is_object()) return false;
    if (j.value("type", "") == type) return true;
    for (const char* key : {"pretokenizers", "decoders", "normalizers"}) {
      if (j.contains(key) && j[key].is_array()) {
        for (const auto& e : j[key]) {
          if (e.is_object() && e.value("type", "") == type) return true;
        }
      }
    }
    return false;
  };
  const bool byte_level = has_type(pre, "ByteLevel") || has_type(dec, "ByteLevel");
  // sentencepiece-style BPE (Llama 2, TinyLlama, stories): "llama"; byte-level BPE: "gpt2".
  const bool spm = byte_fallback && !byte_level;
  if (!spm && !byte_level) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: a BPE tokenizer that is neither byte-level nor "
                            "sentencepiece-style (byte_fallback) "
                            "has no llama.cpp tokenizer model",
                            tj.string()));
  }
  // Ids -> tokens: the model's vocabulary, then added tokens; holes and the rest of the
  // embedding's rows become unused pad tokens.
  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int64_t> types(static_cast<size_t>(vocab_size), kTokUnused);
  std::vector<char> have(static_cast<size_t>(vocab_size), 0);
  if (!m.contains("vocab") || !m["vocab"].is_object())
    throw Error(ErrorKind::kFormat, tj.string() + ": model.vocab is not an object");
  for (const auto& [piece, idj] : m["vocab"].items()) {
    const int64_t id = idj.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: token \"{}\" has id {}, outside the model's vocab_size {}",
                              tj.string(), io::detail::clip(piece), id, vocab_size));
    }
    tokens[id] = piece;
    have[id] = 1;
    types[id] = kTokNormal;
    if (spm && piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece[5] == '>')
      types[id] = kTokByte;
  }
  const std::string unk = m.contains("unk_token") && m["unk_token"].is_string()
                              ? m["unk_token"].get<std::string>()
                              : "";
  int64_t unk_id = -1;
  if (t.contains("added_tokens") && t["added_tokens"].is_array()) {
    for (const auto& a : t["added_tokens"]) {
      const int64_t id = a.value("id", int64_t{-1});
      if (id < 0 || id >= vocab_size) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: added token id {} outside the model's vocab_size {}",
                                tj.string(), id, vocab_size));
      }
      tokens[id] = a.value("content", "");
      have[id] = 1;
      types[id] = a.value("special", false) ? kTokControl : kTokUserDefined;
    }
  }
  for (int64_t id = 0; id < vocab_size; ++id) {
    if (!have[id]) tokens[id] = fmt::format("[PAD{}]", id);
    if (!unk.empty() && tokens[id] == unk) {
      unk_id = id;
      if (spm) types[id] = kTokUnknown;
    }
  }
  // Merges as "left right" strings (tokenizers writes them as strings or as pairs).
  std::vector<std::string> merges;
  if (m.contains("merges") && m["merges"].is_array()) {
    for (const auto& e : m["merges"]) {
      if (e.is_string())
        merges.push_back(e.get<std::string>());
      else if (e.is_array() && e.size() == 2)
        merges.push_back(e[0].get<std::string>() + " " + e[1].get<std::string>());
      else
        throw Error(ErrorKind::kFormat,
                    tj.string() + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  if (spm) {
    kv.emplace_back("tokenizer.ggml.model", GgufValue::str("llama"));
    kv.emplace_back("tokenizer.ggml.pre", GgufValue::str("default"));
  } else {
    std::string pre_name = opts.tokenizer_pre.empty() ? recognise_pre(pre) : opts.tokenizer_pre;
    if (pre_name.empty()) {
      throw Error(
          ErrorKind::kUnsupported,
          fmt::format(
              "{}: the pre-tokenizer is not one this exporter recognises (gpt-2, smollm, qwen2, "
              "llama-bpe); pass --tokenizer-pre NAME with llama.cpp's name for it",
              tj.string()));
    }
    kv.emplace_back("tokenizer.ggml.model", GgufValue::str("gpt2"));
    kv.emplace_back("tokenizer.ggml.pre", GgufValue::str(pre_name));
  }
  kv.emplace_back("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  // llama.cpp's sentencepiece tokenizer merges the adjacent pair whose joined piece scores
  // highest; scoring a piece by minus the rank of the merge that makes it reproduces the BPE
  // merge order. Byte-level BPE uses the merges themselves; the scores are then unused.
  std::vector<double> scores(static_cast<size_t>(vocab_size), 0.0);
  if (spm) {
    std::map<std::string, size_t> rank;
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto sp = merges[r].find(' ');
      if (sp == std::string::npos) continue;
      rank.try_emplace(merges[r].substr(0, sp) + merges[r].substr(sp + 1), r);
    }
    for (int64_t id = 0; id < vocab_size; ++id) {
      const auto it = rank.find(tokens[id]);
      if (it != rank.end() && types[id] == kTokNormal)
        scores[id] = -static_cast<double>(it->second) - 1;
    }
  }
  kv.emplace_back("tokenizer.ggml.scores", GgufValue::float_array(GgufType::kFloat32, scores));
  kv.emplace_back("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::kInt32, types));
  if (!spm) kv.emplace_back("tokenizer.ggml.merges", GgufValue::string_array(merges));

  // Special ids: tokenizer_config.json names them; our tokenizer resolves BOS/EOS the same way.
  json tc = json::object();
  if (fs::exists(dir / "tokenizer_config.json")) tc = read_json(dir / "tokenizer_config.json");
  auto id_of = [&](const std::string& content) -> int64_t {
    for (int64_t id = 0; id < vocab_size; ++id) {
      if (have[id] && tokens[id] == content) return id;
    }
    return -1;
  };
  if (tok.bos_id() >= 0)
    kv.emplace_back("tokenizer.ggml.bos_token_id",
                    GgufValue::u32(static_cast<uint32_t>(tok.bos_id())));
  if (!tok.eos_ids().empty()) {
    kv.emplace_back("tokenizer.ggml.eos_token_id",
                    GgufValue::u32(static_cast<uint32_t>(tok.eos_ids()[0])));
  }
  if (unk_id >= 0)
    kv.emplace_back("tokenizer.ggml.unknown_token_id",
                    GgufValue::u32(static_cast<uint32_t>(unk_id)));
  int64_t pad_id = tc.contains("pad_token") ? id_of(token_content(tc["pad_token"])) : -1;
  if (pad_id < 0 && fs::exists(dir / "config.json")) {
    const json c = read_json(dir / "config.json");
    if (c.contains("pad_token_id") && c["pad_token_id"].is_number_integer())
      pad_id = c["pad_token_id"].get<int64_t>();
  }
  if (pad_id >= 0 && pad_id < vocab_size) {
    kv.emplace_back("tokenizer.ggml.padding_token_id",
                    GgufValue::u32(static_cast<uint32_t>(pad_id)));
  }
  kv.emplace_back("tokenizer.ggml.add_bos_token", GgufValue::boolean(tok.add_bos()));
  kv.emplace_back("tokenizer.ggml.add_eos_token",
                  GgufValue::boolean(tc.value("add_eos_token", false)));
  if (spm) {
    // A normalizer that prepends "▁" is sentencepiece's add_dummy_prefix.
    const std::string norm = t.contains("normalizer") ? t["normalizer"].dump() : "";
    kv.emplace_back("tokenizer.ggml.add_space_prefix",
                    GgufValue::boolean(norm.find("\"Prepend\"") != std::string::npos));
  }
  if (tc.contains("chat_template")) {
    const json& ct = tc["chat_template"];
    std::string tmpl;
    if (ct.is_string()) {
      tmpl = ct.get<std::string>();
    } else if (ct.is_array()) {
      for (const auto& e : ct) {
        if (e.value("name", "") == "default") tmpl = e.value("template", "");
      }
    }
    if (!tmpl.empty()) kv.emplace_back("tokenizer.chat_template", GgufValue::str(tmpl));
  }
}

// Llama 3 rope scaling as llama.cpp applies it: per-frequency factors in "rope_freqs.weight".
std::vector<float> llama3_rope_factors(const config::ModelConfig& cfg) {
  const auto& rs = cfg.rope_scaling;
  const int64_t d = cfg.head_dim;
  const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
  const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
  std::vector<float> f;
  for (int64_t i = 0; i < d; i += 2) {
    const double freq =
        1.0 / std::pow(cfg.rope_theta, static_cast<double>(i) / static_cast<double>(d));
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) {
      f.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      f.push_back(static_cast<float>(rs.factor));
    } else {
      const double smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                            (rs.high_freq_factor - rs.low_freq_factor);
      f.push_back(static_cast<float>(1.0 / ((1 - smooth) / rs.factor + smooth)));
    }
  }
  return f;
}

const char* gguf_linear_name(arch::Role r) {
  switch (r) {
    case arch::Role::kQ:
      return "attn_q";
    case arch::Role::kK:
      return "attn_k";
    case arch::Role::kV:
      return "attn_v";
    case arch::Role::kO:
      return "attn_output";
    case arch::Role::kGate:
      return "ffn_gate";
    case arch::Role::kUp:
      return "ffn_up";
    case arch::Role::kDown:
      return "ffn_down";
  }
  return "?";
}

}  // namespace

GgufExportReport export_gguf(const fs::path& model_dir, const fs::path& out,
                             const GgufExportOptions& opts) {
  if (fs::exists(out) && !opts.force) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{} exists; pass --force to replace it", out.string()));
  }
  if (fs::is_directory(out))
    throw Error(ErrorKind::kArgument,
                fmt::format("{} is a folder; expected a file name", out.string()));
  const config::ModelConfig cfg = config::load_model_config(model_dir);
  const arch::ArchDesc& desc = cfg.arch;
  std::string gguf_arch;
  bool permute_qk = false;
  if (cfg.model_type == "llama" || cfg.model_type == "mistral") {
    gguf_arch = "llama";
    permute_qk = true;  // llama.cpp rotates pairs (2i, 2i+1); HF's llama keeps (i, i + d/2)
  } else if (cfg.model_type == "qwen2") {
    gguf_arch = "qwen2";  // llama.cpp runs qwen2 with NeoX-style rotation: rows as in HF
  } else {
    throw Error(
        ErrorKind::kUnsupported,
        fmt::format(
            "{}: model_type \"{}\" has no GGUF mapping here (exported: llama, mistral, qwen2)",
            cfg.origin, cfg.model_type));
  }
  if (!desc.fused.empty() || !desc.q_norm.empty() || desc.conv1d_weights) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: fused or normed projections are not exported", cfg.origin));
  }
  if (cfg.rope_scaling.type == config::RopeScaling::Type::kYarn ||
      cfg.rope_scaling.type == config::RopeScaling::Type::kLongrope) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: yarn and longrope RoPE scaling are not exported to GGUF", cfg.origin));
  }
  const io::TensorStore store = io::TensorStore::open_dir(model_dir);
  GgufExportReport rep;
  rep.output = out;
  Assembly as;
  as.report = &rep;

  const io::TensorInfo& embed_t = store.get(desc.embed + ".weight");
  const std::string dense_type =
      opts.dense_type.empty() ? dtype_default(embed_t.dtype) : opts.dense_type;
  // Block linears kept dense by the checkpoint: F32 when the user asked for F32, else F16 (ggml
  // multiplies F16 rows of any length; Q8_0/Q4_0 would need K % 32 == 0 and add rounding).
  const std::string block_dense = dense_type == "f32"    ? "f32"
                                  : dense_type == "bf16" ? "bf16"
                                                         : "f16";
  std::map<uint32_t, int64_t> type_count;

  // A quantized linear's codes as ggml blocks (exact), or re-rounded with --requant.
  auto export_quantized = [&](const std::string& module, int64_t n, int64_t k,
                              const std::vector<int64_t>& order, const std::string& name,
                              const std::string& order_note) {
    const std::vector<uint64_t> ne = {static_cast<uint64_t>(k), static_cast<uint64_t>(n)};
    const checkpoint::PackedLinear p =
        model::read_packed_linear(store, module, n, k, cfg.quant->for_module(module));
    if (k % 32 != 0) {
      // GPTQModel quantizes linears of any K (stories260k's down_proj, K = 172), but a ggml block
      // holds 32 inputs with one scale: no block type holds these codes, and re-rounding would
      // need whole blocks too. The dequantized weights go in as F32, which holds them exactly.
      const auto w = model::dequantize_packed(p, "gptq_v2");
      auto [type, bytes] = dense_bytes(w, n, k, "f32", order, module);
      rep.dense_linears++;
      as.add(name + ".weight", ne, type, std::move(bytes), module,
             fmt::format("dequantized to F32, exact (K = {} is not a multiple of 32, the width of "
                         "a ggml block)",
                         k) +
                 order_note);
      return;
    }
    const auto codes = quant::unpack_qweight(p.qweight.data(), n, k, p.bits);  // [N, K]
    const int64_t np = (n + 31) / 32 * 32;
    const auto padded = quant::unpack_qzeros(p.qzeros.data(), p.groups, np, p.bits);  // [G, np]
    std::vector<int32_t> zeros(static_cast<size_t>(p.groups * n));
    for (int64_t g = 0; g < p.groups; ++g) {
      std::copy(padded.begin() + g * np, padded.begin() + g * np + n, zeros.begin() + g * n);
    }
    quant::GptqCodesView v{
        n, k, p.groups, p.bits, codes.data(), zeros.data(), p.scales.data(), p.g_idx.data()};
    const quant::GgmlMapping mp = quant::choose_ggml_mapping(v, module, opts.widen);
    if (mp.exact) {
      quant::GgmlEncodeStats st;
      auto bytes = quant::encode_ggml_blocks(v, mp.target, order, &st);
      const uint32_t type = quant::ggml_type_id(mp.target);
      std::string note = mp.widened ? fmt::format("exact ({}-bit codes widened)", p.bits) : "exact";
      if (mp.target == quant::GgmlTarget::kQ4_1) {
        rep.q4_1_blocks += st.blocks;
        rep.q4_1_inexact_offsets += st.inexact_offsets;
        rep.q4_1_max_offset_error = std::max(rep.q4_1_max_offset_error, st.max_offset_error);
        if (st.inexact_offsets > 0) {
          note = fmt::format(
              "codes and scales exact; {} of {} offsets m = -d*z rounded to fp16 (at most {:.2g} "
              "d)",
              st.inexact_offsets, st.blocks, st.max_offset_error);
        }
      }
      (mp.widened ? rep.widened_linears : rep.exact_linears)++;
      type_count[type]++;
      as.add(name + ".weight", ne, type, std::move(bytes), module, note + order_note);
    } else if (opts.requant) {
      const auto w = model::dequantize_packed(p, "gptq_v2");
      const auto target = p.bits <= 4 ? quant::GgmlTarget::kQ4_0 : quant::GgmlTarget::kQ8_0;
      core::log_warn("{}: re-rounded to {} by round-to-nearest ({})", module,
                     quant::ggml_target_name(target), mp.why_not);
      rep.requantized_linears++;
      type_count[quant::ggml_type_id(target)]++;
      as.add(name + ".weight", ne, quant::ggml_type_id(target),
             quant::rtn_ggml_blocks(w.data(), n, k, target, order), module,
             std::string("re-rounded by round-to-nearest (no exact block)") + order_note);
    } else {
      throw Error(ErrorKind::kUnsupported, mp.why_not);
    }
  };

  {
    const auto w = store.read_f32(desc.embed + ".weight", {cfg.vocab_size, cfg.hidden_size});
    auto [type, bytes] =
        dense_bytes(w, cfg.vocab_size, cfg.hidden_size, dense_type, {}, desc.embed);
    as.add("token_embd.weight",
           {static_cast<uint64_t>(cfg.hidden_size), static_cast<uint64_t>(cfg.vocab_size)}, type,
           std::move(bytes), desc.embed + ".weight", "dense");
  }
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string blk = fmt::format("blk.{}.", l);
    for (const auto& sl : desc.sublayers) {
      const std::string src = desc.block_module(static_cast<int>(l), sl.norm) + ".weight";
      const char* name =
          sl.kind == arch::SublayerKind::kAttention ? "attn_norm.weight" : "ffn_norm.weight";
      as.add(blk + name, {static_cast<uint64_t>(cfg.hidden_size)}, io::kGgmlF32,
             f32_bytes(store.read_f32(src, {cfg.hidden_size})), src, "dense");
    }
    for (const auto& ld : desc.linears) {
      const auto [n, k] = model::linear_shape(cfg, ld.role);
      const std::string module = desc.block_module(static_cast<int>(l), ld.name);
      const std::string name = blk + gguf_linear_name(ld.role);
      std::vector<int64_t> order;
      std::string order_note;
      if (permute_qk && (ld.role == arch::Role::kQ || ld.role == arch::Role::kK)) {
        order = quant::llama_rope_row_order(
            n, ld.role == arch::Role::kQ ? cfg.num_attention_heads : cfg.num_key_value_heads);
        order_note = ", rows permuted for RoPE";
      }
      const std::vector<uint64_t> ne = {static_cast<uint64_t>(k), static_cast<uint64_t>(n)};
      if (cfg.quant && store.find(module + ".qweight")) {
        export_quantized(module, n, k, order, name, order_note);
      } else {
        const auto w = store.read_f32(module + ".weight", {n, k});
        auto [type, bytes] = dense_bytes(w, n, k, block_dense, order, module);
        rep.dense_linears++;
        as.add(name + ".weight", ne, type, std::move(bytes), module + ".weight",
               "dense (unquantized in the checkpoint)" + order_note);
      }
      if (store.find(module + ".bias")) {
        const auto b = store.read_f32(module + ".bias", {n});
        std::vector<float> pb(b.size());
        for (int64_t i = 0; i < n; ++i) pb[i] = b[order.empty() ? i : order[i]];
        as.add(name + ".bias", {static_cast<uint64_t>(n)}, io::kGgmlF32, f32_bytes(pb),
               module + ".bias", "dense" + order_note);
      }
    }
  }
  as.add("output_norm.weight", {static_cast<uint64_t>(cfg.hidden_size)}, io::kGgmlF32,
         f32_bytes(store.read_f32(desc.final_norm + ".weight", {cfg.hidden_size})),
         desc.final_norm + ".weight", "dense");
  if (cfg.quant && store.find(desc.lm_head + ".qweight")) {
    export_quantized(desc.lm_head, cfg.vocab_size, cfg.hidden_size, {}, "output",
                     "");  // lm_head: true
  } else if (!cfg.tie_word_embeddings) {
    const std::string head = desc.lm_head + ".weight";
    const auto w = store.read_f32(head, {cfg.vocab_size, cfg.hidden_size});
    auto [type, bytes] =
        dense_bytes(w, cfg.vocab_size, cfg.hidden_size, dense_type, {}, desc.lm_head);
    as.add("output.weight",
           {static_cast<uint64_t>(cfg.hidden_size), static_cast<uint64_t>(cfg.vocab_size)}, type,
           std::move(bytes), head, "dense");
  }
  if (cfg.rope_scaling.type == config::RopeScaling::Type::kLlama3) {
    const auto f = llama3_rope_factors(cfg);
    as.add("rope_freqs.weight", {static_cast<uint64_t>(f.size())}, io::kGgmlF32, f32_bytes(f),
           "config.json rope_scaling", "llama3 rope factors");
  }

  // general.file_type: llama.cpp's llama_ftype of the most common linear type.
  uint32_t main_type = dense_type == "f32" ? io::kGgmlF32 : io::kGgmlF16;
  int64_t most = 0;
  for (const auto& [t, c] : type_count) {
    if (c > most) {
      most = c;
      main_type = t;
    }
  }
  const uint32_t ftype = main_type == io::kGgmlQ4_0   ? 2
                         : main_type == io::kGgmlQ4_1 ? 3
                         : main_type == io::kGgmlQ8_0 ? 7
                         : main_type == io::kGgmlF16  ? 1
                                                      : 0;
  const std::string a = gguf_arch;
  KV kv;
  kv.emplace_back("general.architecture", GgufValue::str(a));
  kv.emplace_back("general.type", GgufValue::str("model"));
  kv.emplace_back(
      "general.name",
      GgufValue::str(opts.name.empty()
                         ? fs::absolute(model_dir).lexically_normal().filename().string()
                         : opts.name));
  kv.emplace_back("general.quantized_by", GgufValue::str(std::string("gptq.cpp ") + GPTQ_VERSION));
  kv.emplace_back("general.file_type", GgufValue::u32(ftype));
  kv.emplace_back("general.quantization_version", GgufValue::u32(2));
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  kv.emplace_back(a + ".vocab_size", u32(cfg.vocab_size));
  kv.emplace_back(a + ".context_length", u32(cfg.max_position_embeddings));
  kv.emplace_back(a + ".embedding_length", u32(cfg.hidden_size));
  kv.emplace_back(a + ".block_count", u32(cfg.num_hidden_layers));
  kv.emplace_back(a + ".feed_forward_length", u32(cfg.intermediate_size));
  kv.emplace_back(a + ".attention.head_count", u32(cfg.num_attention_heads));
  kv.emplace_back(a + ".attention.head_count_kv", u32(cfg.num_key_value_heads));
  kv.emplace_back(a + ".attention.key_length", u32(cfg.head_dim));
  kv.emplace_back(a + ".attention.value_length", u32(cfg.head_dim));
  kv.emplace_back(a + ".rope.dimension_count", u32(cfg.head_dim));
  kv.emplace_back(a + ".rope.freq_base", GgufValue::f32(static_cast<float>(cfg.rope_theta)));
  kv.emplace_back(a + ".attention.layer_norm_rms_epsilon",
                  GgufValue::f32(static_cast<float>(cfg.rms_norm_eps)));
  if (cfg.rope_scaling.type == config::RopeScaling::Type::kLinear) {
    kv.emplace_back(a + ".rope.scaling.type", GgufValue::str("linear"));
    kv.emplace_back(a + ".rope.scaling.factor",
                    GgufValue::f32(static_cast<float>(cfg.rope_scaling.factor)));
  }
  tokenizer_kv(model_dir, cfg.vocab_size, opts, kv);
  io::write_gguf(out, kv, as.tensors);
  rep.bytes = fs::file_size(out);
  return rep;
}

}  // namespace gptq
