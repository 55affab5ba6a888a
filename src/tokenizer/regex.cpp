#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include <memory>

#include "gptq/error.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  if (n < 0) return fmt::format("PCRE2 error {}", code);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

Regex::Regex(std::string_view pattern, std::string_view origin) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code) {
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: the regex pattern {:?} does not compile at offset {}: {}", origin,
                            pattern_, static_cast<size_t>(err_off), pcre2_message(err)));
  }
  code_ = code;
  // JIT makes the pre-tokenizer several times faster; without it (a platform PCRE2 built without
  // JIT) the interpreter gives the same matches.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(code, nullptr));
  if (!md) throw std::bad_alloc();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  const size_t n = s.size();
  size_t pos = 0;
  uint32_t extra = 0;  // PCRE2_NO_JIT after the JIT stack ran out once
  while (pos <= n) {
    int rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK | extra, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit_) {
      // A pathological subject (a very long run that backtracks) exhausted the JIT's 32 KiB
      // stack; the interpreter keeps its frames on the heap.
      extra = PCRE2_NO_JIT;
      rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK | extra, md.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("the pre-tokenizer regex {:?} failed on the input: {}", pattern_,
                              pcre2_message(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const size_t b = ov[0], e = ov[1];
    out.emplace_back(b, e);
    if (e > b) {
      pos = e;
    } else {
      // An empty match: step over one character so the scan always moves forward.
      if (b >= n) break;
      pos = b + static_cast<size_t>(utf8_next(s, b).len);
    }
  }
}

}  // namespace gptq::tok
