// Broken tokenizer files: each is refused with a gptq::Error of the right kind whose message names
// the file and what is wrong with it (the token and id, the key, the JSON error).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <initializer_list>

#include "common/test_util.h"
#include "gptq/error.h"
#include "gptq/tokenizer.h"

namespace gptq {
namespace {

using json = nlohmann::json;

json stories_json() { return test::read_json(test::stories_dir() / "tokenizer.json"); }

// Loads `j` as "bad/tokenizer.json" and expects an Error of `kind` whose message holds each of
// `needles`.
void expect_error(const std::function<void()>& f, ErrorKind kind,
                  std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "'" << n << "' not in: " << e.what();
  }
}

void expect_bad(const std::string& text, ErrorKind kind,
                std::initializer_list<std::string> needles) {
  expect_error([&] { Tokenizer::from_json(text, "", "", "bad/tokenizer.json"); }, kind, needles);
}

TEST(BadInput, VocabIdBeyondVocabulary) {
  auto j = stories_json();
  j["model"]["vocab"]["<0x00>"] = 100000;
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "<0x00>", "100000"});
  j["model"]["vocab"]["<0x00>"] = -1;
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "<0x00>", "-1"});
}

TEST(BadInput, AddedTokenIdBeyondVocabulary) {
  auto j = stories_json();
  j["added_tokens"][0]["id"] = 9999;
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "<unk>", "9999"});
}

TEST(BadInput, DuplicateVocabIds) {
  auto j = stories_json();
  j["model"]["vocab"]["<0x00>"] = 4;  // the id of <0x01>
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "<0x00>", "<0x01>", "4"});
}

TEST(BadInput, DuplicateAddedTokenIds) {
  auto j = stories_json();
  j["added_tokens"][2]["id"] = 1;  // </s> takes <s>'s id
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "<s>", "</s>", "id 1"});
}

TEST(BadInput, DuplicateAddedTokenContent) {
  auto j = stories_json();
  j["added_tokens"].push_back({{"id", 512}, {"content", "<s>"}, {"special", true}});
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "<s>", "twice", "512"});
}

TEST(BadInput, AddedTokenDisagreesWithVocab) {
  auto j = stories_json();
  j["added_tokens"].push_back({{"id", 512},
                               {"content",
                                "\xE2\x96\x81"
                                "a"},
                               {"special", false}});
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "512", "261"});
}

TEST(BadInput, BrokenJson) {
  const std::string text = test::read_file(test::stories_dir() / "tokenizer.json");
  expect_bad(text.substr(0, text.size() / 2), ErrorKind::kFormat,
             {"bad/tokenizer.json", "not valid JSON"});
  expect_bad("", ErrorKind::kFormat, {"bad/tokenizer.json"});
  expect_bad("[1, 2]", ErrorKind::kFormat, {"bad/tokenizer.json", "object"});
}

TEST(BadInput, MissingModel) {
  auto j = stories_json();
  j.erase("model");
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "\"model\""});
}

TEST(BadInput, ModelType) {
  auto j = stories_json();
  j["model"]["type"] = "Foo";
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "unknown model type", "Foo"});
  j["model"]["type"] = "Unigram";
  expect_bad(j.dump(), ErrorKind::kUnsupported, {"bad/tokenizer.json", "Unigram"});
  j["model"].erase("vocab");
  j["model"]["type"] = "BPE";
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "vocab"});
}

TEST(BadInput, Merges) {
  auto j = stories_json();
  j["model"]["merges"][3] = "\xE2\x96\x81 nosuchtoken";
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "merge 3", "nosuchtoken"});
  j = stories_json();
  j["model"]["merges"][0] = "a b c";
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "merges[0]"});
  j = stories_json();
  j["model"]["merges"][0] = 7;
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "merges[0]"});
}

TEST(BadInput, StagesAndPatterns) {
  auto j = stories_json();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "(unclosed"});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "Sideways"});
  j = stories_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_bad(j.dump(), ErrorKind::kUnsupported, {"bad/tokenizer.json", "Lowercase"});
  j = stories_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_bad(j.dump(), ErrorKind::kUnsupported, {"bad/tokenizer.json", "WordPiece"});
  j = stories_json();
  j["post_processor"]["special_tokens"]["<s>"]["ids"] = {600};
  expect_bad(j.dump(), ErrorKind::kFormat, {"bad/tokenizer.json", "600"});
}

TEST(BadInput, Configs) {
  const std::string tj = test::read_file(test::stories_dir() / "tokenizer.json");
  expect_error([&] { Tokenizer::from_json(tj, "{\"add_bos_token\": tru", "", "m/tokenizer.json"); },
               ErrorKind::kFormat, {"tokenizer_config.json", "not valid JSON"});
  expect_error(
      [&] { Tokenizer::from_json(tj, R"({"bos_token": "<nope>"})", "", "m/tokenizer.json"); },
      ErrorKind::kFormat, {"tokenizer_config.json", "<nope>"});
  expect_error(
      [&] { Tokenizer::from_json(tj, "", R"({"eos_token_id": [2, 700]})", "m/tokenizer.json"); },
      ErrorKind::kFormat, {"generation_config.json", "700"});
  // bos_token as transformers writes an AddedToken object.
  const auto t = Tokenizer::from_json(
      tj, R"({"bos_token": {"content": "<s>"}, "add_bos_token": false})", "", "m/tokenizer.json");
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.encode("Once"), (std::vector<int32_t>{403}));
}

TEST(BadInput, FromDirNamesThePath) {
  test::TempDir dir;
  expect_error([&] { Tokenizer::from_dir(dir.path()); }, ErrorKind::kIo, {dir.path().string()});
  {
    std::ofstream f(dir.path() / "tokenizer.json");
    f << "{\"model\": ";
  }
  expect_error([&] { Tokenizer::from_dir(dir.path()); }, ErrorKind::kFormat,
               {(dir.path() / "tokenizer.json").string(), "not valid JSON"});
}

TEST(BadInput, BadIdsAtDecode) {
  const auto t = Tokenizer::from_dir(test::stories_dir());
  expect_error([&] { t.decode({1, 512}); }, ErrorKind::kArgument, {"512"});
  expect_error([&] { t.decode({-3}); }, ErrorKind::kArgument, {"-3"});
  expect_error([&] { t.id_to_piece(1000); }, ErrorKind::kArgument, {"1000"});
  Tokenizer::StreamDecoder sd(t);
  expect_error([&] { sd.push(777); }, ErrorKind::kArgument, {"777"});
  EXPECT_EQ(sd.push(403), "Once");  // the refused id left no trace
  EXPECT_FALSE(t.is_special(-1));
  EXPECT_FALSE(t.is_special(99999));
}

}  // namespace
}  // namespace gptq
