// UTF-8 helpers for the tokenizer: well-formedness per the Unicode standard (Table 3-7), and
// replacement of ill-formed bytes by U+FFFD following the "maximal subpart" practice that Python's
// errors="replace" and Rust's from_utf8_lossy also follow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gptq::tok {

enum class Utf8Status {
  kValid,       // a complete, well-formed character
  kIncomplete,  // a well-formed prefix that the end of the input cuts short
  kInvalid,     // ill-formed: `len` bytes (the maximal subpart, at least 1) can never complete
};

struct Utf8Char {
  Utf8Status status;
  int len;      // bytes consumed: the character, the cut prefix, or the maximal subpart
  uint32_t cp;  // the code point when status is kValid, else 0
};

// Reads the character that starts at s[0]; n >= 1 bytes are available.
Utf8Char utf8_next(const unsigned char* s, size_t n);

inline Utf8Char utf8_next(std::string_view s, size_t pos) {
  return utf8_next(reinterpret_cast<const unsigned char*>(s.data()) + pos, s.size() - pos);
}

bool utf8_valid(std::string_view s);

// Appends s to out with every ill-formed or cut-short sequence replaced by U+FFFD.
void utf8_append_lossy(std::string& out, std::string_view s);
std::string utf8_lossy(std::string_view s);

// Appends the UTF-8 encoding of the code point cp (cp < 0x110000).
void utf8_append(std::string& out, uint32_t cp);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

}  // namespace gptq::tok
