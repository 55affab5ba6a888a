// Strict JSON parsing for files we read from disk (safetensors headers, shard indexes): every
// failure is a gptq::Error(kFormat) naming the file, duplicate keys are refused (nlohmann keeps one
// of them silently), and nesting is bounded before the parser allocates anything.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace gptq::io::detail {

// Deepest nesting of arrays and objects we accept; real headers and indexes need 3.
inline constexpr int kMaxJsonDepth = 32;

// Parses text as JSON. `file` and `what` ("header", "index") only go into error messages.
// Throws Error(kFormat) for malformed JSON, nesting deeper than kMaxJsonDepth, or a key that
// appears twice in one object.
// `key_noun` names the keys of the outermost object in the duplicate message ("tensor name").
nlohmann::json parse_json_strict(std::string_view text, const std::string& file, const char* what,
                                 const char* key_noun = "key");

// A short, printable rendering of a value read from a file, for error messages: control bytes are
// escaped and long text is cut, so a hostile file cannot flood the message.
// With ascii_only, bytes >= 0x80 are escaped too (for text that may hold broken UTF-8).
std::string clip(std::string_view s, size_t max_len = 80, bool ascii_only = false);

// "a string \"F33\"", "an array of 3 elements", "the number -1", ... for "found ..." clauses.
std::string describe_json(const nlohmann::json& j);

}  // namespace gptq::io::detail
