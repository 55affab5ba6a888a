// Bad model folders, generated from a list of corruption kinds applied to a copy of stories260k:
// each must fail with a gptq::Error of the stated kind whose message names the file or tensor,
// never a crash.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "core/dtype.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void copy_model(const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(test::stories_dir())) {
    if (e.is_regular_file()) fs::copy_file(e.path(), to / e.path().filename());
  }
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

void edit_config(const fs::path& dir, const std::function<void(json&)>& f) {
  json j = test::read_json(dir / "config.json");
  f(j);
  write(dir / "config.json", j.dump());
}

// Rewrites model.safetensors with `f` applied to a name -> (shape, fp32 data) map.
using TensorMap = std::map<std::string, std::pair<Shape, std::vector<float>>>;
void edit_weights(const fs::path& dir, const std::function<void(TensorMap&)>& f) {
  TensorMap m;
  {
    auto store = io::TensorStore::open_dir(dir);
    for (const auto& n : store.names()) m[n] = {store.get(n).shape, store.read_f32(n)};
  }
  f(m);
  std::vector<io::TensorToWrite> out;
  for (auto& [n, v] : m) out.push_back({n, DType::kF32, v.first, v.second.data(), v.second.size() * 4});
  io::write_safetensors(dir / "model.safetensors", out);
}

struct Corruption {
  const char* name;
  std::function<void(const fs::path&)> apply;
  ErrorKind kind;
  const char* needle;  // must appear in the message
};

std::vector<Corruption> corruptions() {
  return {
      {"config_missing", [](const fs::path& d) { fs::remove(d / "config.json"); }, ErrorKind::kIo, "config.json"},
      {"config_not_json", [](const fs::path& d) { write(d / "config.json", "{\"model_type\": \"llama\","); },
       ErrorKind::kConfig, "config.json"},
      {"config_missing_hidden", [](const fs::path& d) { edit_config(d, [](json& j) { j.erase("hidden_size"); }); },
       ErrorKind::kConfig, "hidden_size"},
      {"config_wrong_type", [](const fs::path& d) { edit_config(d, [](json& j) { j["num_hidden_layers"] = "five"; }); },
       ErrorKind::kConfig, "num_hidden_layers"},
      {"config_negative", [](const fs::path& d) { edit_config(d, [](json& j) { j["vocab_size"] = -3; }); },
       ErrorKind::kConfig, "vocab_size"},
      {"config_heads_not_dividing",
       [](const fs::path& d) { edit_config(d, [](json& j) { j["num_key_value_heads"] = 3; }); }, ErrorKind::kConfig,
       "num_key_value_heads"},
      {"config_unknown_type", [](const fs::path& d) { edit_config(d, [](json& j) { j["model_type"] = "gpt_bigcode"; }); },
       ErrorKind::kUnsupported, "llama, mistral, qwen2"},
      {"config_bad_rope", [](const fs::path& d) {
         edit_config(d, [](json& j) { j["rope_scaling"] = {{"rope_type", "ntk_made_up"}, {"factor", 4.0}}; });
       }, ErrorKind::kUnsupported, "ntk_made_up"},
      {"config_more_layers_than_weights",
       [](const fs::path& d) { edit_config(d, [](json& j) { j["num_hidden_layers"] = 6; }); }, ErrorKind::kShape,
       "model.layers.5"},
      {"config_hidden_disagrees", [](const fs::path& d) { edit_config(d, [](json& j) { j["intermediate_size"] = 160; }); },
       ErrorKind::kShape, "expected"},
      {"config_quant_5_bits", [](const fs::path& d) {
         edit_config(d, [](json& j) { j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 5}}; });
       }, ErrorKind::kUnsupported, "bits"},
      {"weights_missing", [](const fs::path& d) { fs::remove(d / "model.safetensors"); }, ErrorKind::kIo, "safetensors"},
      {"weights_truncated", [](const fs::path& d) { fs::resize_file(d / "model.safetensors", 5000); },
       ErrorKind::kFormat, "model.safetensors"},
      {"tensor_missing",
       [](const fs::path& d) { edit_weights(d, [](TensorMap& m) { m.erase("model.layers.2.self_attn.k_proj.weight"); }); },
       ErrorKind::kShape, "model.layers.2.self_attn.k_proj.weight"},
      {"tensor_wrong_shape", [](const fs::path& d) {
         edit_weights(d, [](TensorMap& m) {
           auto& t = m["model.layers.1.mlp.up_proj.weight"];
           t.first = {64, 172};
         });
       }, ErrorKind::kShape, "model.layers.1.mlp.up_proj.weight"},
      {"untied_without_head",
       [](const fs::path& d) { edit_config(d, [](json& j) { j["tie_word_embeddings"] = false; }); },
       ErrorKind::kShape, "lm_head.weight"},
      {"tokenizer_missing", [](const fs::path& d) { fs::remove(d / "tokenizer.json"); }, ErrorKind::kIo,
       "tokenizer.json"},
      {"tokenizer_broken", [](const fs::path& d) { write(d / "tokenizer.json", "[1, 2"); }, ErrorKind::kFormat,
       "tokenizer.json"},
      {"tokenizer_id_beyond_vocab", [](const fs::path& d) {
         json j = test::read_json(d / "tokenizer.json");
         j["model"]["vocab"]["zzzz"] = 100000;
         write(d / "tokenizer.json", j.dump());
       }, ErrorKind::kFormat, "100000"},
      {"tokenizer_larger_than_config", [](const fs::path& d) { edit_config(d, [](json& j) { j["vocab_size"] = 500; }); },
       ErrorKind::kShape, "vocab_size"},
  };
}

class BadModelFolder : public ::testing::TestWithParam<Corruption> {};

TEST_P(BadModelFolder, FailsWithAClearError) {
  test::TempDir tmp;
  const fs::path dir = tmp.path() / "model";
  copy_model(dir);
  GetParam().apply(dir);
  try {
    CausalLM::from_pretrained(dir);
    FAIL() << "loaded a corrupt folder";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(GetParam().kind)) << e.what();
    EXPECT_NE(std::string(e.what()).find(GetParam().needle), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Corruptions, BadModelFolder, ::testing::ValuesIn(corruptions()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(BadModelFolder, NanWeightsAreRefusedByTheQuantizer) {
  test::TempDir tmp;
  const fs::path dir = tmp.path() / "model";
  copy_model(dir);
  edit_weights(dir, [](TensorMap& m) { m["model.layers.0.self_attn.q_proj.weight"].second[5] = NAN; });
  QuantizeConfig q;
  q.group_size = 32;
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 4;
  c.seqlen = 64;
  try {
    quantize_model(dir, tmp.path() / "out", q, c);
    FAIL() << "quantized NaN weights";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNumeric) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));
}

}  // namespace
}  // namespace gptq
