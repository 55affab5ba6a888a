// The text stages of a Hugging Face tokenizer.json around the BPE model: normalizers (applied to
// each piece of text between added tokens), pre-tokenizers (which cut it into words) and
// decoders (which turn token strings back into text). Each is built from its JSON object; a type
// we do not implement is a gptq::Error(kUnsupported) naming the file and the type.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace gptq::tok {

// A piece of input text on its way through the pre-tokenizers.
struct Piece {
  std::string text;
  bool at_start;  // begins at offset 0 of the text given to encode() (Metaspace prepend "first")
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their split (and possibly rewritten) parts; empty parts are dropped.
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

// Decoders work on the list of token strings, as Hugging Face's decode_chain does. Strings may hold
// raw bytes (ByteFallback, ByteLevel); the text is made valid UTF-8 once, at the very end, so that
// a character split over several tokens survives until its last byte arrives.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

// Each returns nullptr for a JSON null (the stage is absent).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, std::string_view origin);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, std::string_view origin);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, std::string_view origin);

// GPT-2's reversible map from bytes to printable characters: bytes that are printable Latin-1
// map to themselves, the other 68 to U+0100 + n in byte order (space -> U+0120 'Ġ',
// newline -> U+010A 'Ċ').
const std::array<uint32_t, 256>& byte_level_chars();
// The inverse: the byte of a mapped character, -1 for any other character.
int byte_level_byte(uint32_t cp);

// Reads a JSON value of the expected type, or throws gptq::Error(kFormat) naming `origin`, the
// key path `where` and what was found.
const nlohmann::json& json_at(const nlohmann::json& j, std::string_view key,
                              std::string_view origin, std::string_view where);
std::string json_string(const nlohmann::json& j, std::string_view key, std::string_view origin,
                        std::string_view where);
bool json_bool(const nlohmann::json& j, std::string_view key, bool dflt, std::string_view origin,
               std::string_view where);

}  // namespace gptq::tok
