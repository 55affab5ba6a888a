// A compiled PCRE2 pattern in UTF mode with Unicode properties (\p{L}, \p{N}; \s and \w are
// Unicode-aware), standing in for the Oniguruma patterns of Hugging Face tokenizers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gptq::tok {

class Regex {
 public:
  // Throws gptq::Error(kFormat) naming `origin`, the pattern and PCRE2's message when it does not
  // compile.
  Regex(std::string_view pattern, std::string_view origin);
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Appends the byte ranges [begin, end) of the successive non-overlapping matches in s, left to
  // right. s must be valid UTF-8 (the caller checks once; PCRE2 is told not to check again, which
  // would cost O(n) per match). Thread-safe: all match state is local to the call.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so that pcre2.h stays out of our headers
  bool jit_ = false;
};

}  // namespace gptq::tok
