// Tokenizer::StreamDecoder: text comes out as soon as it is complete, characters split over byte
// tokens are held back until their last byte, and the concatenated pieces equal decode() of the
// whole sequence.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "gptq/tokenizer.h"

namespace gptq {
namespace {

using Ids = std::vector<int32_t>;

const Tokenizer& stories() {
  static const Tokenizer t = Tokenizer::from_dir(test::stories_dir());
  return t;
}
const Tokenizer& llama3() {
  static const Tokenizer t = Tokenizer::from_dir(test::data_dir() / "tokenizer" / "llama3_tiny");
  return t;
}

std::vector<std::string> push_all(const Tokenizer& t, const Ids& ids) {
  Tokenizer::StreamDecoder sd(t);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(sd.push(id));
  out.push_back(sd.flush());
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x;
  return s;
}

TEST(StreamDecoder, MultibyteCharOverByteFallbackTokens) {
  // stories260k: "a ï" -> ▁a (261), ▁ (410), <0xC3> (198), <0xAF> (178). The C3 byte alone is
  // an unfinished character: nothing comes out until AF completes "ï".
  const Ids ids = stories().encode("a \xC3\xAF", false);
  ASSERT_EQ(ids, (Ids{261, 410, 198, 178}));
  const auto out = push_all(stories(), ids);
  EXPECT_EQ(out, (std::vector<std::string>{"a", " ", "", "\xC3\xAF", ""}));

  // "✓" (E2 9C 93): three byte tokens, one character.
  const auto check = push_all(stories(), {229, 159, 150});
  EXPECT_EQ(check, (std::vector<std::string>{"", "", "\xE2\x9C\x93", ""}));
}

TEST(StreamDecoder, EmojiOverByteLevelTokens) {
  // llama3_tiny: 😀 = bytes F0 9F 98 80 = tokens 172 253 246 222 (see byte_level_test.cpp).
  const auto out = push_all(llama3(), {64, 172, 253, 246, 222, 65});
  EXPECT_EQ(out, (std::vector<std::string>{"a", "", "", "", "\xF0\x9F\x98\x80", "b", ""}));
}

TEST(StreamDecoder, InvalidBytesBecomeReplacementOnlyWhenTheyCannotComplete) {
  // C3 then 'a': once 'a' arrives the C3 can never complete, so it becomes U+FFFD.
  EXPECT_EQ(push_all(llama3(), {127, 64}), (std::vector<std::string>{"",
                                                                     "\xEF\xBF\xBD"
                                                                     "a",
                                                                     ""}));
  // A lone continuation byte (0x80, token 222) can never be part of a character: at once.
  EXPECT_EQ(push_all(llama3(), {222, 64}), (std::vector<std::string>{"\xEF\xBF\xBD", "a", ""}));
  // F0 9F then the end: flush gives up on it.
  EXPECT_EQ(push_all(llama3(), {172, 253}), (std::vector<std::string>{"", "", "\xEF\xBF\xBD"}));
}

TEST(StreamDecoder, SkipsSpecialTokensAndKeepsSpacesInContext) {
  // BOS is skipped; the first word loses the space the normalizer prepended, later ones keep it.
  const Ids ids = stories().encode("Once upon a time");
  const auto out = push_all(stories(), ids);
  EXPECT_EQ(out, (std::vector<std::string>{"", "Once", " upon", " a", " time", ""}));
  // An EOS in the middle is skipped and does not make the next word "first".
  const Ids a = stories().encode("Once upon", false);
  const Ids b = stories().encode("a time", false);
  Ids mixed = a;
  mixed.push_back(2);
  mixed.insert(mixed.end(), b.begin(), b.end());
  EXPECT_EQ(join(push_all(stories(), mixed)), stories().decode(mixed));
}

TEST(StreamDecoder, LongStreamsEqualDecode) {
  // Long enough to cross the decoder's internal re-windowing many times, with multibyte
  // characters in it.
  std::string text =
      test::read_file(test::data_dir() / "text" / "wikitext2-test.txt").substr(0, 6000);
  text += " caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x9C\x93 na\xC3\xAFve";
  for (const auto* t : {&stories(), &llama3()}) {
    const Ids ids = t->encode(text, true);
    EXPECT_EQ(join(push_all(*t, ids)), t->decode(ids));
    EXPECT_EQ(t->decode(ids), text);
  }
}

}  // namespace
}  // namespace gptq
