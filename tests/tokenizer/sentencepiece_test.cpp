// Sentencepiece-style BPE (Llama 2 layout) on the stories260k tokenizer, against goldens made with
// Hugging Face tokenizers (tests/data/stories260k/golden): the prompts' ids, the decoded greedy
// continuations, and the whole-file token streams of the evaluation texts (count, first 256 ids,
// SHA-256). All comparisons are exact.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/test_util.h"
#include "gptq/error.h"
#include "gptq/tokenizer.h"
#include "tokenizer/sha256.h"

namespace gptq {
namespace {

using Ids = std::vector<int32_t>;

const Tokenizer& stories() {
  static const Tokenizer t = Tokenizer::from_dir(test::stories_dir());
  return t;
}

Ids concat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Stories260k, OnceUponATime) {
  const auto& t = stories();
  EXPECT_EQ(t.encode("Once upon a time"), (Ids{1, 403, 407, 261, 378}));
  EXPECT_EQ(t.encode("Once upon a time", false), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_ids(), Ids{2});
  EXPECT_TRUE(t.add_bos());
  EXPECT_TRUE(t.is_special(1));
  EXPECT_FALSE(t.is_special(403));
  EXPECT_EQ(t.id_to_piece(261),
            "\xE2\x96\x81"
            "a");
  EXPECT_EQ(t.id_to_piece(13), "<0x0A>");
  EXPECT_EQ(t.decode({1, 403, 407, 261, 378}), "Once upon a time");
  // Kept special tokens go through the decoder like any token: "<s>" + " Once" fused, and the
  // Strip decoder finds no leading space to remove.
  EXPECT_EQ(t.decode({1, 403, 407, 261, 378}, false), "<s> Once upon a time");
  EXPECT_EQ(t.encode(""), Ids{1});
  EXPECT_EQ(t.encode("", false), Ids{});
}

class PromptGolden : public ::testing::TestWithParam<int> {};

TEST_P(PromptGolden, IdsAndDecodedText) {
  const auto g = test::read_json(test::stories_dir() / "golden" /
                                 ("prompt_" + std::to_string(GetParam()) + ".json"));
  const auto& t = stories();
  const auto prompt_ids = g["prompt_ids"].get<Ids>();
  const auto new_ids = g["greedy_new_ids"].get<Ids>();
  EXPECT_EQ(t.encode(g["prompt"].get<std::string>()), prompt_ids);
  EXPECT_EQ(t.decode(concat(prompt_ids, new_ids)), g["greedy_full_text"].get<std::string>());
  // The golden's greedy_new_text is the new ids decoded alone (so a leading space is stripped).
  EXPECT_EQ(t.decode(new_ids), g["greedy_new_text"].get<std::string>());

  // Streaming the new ids after the prompt gives them in context: prompt text + stream = full.
  Tokenizer::StreamDecoder sd(t);
  std::string prompt_text;
  for (int32_t id : prompt_ids) prompt_text += sd.push(id);
  EXPECT_EQ(prompt_text, t.decode(prompt_ids));
  std::string streamed;
  for (int32_t id : new_ids) streamed += sd.push(id);
  streamed += sd.flush();
  EXPECT_EQ(prompt_text + streamed, g["greedy_full_text"].get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(Stories260k, PromptGolden, ::testing::Values(0, 1, 2, 3));

struct StreamCase {
  const char* text;
  const char* golden;
};

class StreamGolden : public ::testing::TestWithParam<StreamCase> {};

TEST_P(StreamGolden, WholeFileStream) {
  const auto c = GetParam();
  const auto g = test::read_json(test::stories_dir() / "golden" / c.golden);
  const std::string text = test::read_file(test::data_dir() / "text" / c.text);
  ASSERT_EQ(text.size(), g["file_bytes"].get<size_t>());
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = stories().encode(text, false);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ info ] %s: %zu bytes -> %zu tokens in %.3f s\n", c.text, text.size(), ids.size(),
              secs);
  EXPECT_EQ(static_cast<int64_t>(ids.size()), g["stream_tokens"].get<int64_t>());
  const auto first = g["stream_first_256_ids"].get<Ids>();
  ASSERT_GE(ids.size(), first.size());
  EXPECT_EQ(Ids(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(first.size())), first);
  EXPECT_EQ(test::sha256_ids_le(ids), g["stream_ids_int32le_sha256"].get<std::string>());
  // And back: the decoder strips the one space that the normalizer prepended.
  EXPECT_EQ(stories().decode(ids), text);
}

INSTANTIATE_TEST_SUITE_P(
    Stories260k, StreamGolden,
    ::testing::Values(StreamCase{"tinystories-eval.txt", "ppl_tinystories-eval_ctx256.json"},
                      StreamCase{"wikitext2-test.txt", "ppl_wikitext2-test_ctx256.json"}));

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(test::sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(test::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(test::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // 1000 bytes: several blocks, and the padding falls in a block of its own.
  EXPECT_EQ(test::sha256_hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(Stories260k, RoundTrip) {
  const auto& t = stories();
  const char* cases[] = {
      "Hello world",
      " leading space",
      "  two leading spaces and trailing  ",
      "line one\nline two\n\n",
      "tabs\tand\r\ncarriage returns",
      "caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9",  // é, ï: byte fallback
      "emoji \xF0\x9F\x98\x80 and \xE2\x9C\x93 check",  // 4- and 3-byte characters
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",           // Japanese
      "numbers 1234567890 and punctuation!?.,;:'\"()[]{}",
  };
  for (const char* s : cases) {
    EXPECT_EQ(t.decode(t.encode(s, false)), s) << s;
    EXPECT_EQ(t.decode(t.encode(s, true)), s) << s;
  }
  // The one loss: a literal "▁" in the text is the space marker, so it decodes as a space (as in
  // Hugging Face tokenizers and sentencepiece).
  EXPECT_EQ(t.decode(t.encode("a\xE2\x96\x81"
                              "b",
                              false)),
            "a b");
}

TEST(Stories260k, ByteFallbackIds) {
  const auto& t = stories();
  // "ï" (C3 AF) is not in the 512-token vocabulary (unlike "é", id 485): after the "▁" (id 410)
  // that the normalizer prepends, its bytes become <0xC3> (id 3 + 0xC3 = 198) and <0xAF>
  // (id 3 + 0xAF = 178). "✓" (E2 9C 93) likewise becomes 229, 159, 150.
  EXPECT_EQ(t.encode("\xC3\xAF", false), (Ids{410, 198, 178}));
  EXPECT_EQ(t.encode("\xE2\x9C\x93", false), (Ids{410, 229, 159, 150}));
  EXPECT_EQ(t.encode("\xC3\xA9", false), (Ids{410, 485}));
  EXPECT_EQ(t.decode({410, 198, 178}), "\xC3\xAF");
  // A byte sequence that can never complete decodes to U+FFFD; the valid text around it stays.
  EXPECT_EQ(t.decode({198, 412}),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(t.decode({229, 159}), "\xEF\xBF\xBD");
}

TEST(Stories260k, SpecialTokensInText) {
  const auto& t = stories();
  // Added tokens are split out before normalization; each piece of text around them gets its own
  // prepended "▁" (the legacy Llama behaviour of Hugging Face tokenizers).
  const Ids a = t.encode("Once", false);
  const Ids b = t.encode("upon", false);
  Ids expect = a;
  expect.push_back(2);
  expect.insert(expect.end(), b.begin(), b.end());
  EXPECT_EQ(t.encode("Once</s>upon", false), expect);
  EXPECT_EQ(t.decode(expect), "Once upon");
  EXPECT_EQ(t.decode(expect, false), "Once</s> upon");
}

// The same vocabulary as newer converters write it: no normalizer, a Metaspace pre-tokenizer.
Tokenizer stories_metaspace(const std::string& scheme, bool split) {
  auto j = test::read_json(test::stories_dir() / "tokenizer.json");
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\xE2\x96\x81"},
                        {"prepend_scheme", scheme},
                        {"split", split}};
  return Tokenizer::from_json(
      j.dump(), test::read_file(test::stories_dir() / "tokenizer_config.json"),
      test::read_file(test::stories_dir() / "generation_config.json"), "metaspace/tokenizer.json");
}

TEST(Stories260k, MetaspaceVariantMatchesLegacy) {
  const auto& legacy = stories();
  const auto first = stories_metaspace("first", false);
  const auto always = stories_metaspace("always", false);
  const auto never = stories_metaspace("never", false);
  for (const char* s :
       {"Once upon a time", "Lily and Ben went to the park.", "caf\xC3\xA9\nnew line"}) {
    EXPECT_EQ(first.encode(s), legacy.encode(s)) << s;
    EXPECT_EQ(always.encode(s), legacy.encode(s)) << s;
  }
  EXPECT_EQ(first.encode("Once upon a time"), (Ids{1, 403, 407, 261, 378}));
  // The legacy normalizer prepends to a text that starts with a space ("▁▁x"); Metaspace does not.
  EXPECT_EQ(first.encode(" Once", false), legacy.encode("Once", false));

  // After an added token: "first" prepends only at the start of the input, "always" every time.
  const Ids bare = never.encode("Once", false);
  Ids expect_first{1};
  expect_first.insert(expect_first.end(), bare.begin(), bare.end());
  EXPECT_EQ(first.encode("<s>Once", false), expect_first);
  Ids expect_always{1};
  const Ids with = always.encode("Once", false);
  expect_always.insert(expect_always.end(), with.begin(), with.end());
  EXPECT_EQ(always.encode("<s>Once", false), expect_always);
  EXPECT_NE(expect_first, expect_always);
}

TEST(Stories260k, MetaspaceSplitEncodesWordByWord) {
  const auto& legacy = stories();
  const auto split = stories_metaspace("always", true);
  // With split, each "▁word" is its own BPE word, so the ids are the concatenation of each word
  // encoded alone (which the legacy normalizer gives as "▁word").
  Ids expect;
  for (const char* w : {"Lily", "and", "Ben", "went", "to", "the", "park."}) {
    const Ids ids = legacy.encode(w, false);
    expect.insert(expect.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(split.encode("Lily and Ben went to the park.", false), expect);
  EXPECT_EQ(split.decode(expect), "Lily and Ben went to the park.");
}

TEST(Stories260k, EncodeIsThreadSafe) {
  const auto& t = stories();
  const std::string text =
      test::read_file(test::data_dir() / "text" / "tinystories-calib.txt").substr(0, 20000);
  const Ids expect = t.encode(text, false);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i)
    threads.emplace_back([&, i] { got[i] = t.encode(text, false); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expect);
}

}  // namespace
}  // namespace gptq
