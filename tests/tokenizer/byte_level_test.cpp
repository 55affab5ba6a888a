// Byte-level BPE (GPT-2, Llama 3, Qwen2 layout) on two tiny hand-made tokenizers in
// tests/data/tokenizer (made by make_tiny_tokenizers.py there). Every expected id below is worked
// out by hand from the rules that follow; none comes from running a tokenizer.
//
// Ids of single bytes. The vocabulary starts with GPT-2's 256 byte tokens in GPT-2's order: first
// the bytes that are printable Latin-1, which stand for themselves, then the other 68, which map
// to U+0100 + n. So:
//   0x21..0x7E -> id b - 33      ('!' 0, '\'' 6, '1' 16 .. '5' 20, 'I' 40, 'S' 50, 'T' 51,
//                                 'a' 64, 'b' 65, 'c' 66, 'd' 67, 'e' 68, 'h' 71, 'i' 72, 'n' 77,
//                                 'o' 78, 'r' 81, 's' 82, 't' 83, 'u' 84, 'x' 87, 'y' 88, 'z' 89)
//   0xA1..0xAC -> id b - 67      (0xA8 '¨' 101, 0xA9 '©' 102)
//   0xAE..0xFF -> id b - 68      (0xC3 'Ã' 127, 0xF0 'ð' 172)
//   0x00..0x20 -> id 188 + b     ('\n' -> 'Ċ' 198, ' ' -> 'Ġ' 220)
//   0x7F..0xA0 -> id b + 94      (0x80 222, 0x98 246, 0x9F 253)
//   0xAD       -> id 255
// Merges, rank r makes id 256 + r:
//   0 Ġ t  Ġt      1 h e  he      2 Ġt he  Ġthe   3 i n  in      4 in g  ing    5 Ġ a  Ġa
//   6 ' s  's      7 1 2  12      8 12 3  123     9 l l  ll     10 e ll  ell   11 h ell  hell
//  12 hell o hello 13 Ġ w Ġw     14 o r  or      15 Ġw or Ġwor  16 l d  ld     17 Ġwor ld Ġworld
//  18 Ã © Ã©(é)    19 c a ca     20 ca f caf     21 caf Ã© cafÃ© 22 Ġ Ġ ĠĠ     23 Ċ Ċ  ĊĊ
// and id 280 "Ġxyz", which no merge makes. Added tokens from 281:
//   llama3_tiny: 281 <|begin_of_text|>, 282 <|end_of_text|>, 283 <|eot_id|> (special),
//                284 <extra> (not special)
//   qwen2_tiny:  281 <|endoftext|>, 282 <|im_start|>, 283 <|im_end|> (special),
//                284 <tool_call> (not special)
// BPE merges the pair of lowest rank first (leftmost among equals) until no ranked pair is left.
// llama3_tiny sets ignore_merges: a word that is itself in the vocabulary is taken whole.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "gptq/error.h"
#include "gptq/tokenizer.h"

namespace gptq {
namespace {

using Ids = std::vector<int32_t>;

const Tokenizer& llama3() {
  static const Tokenizer t = Tokenizer::from_dir(test::data_dir() / "tokenizer" / "llama3_tiny");
  return t;
}
const Tokenizer& qwen2() {
  static const Tokenizer t = Tokenizer::from_dir(test::data_dir() / "tokenizer" / "qwen2_tiny");
  return t;
}

TEST(ByteLevel, ConfigLlama3) {
  const auto& t = llama3();
  EXPECT_EQ(t.vocab_size(), 285);
  EXPECT_EQ(t.bos_id(), 281);
  EXPECT_EQ(t.eos_ids(), (Ids{282, 283}));  // generation_config's list; eos_token 282 is in it
  // No add_bos_token in tokenizer_config.json: the template "<|begin_of_text|> $A" decides.
  EXPECT_TRUE(t.add_bos());
  EXPECT_TRUE(t.is_special(283));
  EXPECT_FALSE(t.is_special(284));
  EXPECT_EQ(t.id_to_piece(220), "\xC4\xA0");  // 'Ġ'
  EXPECT_EQ(t.id_to_piece(273), "\xC4\xA0world");
}

TEST(ByteLevel, ConfigQwen2) {
  const auto& t = qwen2();
  EXPECT_EQ(t.vocab_size(), 285);
  EXPECT_EQ(t.bos_id(), 281);  // bos_token is null; generation_config.json names 281
  EXPECT_EQ(t.eos_ids(), (Ids{283, 281}));
  EXPECT_FALSE(t.add_bos());  // no template, no add_bos_token: nothing is added
}

TEST(ByteLevel, WordsAndMergeOrder) {
  // "hello world" -> regex pieces "hello", " world" (the space goes with the letters after it).
  // Llama 3: both pieces are vocabulary tokens (ignore_merges): hello 268, Ġworld 273.
  EXPECT_EQ(llama3().encode("hello world", false), (Ids{268, 273}));
  EXPECT_EQ(llama3().encode("hello world"), (Ids{281, 268, 273}));
  // Qwen2 merges. "hello": pairs (h,e) rank 1 and (l,l) rank 9; after he and ll, neither
  // (he,ll) nor (ll,o) is a merge, so "hello" (which needs e+ll before h+e) is never reached:
  // he 257, ll 265, o 78. " world": Ġw (13), or (14), Ġwor (15), ld (16), Ġworld (17) -> 273.
  EXPECT_EQ(qwen2().encode("hello world", false), (Ids{257, 265, 78, 273}));
  EXPECT_EQ(qwen2().encode("hello world"), (Ids{257, 265, 78, 273}));  // no BOS
  // "hellos" is not in the vocabulary, so Llama 3 merges it like Qwen2: he ll o s.
  EXPECT_EQ(llama3().encode("hellos", false), (Ids{257, 265, 78, 82}));
  EXPECT_EQ(qwen2().encode("hellos", false), (Ids{257, 265, 78, 82}));
  // " the": Ġt (0), he (1), Ġthe (2) = 258; Llama 3 finds "Ġthe" whole.
  EXPECT_EQ(llama3().encode(" the", false), Ids{258});
  EXPECT_EQ(qwen2().encode(" the", false), Ids{258});
  // ignore_merges: "Ġxyz" is a token no merge makes.
  EXPECT_EQ(llama3().encode(" xyz", false), Ids{280});
  EXPECT_EQ(qwen2().encode(" xyz", false), (Ids{220, 87, 88, 89}));
  // "thing": t h i n g -> (h,i) is no merge; in (3) then ing (4): t h ing.
  EXPECT_EQ(qwen2().encode("thing", false), (Ids{83, 71, 260}));
}

TEST(ByteLevel, Contractions) {
  // "it's" -> "it", "'s" (the contraction alternative comes first in the regex): i t, 's 262.
  EXPECT_EQ(llama3().encode("it's", false), (Ids{72, 83, 262}));
  EXPECT_EQ(qwen2().encode("it's", false), (Ids{72, 83, 262}));
  // (?i:...) splits "'S" off too, but there is no merge (' S): ' 6, S 50. I 40, T 51.
  EXPECT_EQ(llama3().encode("IT'S", false), (Ids{40, 51, 6, 50}));
  EXPECT_EQ(qwen2().encode("IT'S", false), (Ids{40, 51, 6, 50}));
  // "don't" -> "don", "'t": d o n, ' t.
  EXPECT_EQ(llama3().encode("don't", false), (Ids{67, 78, 77, 6, 83}));
}

TEST(ByteLevel, Digits) {
  // Llama 3 cuts digits in runs of at most three: "123" (a token, 264), "45" (4 19, 5 20).
  EXPECT_EQ(llama3().encode("12345", false), (Ids{264, 19, 20}));
  // Qwen2 cuts every digit alone, so the merges 1+2 and 12+3 never apply.
  EXPECT_EQ(qwen2().encode("12345", false), (Ids{16, 17, 18, 19, 20}));
  // The space before digits stays alone (\s+ as the last resort): a, Ġ, 123, 4.
  EXPECT_EQ(llama3().encode("a 1234", false), (Ids{64, 220, 264, 19}));
  EXPECT_EQ(qwen2().encode("a 1234", false), (Ids{64, 220, 16, 17, 18, 19}));
}

TEST(ByteLevel, Spaces) {
  // "  hello": \s+(?!\S) takes one space (two would be followed by 'h'), then " hello":
  // Ġ 220; Ġ h e l l o -> Ġ he ll o (Ġhello is not a token).
  EXPECT_EQ(llama3().encode("  hello", false), (Ids{220, 220, 257, 265, 78}));
  EXPECT_EQ(qwen2().encode("  hello", false), (Ids{220, 220, 257, 265, 78}));
  // Three spaces at the end are one piece ĠĠĠ: (Ġ,Ġ) at 0 and 1, both rank 22; the leftmost
  // merges first, which leaves ĠĠ Ġ: 278, 220.
  EXPECT_EQ(llama3().encode("a   ", false), (Ids{64, 278, 220}));
  EXPECT_EQ(qwen2().encode("   ", false), (Ids{278, 220}));
  // Newlines: "\n\n" is one piece (\s*[\r\n]+), ĊĊ 279.
  EXPECT_EQ(llama3().encode("a\n\nb", false), (Ids{64, 279, 65}));
  EXPECT_EQ(qwen2().encode("a\n\nb", false), (Ids{64, 279, 65}));
}

TEST(ByteLevel, NonAscii) {
  // "café" = c a f C3 A9 -> "cafÃ©", one letter run. Llama 3: a token (277). Qwen2: Ã© (18)
  // first, then ca (19), caf (20), cafÃ© (21) = 277.
  EXPECT_EQ(llama3().encode("caf\xC3\xA9", false), Ids{277});
  EXPECT_EQ(qwen2().encode("caf\xC3\xA9", false), Ids{277});
  EXPECT_EQ(qwen2().encode("\xC3\xA9", false), Ids{274});         // é
  EXPECT_EQ(qwen2().encode("\xC3\xA8", false), (Ids{127, 101}));  // è: Ã ¨, no merge
  // 😀 = F0 9F 98 80: four byte tokens 172 253 246 222; with a space before it, the regex's
  // " ?[^\s\p{L}\p{N}]+" keeps the space in the same piece.
  EXPECT_EQ(llama3().encode("\xF0\x9F\x98\x80", false), (Ids{172, 253, 246, 222}));
  EXPECT_EQ(llama3().encode(" \xF0\x9F\x98\x80", false), (Ids{220, 172, 253, 246, 222}));
  EXPECT_EQ(llama3().decode({172, 253, 246, 222}), "\xF0\x9F\x98\x80");
}

TEST(ByteLevel, SpecialTokensInText) {
  // "hi" h i; <|eot_id|> 283; "there" t h e r e -> t he r e.
  EXPECT_EQ(llama3().encode("hi<|eot_id|>there", false), (Ids{71, 72, 283, 83, 257, 81, 68}));
  EXPECT_EQ(llama3().encode("<|begin_of_text|>hi", false), (Ids{281, 71, 72}));
  // Qwen2 chat markup: <|im_start|> 282, "user" u s e r, "\n" 198, "hi", <|im_end|> 283.
  EXPECT_EQ(qwen2().encode("<|im_start|>user\nhi<|im_end|>", false),
            (Ids{282, 84, 82, 68, 81, 198, 71, 72, 283}));
  // A non-special added token is matched too, and kept by decode even when skipping specials.
  EXPECT_EQ(llama3().encode("a<extra>b", false), (Ids{64, 284, 65}));
  EXPECT_EQ(llama3().decode({64, 284, 65}), "a<extra>b");
  EXPECT_EQ(llama3().decode({281, 64, 283}), "a");
  EXPECT_EQ(llama3().decode({281, 64, 283}, false), "<|begin_of_text|>a<|eot_id|>");
  // A partial marker is plain text.
  EXPECT_EQ(llama3().decode(llama3().encode("<|eot_id", false)), "<|eot_id");
}

TEST(ByteLevel, Gpt2PreTokenizer) {
  // The same model with GPT-2's configuration: ByteLevel alone, with its own regex.
  auto j = test::read_json(test::data_dir() / "tokenizer" / "qwen2_tiny" / "tokenizer.json");
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  const auto gpt2 = Tokenizer::from_json(j.dump(), "", "", "gpt2/tokenizer.json");
  EXPECT_EQ(gpt2.encode("hello world"), (Ids{257, 265, 78, 273}));
  // " ?\p{N}+" keeps a digit run whole: 1 2 3 4 5 -> 12 (7) -> 123 (8): 123 4 5.
  EXPECT_EQ(gpt2.encode("12345"), (Ids{264, 19, 20}));
  EXPECT_EQ(gpt2.encode("it's"), (Ids{72, 83, 262}));
  EXPECT_EQ(gpt2.bos_id(), -1);
  EXPECT_TRUE(gpt2.eos_ids().empty());
  j["pre_tokenizer"]["add_prefix_space"] = true;
  const auto prefixed = Tokenizer::from_json(j.dump(), "", "", "gpt2/tokenizer.json");
  EXPECT_EQ(prefixed.encode("the"), Ids{258});
}

TEST(ByteLevel, RoundTrip) {
  const std::string long_run(300, 'a');
  const char* cases[] = {
      "",
      "hello world",
      "  leading and trailing spaces   ",
      "it's IT'S don't we'll they're I'd",
      "12345 67 8.90 3,141,592",
      "caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m",
      "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD emoji with a skin tone",
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83"
      "\x88",
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80",  // Привет мир
      "tabs\tnewlines\n\ncarriage\r\nreturns\r",
      "symbols !@#$%^&*()_+-=[]{}|;:'\",.<>/?`~",
      "mixed<|eot_id|>special<extra>tokens",
      "\xC4\xA0 literal G-dot and \xC4\x8A literal C-dot",
      long_run.c_str(),
  };
  for (const auto* t : {&llama3(), &qwen2()}) {
    for (const char* s : cases) {
      const auto ids = t->encode(s, false);
      EXPECT_EQ(t->decode(ids, false), s) << s;
    }
  }
  // Ill-formed input is made valid first: the stray byte 0xFF becomes U+FFFD.
  EXPECT_EQ(llama3().decode(llama3().encode("a\xFF"
                                            "b",
                                            false)),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(ByteLevel, DecodeHoldsInvalidBytesAsReplacement) {
  // Byte tokens that do not form a character: C3 followed by 'a' can never complete.
  EXPECT_EQ(llama3().decode({127, 64}),
            "\xEF\xBF\xBD"
            "a");
  // F0 9F cut short at the end of the ids.
  EXPECT_EQ(llama3().decode({172, 253}), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace gptq
