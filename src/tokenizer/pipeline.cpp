#include "tokenizer/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "gptq/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// JSON helpers

const json& json_at(const json& j, std::string_view key, std::string_view origin,
                    std::string_view where) {
  if (!j.is_object()) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {} should be a JSON object, found {}", origin,
                                                where, j.type_name()));
  }
  auto it = j.find(std::string(key));
  if (it == j.end()) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {} has no \"{}\"", origin, where, key));
  }
  return *it;
}

std::string json_string(const json& j, std::string_view key, std::string_view origin,
                        std::string_view where) {
  const json& v = json_at(j, key, origin, where);
  if (!v.is_string()) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {}.{} should be a string, found {}", origin,
                                                where, key, v.type_name()));
  }
  return v.get<std::string>();
}

bool json_bool(const json& j, std::string_view key, bool dflt, std::string_view origin,
               std::string_view where) {
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {}.{} should be true or false, found {}",
                                                origin, where, key, it->type_name()));
  }
  return it->get<bool>();
}

namespace {

int64_t json_int(const json& j, std::string_view key, int64_t dflt, std::string_view origin,
                 std::string_view where) {
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number_integer()) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {}.{} should be an integer, found {}", origin,
                                                where, key, it->type_name()));
  }
  return it->get<int64_t>();
}

std::string type_of(const json& j, std::string_view origin, std::string_view where) {
  return json_string(j, "type", origin, where);
}

[[noreturn]] void unsupported(std::string_view origin, std::string_view what,
                              std::string_view type) {
  throw Error(ErrorKind::kUnsupported,
              fmt::format("{}: the {} type \"{}\" is not supported", origin, what, type));
}

// The single character of a Metaspace replacement or Strip content, as its UTF-8 bytes.
std::string one_char(const json& j, std::string_view key, std::string_view origin,
                     std::string_view where) {
  std::string s = json_string(j, key, origin, where);
  const bool one = !s.empty() && utf8_next(s, 0).status == Utf8Status::kValid &&
                   static_cast<size_t>(utf8_next(s, 0).len) == s.size();
  if (!one) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {}.{} should be one character, found {:?}",
                                                origin, where, key, s));
  }
  return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

bool is_unicode_space(uint32_t cp) {
  // The White_Space property, as Rust's char::is_whitespace uses it.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// A split pattern: a literal string or a regular expression.
class Matcher {
 public:
  Matcher(const json& pattern, std::string_view origin, std::string_view where) {
    if (!pattern.is_object()) {
      throw Error(ErrorKind::kFormat, fmt::format("{}: {}.pattern should be {{\"String\": ...}} or "
                                                  "{{\"Regex\": ...}}, found {}",
                                                  origin, where, pattern.type_name()));
    }
    if (pattern.contains("Regex")) {
      regex_ = std::make_unique<Regex>(json_string(pattern, "Regex", origin, where), origin);
    } else if (pattern.contains("String")) {
      literal_ = json_string(pattern, "String", origin, where);
    } else {
      throw Error(
          ErrorKind::kFormat,
          fmt::format("{}: {}.pattern has neither \"String\" nor \"Regex\"", origin, where));
    }
  }
  static Matcher regex(std::string_view pattern, std::string_view origin) {
    return Matcher(std::make_unique<Regex>(pattern, origin));
  }
  static Matcher literal(std::string s) { return Matcher(std::move(s)); }

  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
    if (regex_) {
      regex_->find_all(s, out);
      return;
    }
    if (literal_.empty()) return;
    size_t pos = 0;
    while ((pos = s.find(literal_, pos)) != std::string_view::npos) {
      out.emplace_back(pos, pos + literal_.size());
      pos += literal_.size();
    }
  }
  bool is_regex() const { return regex_ != nullptr; }

 private:
  explicit Matcher(std::unique_ptr<Regex> r) : regex_(std::move(r)) {}
  explicit Matcher(std::string s) : literal_(std::move(s)) {}
  std::unique_ptr<Regex> regex_;
  std::string literal_;
};

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const json& j, std::string_view origin, std::string_view where,
                        Behavior dflt) {
  auto it = j.find("behavior");
  if (it == j.end() || it->is_null()) return dflt;
  const std::string b = json_string(j, "behavior", origin, where);
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  throw Error(ErrorKind::kFormat,
              fmt::format("{}: {}.behavior \"{}\" is not one of Removed, Isolated, "
                          "MergedWithPrevious, MergedWithNext, Contiguous",
                          origin, where, b));
}

struct Span {
  size_t b, e;
  bool match;
};

// Splits `p` at the matches of `m` the way Hugging Face's NormalizedString::split does: the text
// is covered by alternating non-match and match spans, `invert` swaps their roles, the behaviour
// decides what happens to the matches, and empty parts are dropped.
void split_piece(Piece& p, const Matcher& m, Behavior behavior, bool invert,
                 std::vector<Piece>& out, std::vector<std::pair<size_t, size_t>>& hits,
                 std::vector<Span>& spans) {
  hits.clear();
  m.find_all(p.text, hits);
  if (hits.empty() && !invert) {
    // Nothing to cut (or, for Removed, nothing to remove).
    if (!p.text.empty()) out.push_back(std::move(p));
    return;
  }
  spans.clear();
  size_t prev = 0;
  for (const auto& [b, e] : hits) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != p.text.size()) spans.push_back({prev, p.text.size(), invert});

  std::vector<std::pair<size_t, size_t>> ranges;
  ranges.reserve(spans.size());
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& s : spans) ranges.emplace_back(s.b, s.e);
      break;
    case Behavior::kRemoved:
      for (const auto& s : spans) {
        if (!s.match) ranges.emplace_back(s.b, s.e);
      }
      break;
    case Behavior::kContiguous: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.match == prev_match && !ranges.empty()) {
          ranges.back().second = s.e;
        } else {
          ranges.emplace_back(s.b, s.e);
        }
        prev_match = s.match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.match && !prev_match && !ranges.empty()) {
          ranges.back().second = s.e;
        } else {
          ranges.emplace_back(s.b, s.e);
        }
        prev_match = s.match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = spans.size(); k-- > 0;) {
        const auto& s = spans[k];
        if (s.match && !prev_match && !ranges.empty()) {
          ranges.back().first = s.b;
        } else {
          ranges.emplace_back(s.b, s.e);
        }
        prev_match = s.match;
      }
      std::reverse(ranges.begin(), ranges.end());
      break;
    }
  }
  for (const auto& [b, e] : ranges) {
    if (e > b) out.push_back({p.text.substr(b, e - b), p.at_start && b == 0});
  }
}

// ---------------------------------------------------------------------------------------------
// Normalizers

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void apply(std::string& s) const override {
    for (const auto& n : steps_) n->apply(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s = prepend_ + s;
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Matcher m, std::string content)
      : m_(std::move(m)), content_(std::move(content)) {}
  void apply(std::string& s) const override {
    std::vector<std::pair<size_t, size_t>> hits;
    m_.find_all(s, hits);
    if (hits.empty()) return;
    std::string out;
    out.reserve(s.size() + hits.size() * content_.size());
    size_t prev = 0;
    for (const auto& [b, e] : hits) {
      out.append(s, prev, b - prev);
      out.append(content_);
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }

 private:
  Matcher m_;
  std::string content_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        const Utf8Char c = utf8_next(s, b);
        if (c.status != Utf8Status::kValid || !is_unicode_space(c.cp)) break;
        b += static_cast<size_t>(c.len);
      }
    }
    if (right_) {
      while (e > b) {
        size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        const Utf8Char c = utf8_next(s, k);
        if (c.status != Utf8Status::kValid || !is_unicode_space(c.cp)) break;
        e = k;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// Unicode normalization form C. Text that is already in NFC (nearly all text, and every text
// whose characters are below U+0300) is unchanged by it; composing decomposed sequences would need
// the Unicode composition tables, which we do not carry, so such text passes through as is.
class NfcNormalizer final : public Normalizer {
 public:
  void apply(std::string&) const override {}
};

std::unique_ptr<Normalizer> build_normalizer(const json& j, std::string_view origin,
                                             const std::string& where) {
  const std::string type = type_of(j, origin, where);
  if (type == "Sequence") {
    const json& list = json_at(j, "normalizers", origin, where);
    if (!list.is_array()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}.normalizers should be an array", origin, where));
    }
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      steps.push_back(
          build_normalizer(list[i], origin, fmt::format("{}.normalizers[{}]", where, i)));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(json_string(j, "prepend", origin, where));
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(
        Matcher(json_at(j, "pattern", origin, where), origin, where),
        json_string(j, "content", origin, where));
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(json_bool(j, "strip_left", true, origin, where),
                                             json_bool(j, "strip_right", true, origin, where));
  }
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  unsupported(origin, "normalizer", type);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& p : steps_) p->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Matcher m, Behavior b, bool invert)
      : m_(std::move(m)), behavior_(b), invert_(invert) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    std::vector<std::pair<size_t, size_t>> hits;
    std::vector<Span> spans;
    for (auto& p : pieces) split_piece(p, m_, behavior_, invert_, out, hits, spans);
    pieces = std::move(out);
  }

 private:
  Matcher m_;
  Behavior behavior_;
  bool invert_;
};

// GPT-2's pattern, which ByteLevel applies when use_regex is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, std::string_view origin)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Matcher>(Matcher::regex(kGpt2Pattern, origin));
    const auto& chars = byte_level_chars();
    for (int b = 0; b < 256; ++b) {
      utf8_append(mapped_[b], chars[static_cast<size_t>(b)]);
    }
  }
  void apply(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& p : pieces) {
        if (!starts_with(p.text, " ")) p.text.insert(p.text.begin(), ' ');
      }
    }
    if (regex_) {
      std::vector<Piece> out;
      std::vector<std::pair<size_t, size_t>> hits;
      std::vector<Span> spans;
      for (auto& p : pieces) split_piece(p, *regex_, Behavior::kIsolated, false, out, hits, spans);
      pieces = std::move(out);
    }
    std::string m;
    for (auto& p : pieces) {
      m.clear();
      m.reserve(p.text.size() * 2);
      for (char c : p.text) m += mapped_[static_cast<unsigned char>(c)];
      std::swap(p.text, m);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Matcher> regex_;
  std::string mapped_[256];
};

enum class PrependScheme { kAlways, kFirst, kNever };

PrependScheme parse_prepend_scheme(const json& j, std::string_view origin, std::string_view where) {
  auto it = j.find("prepend_scheme");
  if (it != j.end() && !it->is_null()) {
    const std::string s = json_string(j, "prepend_scheme", origin, where);
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: {}.prepend_scheme \"{}\" is not one of always, "
                            "first, never",
                            origin, where, s));
  }
  // Files written before prepend_scheme existed say add_prefix_space instead.
  return json_bool(j, "add_prefix_space", true, origin, where) ? PrependScheme::kAlways
                                                               : PrependScheme::kNever;
}

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split ? std::make_unique<Matcher>(Matcher::literal(replacement_)) : nullptr) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (auto& p : pieces) {
      replace_all(p.text, " ", replacement_);
      const bool needs_prefix = !starts_with(p.text, replacement_);
      if (needs_prefix &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start))) {
        p.text = replacement_ + p.text;
      }
    }
    if (split_) {
      std::vector<Piece> out;
      std::vector<std::pair<size_t, size_t>> hits;
      std::vector<Span> spans;
      for (auto& p : pieces)
        split_piece(p, *split_, Behavior::kMergedWithNext, false, out, hits, spans);
      pieces = std::move(out);
    }
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  std::unique_ptr<Matcher> split_;
};

std::unique_ptr<PreTokenizer> build_pre_tokenizer(const json& j, std::string_view origin,
                                                  const std::string& where) {
  const std::string type = type_of(j, origin, where);
  if (type == "Sequence") {
    const json& list = json_at(j, "pretokenizers", origin, where);
    if (!list.is_array()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}.pretokenizers should be an array", origin, where));
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      steps.push_back(
          build_pre_tokenizer(list[i], origin, fmt::format("{}.pretokenizers[{}]", where, i)));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(
        Matcher(json_at(j, "pattern", origin, where), origin, where),
        parse_behavior(j, origin, where, Behavior::kIsolated),
        json_bool(j, "invert", false, origin, where));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(
        json_bool(j, "add_prefix_space", true, origin, where),
        json_bool(j, "use_regex", true, origin, where), origin);
  }
  if (type == "Metaspace") {
    std::string repl = j.contains("replacement") ? one_char(j, "replacement", origin, where)
                                                 : one_char(j, "str_rep", origin, where);
    return std::make_unique<MetaspacePreTokenizer>(std::move(repl),
                                                   parse_prepend_scheme(j, origin, where),
                                                   json_bool(j, "split", true, origin, where));
  }
  if (type == "Digits") {
    const bool individual = json_bool(j, "individual_digits", false, origin, where);
    return std::make_unique<SplitPreTokenizer>(
        Matcher::regex(R"(\p{N})", origin),
        individual ? Behavior::kIsolated : Behavior::kContiguous, false);
  }
  if (type == "Whitespace") {
    // Words and runs of punctuation are kept; the whitespace between them goes.
    return std::make_unique<SplitPreTokenizer>(Matcher::regex(R"(\w+|[^\w\s]+)", origin),
                                               Behavior::kRemoved, true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<SplitPreTokenizer>(Matcher::regex(R"(\s)", origin), Behavior::kRemoved,
                                               false);
  }
  if (type == "Punctuation") {
    // Rust's is_ascii_punctuation (which includes symbols such as $ + < = > ^ ` | ~) or a Unicode
    // punctuation category.
    return std::make_unique<SplitPreTokenizer>(
        Matcher::regex(R"([\p{P}\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}])", origin),
        parse_behavior(j, origin, where, Behavior::kIsolated), false);
  }
  if (type == "CharDelimiterSplit") {
    return std::make_unique<SplitPreTokenizer>(
        Matcher::literal(one_char(j, "delimiter", origin, where)), Behavior::kRemoved, false);
  }
  unsupported(origin, "pre_tokenizer", type);
}

// ---------------------------------------------------------------------------------------------
// Decoders

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (const auto& d : steps_) d->apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Matcher m, std::string content) : m_(std::move(m)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<size_t, size_t>> hits;
    for (auto& t : tokens) {
      // A regex may only look at valid UTF-8; raw bytes from an earlier stage are left alone.
      if (m_.is_regex() && !utf8_valid(t)) continue;
      hits.clear();
      m_.find_all(t, hits);
      if (hits.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : hits) {
        out.append(t, prev, b - prev);
        out.append(content_);
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Matcher m_;
  std::string content_;
};

// "<0xNN>" tokens become the byte NN. Invalid or unfinished byte sequences are replaced when the
// text is finally made valid UTF-8, one U+FFFD per maximal ill-formed subpart (Hugging Face gives
// one per byte of an invalid run; the valid text is the same).
class ByteFallbackDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    for (auto& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        const int hi = hex(t[3]), lo = hex(t[4]);
        if (hi >= 0 && lo >= 0) t.assign(1, static_cast<char>(hi * 16 + lo));
      }
    }
  }
};

class FuseDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    if (tokens.size() <= 1) return;
    size_t n = 0;
    for (const auto& t : tokens) n += t.size();
    std::string all;
    all.reserve(n);
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0;
           k < start_ && e - b >= content_.size() && t.compare(b, content_.size(), content_) == 0;
           ++k) {
        b += content_.size();
      }
      for (size_t k = 0; k < stop_ && e - b >= content_.size() &&
                         t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k) {
        e -= content_.size();
      }
      if (b != 0 || e != t.size()) t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

// Maps each character back to its byte. A token with a character outside the map (an added token
// such as "<|eot_id|>" is all ASCII and maps; one with other characters may not) keeps its own
// UTF-8 bytes, as Hugging Face does. The tokens are joined into one.
class ByteLevelDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    std::string bytes;
    for (const auto& t : tokens) {
      bytes.clear();
      bool ok = true;
      size_t i = 0;
      while (i < t.size()) {
        const Utf8Char c = utf8_next(t, i);
        const int b = c.status == Utf8Status::kValid ? byte_level_byte(c.cp) : -1;
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
        i += static_cast<size_t>(c.len);
      }
      all += ok ? bytes : t;
    }
    tokens.assign(1, std::move(all));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : replacement_(std::move(replacement)), scheme_(scheme) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      // The first token loses its replacement characters (they are the prepended space); the
      // others turn them into spaces.
      replace_all(tokens[i], replacement_, i == 0 && scheme_ != PrependScheme::kNever ? "" : " ");
    }
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

std::unique_ptr<Decoder> build_decoder(const json& j, std::string_view origin,
                                       const std::string& where) {
  const std::string type = type_of(j, origin, where);
  if (type == "Sequence") {
    const json& list = json_at(j, "decoders", origin, where);
    if (!list.is_array()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}.decoders should be an array", origin, where));
    }
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      steps.push_back(build_decoder(list[i], origin, fmt::format("{}.decoders[{}]", where, i)));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(
        Matcher(json_at(j, "pattern", origin, where), origin, where),
        json_string(j, "content", origin, where));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const int64_t start = json_int(j, "start", 0, origin, where);
    const int64_t stop = json_int(j, "stop", 0, origin, where);
    if (start < 0 || stop < 0) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {}.start and .stop must not be negative", origin, where));
    }
    return std::make_unique<StripDecoder>(one_char(j, "content", origin, where),
                                          static_cast<size_t>(start), static_cast<size_t>(stop));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    std::string repl = j.contains("replacement") ? one_char(j, "replacement", origin, where)
                                                 : one_char(j, "str_rep", origin, where);
    return std::make_unique<MetaspaceDecoder>(std::move(repl),
                                              parse_prepend_scheme(j, origin, where));
  }
  unsupported(origin, "decoder", type);
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, std::string_view origin) {
  if (j.is_null()) return nullptr;
  return build_normalizer(j, origin, "normalizer");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, std::string_view origin) {
  if (j.is_null()) return nullptr;
  return build_pre_tokenizer(j, origin, "pre_tokenizer");
}

std::unique_ptr<Decoder> make_decoder(const json& j, std::string_view origin) {
  if (j.is_null()) return nullptr;
  return build_decoder(j, origin, "decoder");
}

namespace {

struct ByteLevelTables {
  std::array<uint32_t, 256> chars{};
  std::array<int16_t, 0x144> bytes{};  // every mapped character is below U+0144
  ByteLevelTables() {
    bytes.fill(-1);
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      chars[b] = printable ? b : 0x100 + n++;
      bytes[chars[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables t;
  return t;
}

}  // namespace

const std::array<uint32_t, 256>& byte_level_chars() { return byte_level_tables().chars; }

int byte_level_byte(uint32_t cp) {
  const auto& t = byte_level_tables();
  return cp < t.bytes.size() ? t.bytes[cp] : -1;
}

}  // namespace gptq::tok
