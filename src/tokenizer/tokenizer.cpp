// gptq::Tokenizer: loading tokenizer.json (+ tokenizer_config.json, generation_config.json) and the
// encode/decode pipeline around the BPE model:
//
//   encode: split out added tokens -> normalizer (per piece) -> pre-tokenizer -> BPE per word
//           -> BOS/EOS from the post-processor or tokenizer_config.json
//   decode: ids -> token strings (special tokens skipped on request) -> decoder chain -> UTF-8
#include "gptq/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "gptq/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace gptq {

using json = nlohmann::json;

namespace {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

enum class IdKind : uint8_t { kHole, kModel, kAdded, kSpecial };

// A piece of the input: text [b, e), or an added token when id >= 0.
struct Segment {
  size_t b, e;
  int32_t id;
};

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

json parse_json(std::string_view text, const std::string& origin) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
}

std::string sibling(std::string_view origin, const char* name) {
  return (std::filesystem::path(origin).parent_path() / name).string();
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f)
    throw Error(ErrorKind::kIo,
                fmt::format("{}: cannot open: {}", p.string(), std::strerror(errno)));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(ErrorKind::kIo, fmt::format("{}: read failed", p.string()));
  return std::move(ss).str();
}

// A token named in a config: a string, {"content": string} (AddedToken as transformers writes
// it), or null. Returns nullopt for null or absence.
std::optional<std::string> config_token(const json& cfg, const char* key,
                                        const std::string& origin) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return tok::json_string(*it, "content", origin, key);
  throw Error(ErrorKind::kFormat,
              fmt::format("{}: {} should be a string or {{\"content\": ...}}, found {}", origin,
                          key, it->type_name()));
}

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<tok::Bpe> bpe;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::Decoder> decoder;

  std::vector<AddedToken> added;
  // For each first byte, the added tokens that start with it, longest first: the scan takes the
  // longest token at the leftmost position where any matches (Hugging Face's leftmost-longest).
  std::array<std::vector<uint32_t>, 256> added_by_byte;

  std::vector<std::string> pieces;  // [vocab_size] token string of each id
  std::vector<IdKind> kinds;        // [vocab_size]
  std::vector<int32_t> prefix;      // ids put before the text by encode(add_special = true)
  std::vector<int32_t> suffix;      // ids put after it
  int32_t bos = -1;
  std::vector<int32_t> eos;

  int32_t find_token(std::string_view s) const {
    for (const auto& a : added) {
      if (a.content == s) return a.id;
    }
    auto it = bpe->vocab().find(s);
    return it == bpe->vocab().end() ? -1 : it->second;
  }

  void split_added(std::string_view text, std::vector<Segment>& out) const;
  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out,
                   std::unordered_map<std::string, std::pair<size_t, size_t>>& cache,
                   std::vector<int32_t>& cache_ids) const;
  // The decoder's output as bytes, before it is made valid UTF-8.
  std::string decode_raw(const int32_t* ids, size_t n, bool skip_special) const;
  bool skipped(int32_t id, bool skip_special) const {
    const IdKind k = kinds[static_cast<size_t>(id)];
    return k == IdKind::kHole || (skip_special && k == IdKind::kSpecial);
  }
  void check_id(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= pieces.size()) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("token id {} is outside the vocabulary [0, {}) of {}", id,
                              pieces.size(), origin));
    }
  }
};

void Tokenizer::Impl::split_added(std::string_view text, std::vector<Segment>& out) const {
  const size_t n = text.size();
  size_t start = 0;  // where the current text segment begins
  size_t i = 0;
  while (i < n) {
    const auto& cands = added_by_byte[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (uint32_t k : cands) {
      const AddedToken& t = added[k];
      if (n - i < t.content.size() || text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t e = i + t.content.size();
        if ((i > 0 && is_word_byte(text[i - 1])) || (e < n && is_word_byte(text[e]))) continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    // lstrip/rstrip: the token absorbs the whitespace next to it.
    if (hit->lstrip) {
      while (b > start && is_ascii_space(text[b - 1])) --b;
    }
    if (hit->rstrip) {
      while (e < n && is_ascii_space(text[e])) ++e;
    }
    if (b > start) out.push_back({start, b, -1});
    out.push_back({b, e, hit->id});
    start = i = e;
  }
  if (start < n) out.push_back({start, n, -1});
}

void Tokenizer::Impl::encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out,
                                  std::unordered_map<std::string, std::pair<size_t, size_t>>& cache,
                                  std::vector<int32_t>& cache_ids) const {
  std::vector<tok::Piece> words;
  words.push_back({std::string(text), at_start});
  if (normalizer) normalizer->apply(words[0].text);
  if (words[0].text.empty()) return;
  if (pre_tokenizer) pre_tokenizer->apply(words);
  // Words repeat a lot in running text; caching their ids per call makes byte-level BPE on a 1 MB
  // text several times faster. Long words (a whole text without a pre-tokenizer) are not cached.
  constexpr size_t kMaxCachedWord = 64;
  constexpr size_t kMaxCacheEntries = 1 << 18;
  for (const auto& w : words) {
    if (w.text.size() > kMaxCachedWord || words.size() < 4) {
      bpe->encode_word(w.text, out);
      continue;
    }
    auto it = cache.find(w.text);
    if (it != cache.end()) {
      out.insert(
          out.end(), cache_ids.begin() + static_cast<std::ptrdiff_t>(it->second.first),
          cache_ids.begin() + static_cast<std::ptrdiff_t>(it->second.first + it->second.second));
      continue;
    }
    const size_t before = out.size();
    bpe->encode_word(w.text, out);
    if (cache.size() < kMaxCacheEntries) {
      const size_t at = cache_ids.size();
      cache_ids.insert(cache_ids.end(), out.begin() + static_cast<std::ptrdiff_t>(before),
                       out.end());
      cache.emplace(w.text, std::make_pair(at, out.size() - before));
    }
  }
}

std::string Tokenizer::Impl::decode_raw(const int32_t* ids, size_t n, bool skip_special) const {
  std::vector<std::string> toks;
  toks.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    check_id(ids[i]);
    if (skipped(ids[i], skip_special)) continue;
    toks.push_back(pieces[static_cast<size_t>(ids[i])]);
  }
  if (decoder) decoder->apply(toks);
  size_t total = 0;
  for (const auto& t : toks) total += t.size();
  std::string out;
  out.reserve(total);
  for (const auto& t : toks) out += t;
  return out;
}

namespace {

// Reads the post-processor into the ids it puts around a single sequence.
void read_post_processor(const json& pp, const std::string& origin, const std::string& where,
                         std::vector<int32_t>& prefix, std::vector<int32_t>& suffix,
                         int32_t vocab_size) {
  if (pp.is_null()) return;
  const std::string type = tok::json_string(pp, "type", origin, where);
  auto check = [&](int64_t id, std::string_view what) {
    if (id < 0 || id >= vocab_size) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {} names the token id {}, beyond the vocabulary of {} ids",
                              origin, what, id, vocab_size));
    }
    return static_cast<int32_t>(id);
  };
  if (type == "Sequence") {
    const json& list = tok::json_at(pp, "processors", origin, where);
    if (!list.is_array()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}.processors should be an array", origin, where));
    }
    for (size_t i = 0; i < list.size(); ++i) {
      read_post_processor(list[i], origin, fmt::format("{}.processors[{}]", where, i), prefix,
                          suffix, vocab_size);
    }
    return;
  }
  if (type == "ByteLevel") return;  // adjusts offsets only
  if (type == "TemplateProcessing") {
    const json& single = tok::json_at(pp, "single", origin, where);
    const json& specials = tok::json_at(pp, "special_tokens", origin, where);
    if (!single.is_array()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}.single should be an array", origin, where));
    }
    bool seen_sequence = false;
    for (const auto& item : single) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken")) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: {}.single holds {}, expected SpecialToken or Sequence", origin,
                                where, item.dump()));
      }
      const std::string name =
          tok::json_string(item["SpecialToken"], "id", origin, where + ".single");
      const json& entry = tok::json_at(specials, name, origin, where + ".special_tokens");
      const json& ids = tok::json_at(entry, "ids", origin, where + ".special_tokens." + name);
      if (!ids.is_array()) {
        throw Error(
            ErrorKind::kFormat,
            fmt::format("{}: {}.special_tokens.{}.ids should be an array", origin, where, name));
      }
      for (const auto& id : ids) {
        if (!id.is_number_integer()) {
          throw Error(ErrorKind::kFormat,
                      fmt::format("{}: {}.special_tokens.{}.ids should hold integers", origin,
                                  where, name));
        }
        (seen_sequence ? suffix : prefix)
            .push_back(check(id.get<int64_t>(), fmt::format("{}.special_tokens.{}", where, name)));
      }
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto pair_id = [&](const char* key) {
      const json& p = tok::json_at(pp, key, origin, where);
      if (!p.is_array() || p.size() != 2 || !p[1].is_number_integer()) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: {}.{} should be [token, id]", origin, where, key));
      }
      return check(p[1].get<int64_t>(), fmt::format("{}.{}", where, key));
    };
    prefix.push_back(pair_id("cls"));
    suffix.push_back(pair_id("sep"));
    return;
  }
  throw Error(ErrorKind::kUnsupported,
              fmt::format("{}: the post_processor type \"{}\" is not supported", origin, type));
}

std::vector<std::pair<std::string, std::string>> read_merges(const json& model,
                                                             const std::string& origin) {
  std::vector<std::pair<std::string, std::string>> merges;
  auto it = model.find("merges");
  if (it == model.end() || it->is_null()) return merges;
  if (!it->is_array()) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: model.merges should be an array, found {}",
                                                origin, it->type_name()));
  }
  merges.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    // Two spellings: "a b" (older files; tokens cannot hold a space) and ["a", "b"].
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: model.merges[{}] is {:?}; expected two tokens separated "
                                "by one space",
                                origin, i, s));
      }
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: model.merges[{}] is {}; expected \"a b\" or [\"a\", \"b\"]",
                              origin, i, m.dump()));
    }
  }
  return merges;
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json,
                               std::string_view tokenizer_config_json,
                               std::string_view generation_config_json,
                               std::string_view origin_sv) {
  auto im = std::make_unique<Impl>();
  const std::string origin(origin_sv);
  im->origin = origin;
  const json j = parse_json(tokenizer_json, origin);
  if (!j.is_object()) {
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: expected a JSON object (a Hugging Face tokenizer.json), "
                            "found {}",
                            origin, j.type_name()));
  }
  auto mit = j.find("model");
  if (mit == j.end() || !mit->is_object()) {
    throw Error(
        ErrorKind::kFormat,
        fmt::format("{}: no \"model\" object; is this a Hugging Face tokenizer.json?", origin));
  }
  const json& model = *mit;

  // --- the model
  std::string type;
  if (model.contains("type")) {
    type = tok::json_string(model, "type", origin, "model");
  } else if (model.contains("vocab") && model.contains("merges")) {
    type = "BPE";  // files from old versions of tokenizers leave the type out
  }
  if (type != "BPE") {
    if (type == "WordPiece" || type == "Unigram" || type == "WordLevel") {
      throw Error(
          ErrorKind::kUnsupported,
          fmt::format("{}: model type \"{}\" is not supported; gptq.cpp reads BPE tokenizers",
                      origin, type));
    }
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: unknown model type \"{}\"; expected \"BPE\"", origin, type));
  }
  const json& vocab_j = tok::json_at(model, "vocab", origin, "model");
  if (!vocab_j.is_object()) {
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: model.vocab should be an object of token -> id, found {}", origin,
                            vocab_j.type_name()));
  }
  const size_t n_model = vocab_j.size();
  const json empty_array = json::array();
  const json* added_j = &empty_array;
  if (auto it = j.find("added_tokens"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) {
      throw Error(ErrorKind::kFormat, fmt::format("{}: added_tokens should be an array, found {}",
                                                  origin, it->type_name()));
    }
    added_j = &*it;
  }
  // Ids are dense: the model's vocabulary holds [0, n_model) and added tokens either repeat one of
  // those or extend the range. Anything past n_model + n_added cannot be a real id.
  const size_t limit = n_model + added_j->size();
  if (limit > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: {} tokens is more than gptq.cpp can index", origin, limit));
  }

  tok::Vocab vocab;
  vocab.reserve(n_model);
  std::vector<std::string> model_pieces(n_model);
  std::vector<bool> model_seen(n_model, false);
  for (const auto& [token, idj] : vocab_j.items()) {
    if (!idj.is_number_integer()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: model.vocab: token {:?} has the id {}, not an integer", origin,
                              token, idj.dump()));
    }
    const int64_t id = idj.get<int64_t>();
    if (id < 0 || static_cast<size_t>(id) >= n_model) {
      throw Error(ErrorKind::kFormat, fmt::format("{}: model.vocab: token {:?} has id {}, beyond "
                                                  "the vocabulary of {} tokens (ids 0 to {})",
                                                  origin, token, id, n_model, n_model - 1));
    }
    const auto uid = static_cast<size_t>(id);
    if (model_seen[uid]) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: model.vocab: tokens {:?} and {:?} both have id {}", origin,
                              model_pieces[uid], token, id));
    }
    model_seen[uid] = true;
    model_pieces[uid] = token;
    vocab.emplace(token, static_cast<int32_t>(id));
  }

  tok::BpeOptions opts;
  opts.byte_fallback = tok::json_bool(model, "byte_fallback", false, origin, "model");
  opts.fuse_unk = tok::json_bool(model, "fuse_unk", false, origin, "model");
  opts.ignore_merges = tok::json_bool(model, "ignore_merges", false, origin, "model");
  for (auto [key, dst] : {std::pair{"continuing_subword_prefix", &opts.continuing_subword_prefix},
                          std::pair{"end_of_word_suffix", &opts.end_of_word_suffix}}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null()) *dst = tok::json_string(model, key, origin, "model");
  }
  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    const std::string unk = tok::json_string(model, "unk_token", origin, "model");
    auto u = vocab.find(unk);
    if (u == vocab.end()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: model.unk_token {:?} is not in the vocabulary", origin, unk));
    }
    opts.unk_id = u->second;
  }
  im->bpe = std::make_unique<tok::Bpe>(std::move(vocab), read_merges(model, origin),
                                       std::move(opts), origin);
  const tok::Vocab& v = im->bpe->vocab();

  // --- added tokens
  std::unordered_map<int32_t, size_t> added_by_id;
  std::unordered_map<std::string, size_t> added_by_content;
  size_t n_ids = n_model;
  for (size_t i = 0; i < added_j->size(); ++i) {
    const json& a = (*added_j)[i];
    const std::string where = fmt::format("added_tokens[{}]", i);
    AddedToken t;
    t.content = tok::json_string(a, "content", origin, where);
    const json& idj = tok::json_at(a, "id", origin, where);
    if (!idj.is_number_integer()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}: token {:?} has the id {}, not an integer", origin, where,
                              t.content, idj.dump()));
    }
    const int64_t id = idj.get<int64_t>();
    if (id < 0 || static_cast<size_t>(id) >= limit) {
      throw Error(
          ErrorKind::kFormat,
          fmt::format(
              "{}: {}: token {:?} has id {}, beyond the vocabulary ({} model tokens + {} added "
              "tokens allow ids 0 to {})",
              origin, where, t.content, id, n_model, added_j->size(), limit - 1));
    }
    t.id = static_cast<int32_t>(id);
    t.special = tok::json_bool(a, "special", false, origin, where);
    t.lstrip = tok::json_bool(a, "lstrip", false, origin, where);
    t.rstrip = tok::json_bool(a, "rstrip", false, origin, where);
    t.single_word = tok::json_bool(a, "single_word", false, origin, where);
    if (auto d = added_by_id.find(t.id); d != added_by_id.end()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}: tokens {:?} and {:?} both have id {}", origin, where,
                              im->added[d->second].content, t.content, id));
    }
    if (auto d = added_by_content.find(t.content); d != added_by_content.end()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}: token {:?} appears twice, with ids {} and {}", origin, where,
                              t.content, im->added[d->second].id, id));
    }
    if (auto m = v.find(t.content); m != v.end() && m->second != t.id) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}: token {:?} has id {} here but id {} in model.vocab", origin,
                              where, t.content, id, m->second));
    }
    added_by_id.emplace(t.id, im->added.size());
    added_by_content.emplace(t.content, im->added.size());
    n_ids = std::max(n_ids, static_cast<size_t>(t.id) + 1);
    im->added.push_back(std::move(t));
  }
  for (uint32_t k = 0; k < im->added.size(); ++k) {
    const auto& c = im->added[k].content;
    if (!c.empty()) im->added_by_byte[static_cast<unsigned char>(c[0])].push_back(k);
  }
  for (auto& list : im->added_by_byte) {
    std::stable_sort(list.begin(), list.end(), [&](uint32_t a, uint32_t b) {
      return im->added[a].content.size() > im->added[b].content.size();
    });
  }

  im->pieces.resize(n_ids);
  im->kinds.assign(n_ids, IdKind::kHole);
  for (size_t id = 0; id < n_model; ++id) {
    im->pieces[id] = std::move(model_pieces[id]);
    im->kinds[id] = IdKind::kModel;
  }
  for (const auto& t : im->added) {
    // An added token that repeats a model id (Llama's <unk> <s> </s>) is the same string; one
    // beyond the model extends the vocabulary (Llama 3's <|begin_of_text|>, Qwen2's <|im_end|>).
    im->pieces[static_cast<size_t>(t.id)] = t.content;
    im->kinds[static_cast<size_t>(t.id)] = t.special ? IdKind::kSpecial : IdKind::kAdded;
  }
  const auto vocab_size = static_cast<int32_t>(n_ids);

  // --- text stages
  auto stage = [&](const char* key) -> const json& {
    static const json null_json;
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  im->normalizer = tok::make_normalizer(stage("normalizer"), origin);
  im->pre_tokenizer = tok::make_pre_tokenizer(stage("pre_tokenizer"), origin);
  im->decoder = tok::make_decoder(stage("decoder"), origin);
  read_post_processor(stage("post_processor"), origin, "post_processor", im->prefix, im->suffix,
                      vocab_size);

  // --- BOS/EOS: tokenizer_config.json names the tokens and may say whether they are added;
  //     generation_config.json gives ids.
  const std::string cfg_origin = sibling(origin, "tokenizer_config.json");
  const std::string gen_origin = sibling(origin, "generation_config.json");
  auto resolve = [&](const std::string& s, const char* key) {
    const int32_t id = im->find_token(s);
    if (id < 0) {
      throw Error(ErrorKind::kFormat, fmt::format("{}: {} is {:?}, which is not a token of {}",
                                                  cfg_origin, key, s, origin));
    }
    return id;
  };
  int32_t cfg_bos = -1, cfg_eos = -1;
  std::optional<bool> add_bos, add_eos;
  if (!tokenizer_config_json.empty()) {
    const json cfg = parse_json(tokenizer_config_json, cfg_origin);
    if (!cfg.is_object()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: expected a JSON object, found {}", cfg_origin, cfg.type_name()));
    }
    if (auto s = config_token(cfg, "bos_token", cfg_origin)) cfg_bos = resolve(*s, "bos_token");
    if (auto s = config_token(cfg, "eos_token", cfg_origin)) cfg_eos = resolve(*s, "eos_token");
    if (cfg.contains("add_bos_token") && !cfg["add_bos_token"].is_null()) {
      add_bos = tok::json_bool(cfg, "add_bos_token", false, cfg_origin, "tokenizer_config");
    }
    if (cfg.contains("add_eos_token") && !cfg["add_eos_token"].is_null()) {
      add_eos = tok::json_bool(cfg, "add_eos_token", false, cfg_origin, "tokenizer_config");
    }
  }
  int32_t gen_bos = -1;
  std::vector<int32_t> gen_eos;
  if (!generation_config_json.empty()) {
    const json gen = parse_json(generation_config_json, gen_origin);
    if (!gen.is_object()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: expected a JSON object, found {}", gen_origin, gen.type_name()));
    }
    auto check = [&](const json& x, const char* key) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= vocab_size) {
        throw Error(ErrorKind::kFormat, fmt::format("{}: {} is {}; expected a token id in [0, {})",
                                                    gen_origin, key, x.dump(), vocab_size));
      }
      return static_cast<int32_t>(x.get<int64_t>());
    };
    if (auto it = gen.find("bos_token_id"); it != gen.end() && !it->is_null())
      gen_bos = check(*it, "bos_token_id");
    if (auto it = gen.find("eos_token_id"); it != gen.end() && !it->is_null()) {
      if (it->is_array()) {
        for (const auto& x : *it) gen_eos.push_back(check(x, "eos_token_id"));
      } else {
        gen_eos.push_back(check(*it, "eos_token_id"));
      }
    }
  }
  im->bos = cfg_bos >= 0   ? cfg_bos
            : gen_bos >= 0 ? gen_bos
                           : (!im->prefix.empty() ? im->prefix.front() : -1);
  im->eos = gen_eos;
  if (cfg_eos >= 0 && std::find(im->eos.begin(), im->eos.end(), cfg_eos) == im->eos.end()) {
    im->eos.push_back(cfg_eos);
  }
  // add_bos_token / add_eos_token, where given, decide (transformers' LlamaTokenizerFast rebuilds
  // its template from them); otherwise the post-processor's template does (Llama 3:
  // "<|begin_of_text|> $A"; Qwen2 has no template and adds nothing).
  if (add_bos) {
    im->prefix.clear();
    if (*add_bos) {
      if (im->bos < 0) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: add_bos_token is true but no BOS token is named (bos_token)",
                                cfg_origin));
      }
      im->prefix.push_back(im->bos);
    }
  }
  if (add_eos) {
    im->suffix.clear();
    if (*add_eos) {
      const int32_t e = cfg_eos >= 0 ? cfg_eos : (im->eos.empty() ? -1 : im->eos.front());
      if (e < 0) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: add_eos_token is true but no EOS token is named (eos_token)",
                                cfg_origin));
      }
      im->suffix.push_back(e);
    }
  }
  return Tokenizer(std::move(im));
}

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  const auto tj = dir / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::exists(tj, ec)) {
    if (std::filesystem::exists(dir / "tokenizer.model", ec)) {
      throw Error(
          ErrorKind::kUnsupported,
          fmt::format(
              "{}: no tokenizer.json, only tokenizer.model; gptq.cpp reads tokenizer.json (save "
              "the tokenizer with transformers' AutoTokenizer to make one)",
              dir.string()));
    }
    throw Error(ErrorKind::kIo, fmt::format("{}: no tokenizer.json in this folder", dir.string()));
  }
  const std::string text = read_file(tj);
  std::string cfg, gen;
  if (std::filesystem::exists(dir / "tokenizer_config.json", ec))
    cfg = read_file(dir / "tokenizer_config.json");
  if (std::filesystem::exists(dir / "generation_config.json", ec))
    gen = read_file(dir / "generation_config.json");
  return from_json(text, cfg, gen, tj.string());
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& im = *impl_;
  // Regexes and the model work on valid UTF-8; ill-formed input bytes become U+FFFD first.
  std::string cleaned;
  if (!tok::utf8_valid(text)) {
    cleaned = tok::utf8_lossy(text);
    text = cleaned;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out.insert(out.end(), im.prefix.begin(), im.prefix.end());
  std::vector<Segment> segs;
  im.split_added(text, segs);
  std::unordered_map<std::string, std::pair<size_t, size_t>> cache;
  std::vector<int32_t> cache_ids;
  for (const auto& s : segs) {
    if (s.id >= 0) {
      out.push_back(s.id);
    } else {
      im.encode_text(text.substr(s.b, s.e - s.b), s.b == 0, out, cache, cache_ids);
    }
  }
  if (add_special) out.insert(out.end(), im.suffix.begin(), im.suffix.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  return tok::utf8_lossy(impl_->decode_raw(ids.data(), ids.size(), skip_special));
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->pieces.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
const std::vector<int32_t>& Tokenizer::eos_ids() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return !impl_->prefix.empty(); }

bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->kinds.size()) return false;
  return impl_->kinds[static_cast<size_t>(id)] == IdKind::kSpecial;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  impl_->check_id(id);
  return impl_->pieces[static_cast<size_t>(id)];
}

// Streaming keeps a short window of recent ids and decodes it whole on each push: the decoders
// treat the first token of a text specially (Strip removes its leading space, Metaspace its
// replacement character), so a new token must be decoded after some context to come out as it
// does in decode() of the whole sequence. Its text is what the window's decode gained.
namespace {
constexpr size_t kStreamWindow = 16;  // re-window once this many ids are held
constexpr size_t kStreamContext = 4;  // ids kept as context (output ones; special ones are skipped)
}  // namespace

std::string Tokenizer::StreamDecoder::push(int32_t id) {
  const Impl& im = *tok_->impl_;
  im.check_id(id);
  ids_.push_back(id);
  const std::string raw = im.decode_raw(ids_.data(), ids_.size(), true);
  std::string out;
  size_t pos = std::min(emitted_, raw.size());
  while (pos < raw.size()) {
    const tok::Utf8Char c = tok::utf8_next(raw, pos);
    if (c.status == tok::Utf8Status::kIncomplete) break;  // wait for the character's other bytes
    if (c.status == tok::Utf8Status::kValid) {
      out.append(raw, pos, static_cast<size_t>(c.len));
    } else {
      out.append(tok::kReplacementChar);  // these bytes can never become a character
    }
    pos += static_cast<size_t>(c.len);
  }
  emitted_ = pos;
  if (pos == raw.size() && ids_.size() >= kStreamWindow) {
    std::vector<int32_t> keep;
    for (size_t k = ids_.size(); k-- > 0 && keep.size() < kStreamContext;) {
      if (!im.skipped(ids_[k], true)) keep.push_back(ids_[k]);
    }
    std::reverse(keep.begin(), keep.end());
    ids_ = std::move(keep);
    emitted_ = im.decode_raw(ids_.data(), ids_.size(), true).size();
  }
  return out;
}

std::string Tokenizer::StreamDecoder::flush() {
  const Impl& im = *tok_->impl_;
  const std::string raw = im.decode_raw(ids_.data(), ids_.size(), true);
  std::string out;
  if (emitted_ < raw.size()) tok::utf8_append_lossy(out, std::string_view(raw).substr(emitted_));
  emitted_ = raw.size();
  return out;
}

}  // namespace gptq
