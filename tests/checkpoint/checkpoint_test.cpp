// The GPTQ checkpoint writer and reader checks: a synthetic source folder goes through layer
// parts and finalize(), and the result is read back with TensorStore and nlohmann.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/gptq_checkpoint.h"
#include "checkpoint/loader_rules.h"
#include "common/test_util.h"
#include "config/model_config.h"
#include "gptq/error.h"
#include "io/safetensors.h"

namespace gptq::checkpoint {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

// Runs f, expects a gptq::Error of `kind`, returns its message ("" if none was thrown).
template <typename F>
std::string expect_error(ErrorKind kind, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no gptq::Error thrown";
  return "";
}

// Deterministic bytes: an LCG, so that every tensor holds different data.
std::vector<uint8_t> bytes_of(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 12345u;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return v;
}

constexpr int64_t kHidden = 64, kInter = 128, kVocab = 40, kLayers = 2;
const std::vector<std::vector<std::string>> kGroups = {
    {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
    {"self_attn.o_proj"},
    {"mlp.gate_proj", "mlp.up_proj"},
    {"mlp.down_proj"}};

std::string layer_prefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

// [N, K] of each block linear.
std::pair<int64_t, int64_t> linear_shape(const std::string& suffix) {
  if (suffix == "mlp.gate_proj" || suffix == "mlp.up_proj") return {kInter, kHidden};
  if (suffix == "mlp.down_proj") return {kHidden, kInter};
  return {kHidden, kHidden};
}

struct SourceOptions {
  bool tied = false;
  bool lm_head = true;  // whether the file holds lm_head.weight
};

// A tiny Llama folder: bf16 embeddings and linears, fp32 norms, a q_proj bias, tokenizer stubs.
class SourceModel {
 public:
  explicit SourceModel(const fs::path& dir, SourceOptions o = {}) : dir_(dir) {
    fs::create_directories(dir);
    json cfg = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"hidden_size", kHidden},
                {"intermediate_size", kInter},
                {"num_hidden_layers", kLayers},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 4},
                {"vocab_size", kVocab},
                {"max_position_embeddings", 128},
                {"rms_norm_eps", 1e-5},
                {"tie_word_embeddings", o.tied},
                {"torch_dtype", "bfloat16"},
                {"attention_bias", false},
                {"custom_key", {{"nested", 1}}}};
    config_text_ = cfg.dump(2);
    io::write_file_atomic(dir / "config.json", config_text_);
    io::write_file_atomic(dir / "tokenizer.json", R"({"version": "1.0", "model": {"type": "BPE"}})");
    io::write_file_atomic(dir / "tokenizer_config.json", R"({"bos_token": "<s>"})");
    io::write_file_atomic(dir / "generation_config.json", R"({"do_sample": false})");
    io::write_file_atomic(dir / "README.md", "not copied");

    add("model.embed_tokens.weight", DType::kBF16, {kVocab, kHidden});
    add("model.norm.weight", DType::kF32, {kHidden});
    if (o.lm_head) add("lm_head.weight", DType::kBF16, {kVocab, kHidden});
    for (int64_t l = 0; l < kLayers; ++l) {
      add(layer_prefix(l) + "input_layernorm.weight", DType::kF32, {kHidden});
      add(layer_prefix(l) + "post_attention_layernorm.weight", DType::kF32, {kHidden});
      for (const auto& g : kGroups) {
        for (const auto& s : g) {
          const auto [n, k] = linear_shape(s);
          add(layer_prefix(l) + s + ".weight", DType::kBF16, {n, k});
        }
      }
      add(layer_prefix(l) + "self_attn.q_proj.bias", DType::kBF16, {kHidden});
    }
    std::vector<io::TensorToWrite> ts;
    for (const auto& [name, t] : tensors_) ts.push_back({name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
    io::write_safetensors(dir / "model.safetensors", ts);
  }

  const fs::path& dir() const { return dir_; }
  config::ModelConfig config() const { return config::load_model_config(dir_); }
  const std::string& config_text() const { return config_text_; }
  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& [n, t] : tensors_) out.insert(n);
    return out;
  }

 private:
  struct T {
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  void add(const std::string& name, DType dt, Shape shape) {
    size_t n = dtype_size(dt);
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    tensors_[name] = T{dt, shape, bytes_of(n, static_cast<uint32_t>(tensors_.size() + 1))};
  }
  fs::path dir_;
  std::string config_text_;
  std::map<std::string, T> tensors_;
};

// A packed linear with patterned data of the right sizes (the maths is not the point here).
PackedLinear make_packed(const std::string& module, int64_t n, int64_t k, int bits, int group_size,
                         bool bias, uint32_t seed) {
  PackedLinear p;
  p.module = module;
  p.n = n;
  p.k = k;
  p.bits = bits;
  const int64_t g = group_size == -1 ? k : group_size;
  p.groups = (k + g - 1) / g;
  auto ints = [&](size_t count, uint32_t s) {
    std::vector<int32_t> v(count);
    const auto b = bytes_of(count * 4, s);
    std::memcpy(v.data(), b.data(), b.size());
    return v;
  };
  p.qweight = ints(static_cast<size_t>(k * bits / 32 * n), seed);
  p.qzeros = ints(static_cast<size_t>(p.groups * n * bits / 32), seed + 1);
  p.scales.assign(static_cast<size_t>(p.groups * n), 0x2e66);  // 0.1 in fp16
  for (int64_t i = 0; i < k; ++i) p.g_idx.push_back(static_cast<int32_t>(i / g));
  if (bias) p.bias.assign(static_cast<size_t>(n), 0x3c00);  // 1.0
  return p;
}

// Writes layer parts for every layer, leaving out the modules in `skip` (kept unquantized).
// Returns the packed linears so that their bytes can be compared later.
std::map<std::string, PackedLinear> write_all_layers(CheckpointWriter& w,
                                                     const std::set<std::string>& skip = {},
                                                     int bits = 4) {
  std::map<std::string, PackedLinear> packed;
  uint32_t seed = 100;
  for (int64_t l = 0; l < kLayers; ++l) {
    std::vector<io::TensorToWrite> ts;
    for (const auto& g : kGroups) {
      for (const auto& s : g) {
        const std::string m = layer_prefix(l) + s;
        if (skip.count(m)) continue;
        const auto [n, k] = linear_shape(s);
        packed[m] = make_packed(m, n, k, bits, 32, s == "self_attn.q_proj", seed += 2);
      }
    }
    for (const auto& [m, p] : packed) {
      if (m.rfind(layer_prefix(l), 0) != 0) continue;
      for (auto& t : tensors_of(p)) ts.push_back(t);
    }
    w.write_layer(l, ts);
  }
  return packed;
}

QuantizationSummary summary(std::vector<std::string> unquantized = {}) {
  QuantizationSummary s;
  s.q.bits = 4;
  s.q.group_size = 32;
  s.q.desc_act = false;
  s.q.sym = true;
  s.q.damp_percent = 0.01;
  s.q.checkpoint_format = "gptq";
  s.block_linear_groups = kGroups;
  s.num_layers = kLayers;
  s.unquantized_modules = std::move(unquantized);
  return s;
}

WriterOptions opts(std::string sig = "sig-a") {
  WriterOptions o;
  o.run_signature = std::move(sig);
  return o;
}

bool same_bytes(const io::TensorInfo& a, const io::TensorInfo& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes &&
         std::memcmp(a.data, b.data, a.nbytes) == 0;
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// ---------------------------------------------------------------------------------------------

TEST(CheckpointWriter, RoundTripSingleFile) {
  TempDir tmp;
  SourceModel src(tmp.path() / "src");
  const fs::path out = tmp.path() / "out";
  CheckpointWriter w(src.dir(), out, opts());
  EXPECT_EQ(w.partial_dir(), tmp.path() / "out.partial");
  EXPECT_TRUE(fs::is_regular_file(w.partial_dir() / "run.json"));
  const auto packed = write_all_layers(w);
  EXPECT_TRUE(fs::is_regular_file(w.part_path(1)));
  EXPECT_EQ(w.part_path(1).filename(), "layer-00001.safetensors");
  {
    const io::TensorStore source = io::TensorStore::open_dir(src.dir());
    w.finalize(source, src.config(), summary());
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "out.partial"));
  EXPECT_FALSE(fs::exists(tmp.path() / "out.old"));
  EXPECT_EQ(entries(out), (std::set<std::string>{"config.json", "generation_config.json",
                                                 "model.safetensors", "quantize_config.json",
                                                 "tokenizer.json", "tokenizer_config.json"}));

  const io::TensorStore source = io::TensorStore::open_dir(src.dir());
  const io::TensorStore got = io::TensorStore::open_dir(out);
  ASSERT_EQ(got.files().size(), 1u);
  EXPECT_EQ(got.files()[0]->metadata().at("format"), "pt");

  std::set<std::string> want;
  for (const std::string& n : src.names()) {
    std::string module = n.substr(0, n.rfind('.'));
    if (packed.count(module)) continue;  // .weight and the source .bias are replaced
    want.insert(n);
  }
  for (const auto& [m, p] : packed) {
    for (const auto& t : tensors_of(p)) want.insert(t.name);
  }
  const auto names = got.names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);

  // Originals: same name, dtype, shape and bytes.
  for (const char* n : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                        "model.layers.1.input_layernorm.weight"}) {
    ASSERT_NE(got.find(n), nullptr) << n;
    EXPECT_TRUE(same_bytes(*got.find(n), source.get(n))) << n;
  }
  EXPECT_EQ(got.get("model.embed_tokens.weight").dtype, DType::kBF16);
  EXPECT_EQ(got.get("model.norm.weight").dtype, DType::kF32);
  EXPECT_EQ(got.find("model.layers.0.self_attn.q_proj.weight"), nullptr);

  // Quantized tensors: as packed.
  const PackedLinear& q = packed.at("model.layers.1.self_attn.q_proj");
  const io::TensorInfo& qw = got.get("model.layers.1.self_attn.q_proj.qweight");
  EXPECT_EQ(qw.dtype, DType::kI32);
  EXPECT_EQ(qw.shape, (Shape{kHidden * 4 / 32, kHidden}));
  EXPECT_EQ(std::memcmp(qw.data, q.qweight.data(), qw.nbytes), 0);
  const io::TensorInfo& bias = got.get("model.layers.1.self_attn.q_proj.bias");
  EXPECT_EQ(bias.dtype, DType::kF16);  // the part's fp16 bias, not the source's bf16 one
  EXPECT_EQ(std::memcmp(bias.data, q.bias.data(), bias.nbytes), 0);
  const io::TensorInfo& dz = got.get("model.layers.0.mlp.down_proj.qzeros");
  EXPECT_EQ(dz.shape, (Shape{kInter / 32, kHidden * 4 / 32}));
  EXPECT_EQ(got.get("model.layers.0.mlp.down_proj.scales").dtype, DType::kF16);
  EXPECT_EQ(got.get("model.layers.0.mlp.down_proj.g_idx").shape, (Shape{kInter}));

  // config.json: the source's keys unchanged, plus quantization_config.
  const json cfg = test::read_json(out / "config.json");
  const json orig = json::parse(src.config_text());
  for (const auto& [k, v] : orig.items()) EXPECT_EQ(cfg.at(k), v) << k;
  EXPECT_EQ(cfg.at("torch_dtype"), "bfloat16");
  const json& qc = cfg.at("quantization_config");
  EXPECT_EQ(qc.at("quant_method"), "gptq");
  EXPECT_EQ(qc.at("bits"), 4);
  EXPECT_EQ(qc.at("group_size"), 32);
  EXPECT_EQ(qc.at("desc_act"), false);
  EXPECT_EQ(qc.at("sym"), true);
  EXPECT_DOUBLE_EQ(qc.at("damp_percent").get<double>(), 0.01);
  EXPECT_EQ(qc.at("true_sequential"), true);
  EXPECT_EQ(qc.at("static_groups"), false);
  EXPECT_EQ(qc.at("checkpoint_format"), "gptq");
  EXPECT_EQ(qc.at("format"), "gptq");
  EXPECT_EQ(qc.at("lm_head"), false);
  EXPECT_EQ(qc.at("model_file_base_name"), "model");
  EXPECT_EQ(qc.at("meta").at("quantizer"), json::array({std::string("gptq.cpp:") + GPTQ_VERSION}));
  EXPECT_EQ(qc.at("meta").at("damp_auto_increment"), true);
  EXPECT_EQ(qc.at("meta").at("mse"), false);
  EXPECT_FALSE(qc.contains("modules_in_block_to_quantize"));
  EXPECT_FALSE(qc.contains("dynamic"));
  EXPECT_EQ(test::read_json(out / "quantize_config.json"), qc);

  // Our own config reader takes the folder back.
  const config::ModelConfig back = config::load_model_config(out);
  ASSERT_TRUE(back.quant.has_value());
  EXPECT_EQ(back.quant->bits, 4);
  EXPECT_EQ(back.quant->group_size, 32);

  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    EXPECT_EQ(test::read_file(out / f), test::read_file(src.dir() / f)) << f;
  }
  EXPECT_THROW(w.write_layer(0, {}), Error);  // finalized
}

TEST(CheckpointWriter, ShardsAndIndex) {
  TempDir tmp;
  SourceModel src(tmp.path() / "src");
  const fs::path out = tmp.path() / "out";
  WriterOptions o = opts();
  o.max_shard_bytes = 20000;
  CheckpointWriter w(src.dir(), out, o);
  write_all_layers(w);
  {
    const io::TensorStore source = io::TensorStore::open_dir(src.dir());
    w.finalize(source, src.config(), summary());
  }
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  const json index = test::read_json(out / "model.safetensors.index.json");
  const io::TensorStore got = io::TensorStore::open_dir(out);
  const size_t n = got.files().size();
  ASSERT_GT(n, 2u);

  std::set<std::string> files;
  for (size_t i = 1; i <= n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i, n);
    EXPECT_TRUE(fs::is_regular_file(out / name)) << name;
    files.insert(name);
  }
  uint64_t total = 0;
  for (const auto& f : got.files()) {
    uint64_t in_file = 0;
    for (const auto& t : f->tensors()) {
      total += t.nbytes;
      in_file += t.nbytes;
      EXPECT_EQ(index.at("weight_map").at(t.name), f->path().filename().string());
    }
    // A shard only goes over the limit when it holds a single tensor larger than it.
    if (in_file > o.max_shard_bytes) {
      EXPECT_EQ(f->tensors().size(), 1u) << f->path();
    }
  }
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), total);
  EXPECT_EQ(index.at("weight_map").size(), got.names().size());
  // Names sorted in the file itself.
  const std::string text = test::read_file(out / "model.safetensors.index.json");
  size_t last = 0;
  for (const std::string& name : got.names()) {
    const size_t at = text.find("\"" + name + "\"");
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_GT(at, last) << name;
    last = at;
  }
  // Layers stay together: layer 0 is in earlier shards than layer 1.
  const std::string f0 = index.at("weight_map").at("model.layers.0.mlp.up_proj.qweight");
  const std::string f1 = index.at("weight_map").at("model.layers.1.mlp.up_proj.qweight");
  EXPECT_LT(f0, f1);
}

TEST(CheckpointWriter, TiedLmHeadIsNotDuplicated) {
  for (const bool in_file : {false, true}) {
    TempDir tmp;
    SourceModel src(tmp.path() / "src", {.tied = true, .lm_head = in_file});
    const fs::path out = tmp.path() / "out";
    CheckpointWriter w(src.dir(), out, opts());
    write_all_layers(w);
    {
      const io::TensorStore source = io::TensorStore::open_dir(src.dir());
      w.finalize(source, src.config(), summary());
    }
    const io::TensorStore got = io::TensorStore::open_dir(out);
    EXPECT_EQ(got.find("lm_head.weight"), nullptr) << "lm_head in source: " << in_file;
    EXPECT_NE(got.find("model.embed_tokens.weight"), nullptr);
    EXPECT_EQ(test::read_json(out / "config.json").at("tie_word_embeddings"), true);
  }
}

TEST(CheckpointWriter, ResumeKeepsPartsOfTheSameRunOnly) {
  TempDir tmp;
  SourceModel src(tmp.path() / "src");
  const fs::path out = tmp.path() / "out";
  const PackedLinear p = make_packed(layer_prefix(0) + "mlp.up_proj", kInter, kHidden, 4, 32, false, 7);
  {
    CheckpointWriter w(src.dir(), out, opts("sig-a"));
    EXPECT_FALSE(w.has_layer(0));
    w.write_layer(0, tensors_of(p));
    EXPECT_TRUE(w.has_layer(0));
  }  // interrupted: no finalize
  // Leftovers of a crash: a temporary part and a shard of a failed finalize.
  io::write_file_atomic(tmp.path() / "out.partial/parts/layer-00001.safetensors.tmp.123", "x");
  io::write_file_atomic(tmp.path() / "out.partial/model.safetensors", "x");
  // The caller's own per-layer file in parts/ (the pipeline's reports) survives.
  io::write_file_atomic(tmp.path() / "out.partial/parts/layer-00000.report.json", "[]");
  // A torn part (impossible with atomic writes, but a disk can lie): dropped, redone.
  io::write_file_atomic(tmp.path() / "out.partial/parts/layer-00002.safetensors", "garbage");
  {
    CheckpointWriter w(src.dir(), out, opts("sig-a"));
    EXPECT_TRUE(w.has_layer(0));
    EXPECT_FALSE(w.has_layer(1));
    EXPECT_FALSE(w.has_layer(2));
    const io::SafetensorsFile& part = w.layer_part(0);
    const io::TensorInfo* qw = part.find(p.module + ".qweight");
    ASSERT_NE(qw, nullptr);
    EXPECT_EQ(std::memcmp(qw->data, p.qweight.data(), qw->nbytes), 0);
    EXPECT_EQ(entries(w.partial_dir()), (std::set<std::string>{"parts", "run.json"}));
    EXPECT_EQ(entries(w.partial_dir() / "parts"),
              (std::set<std::string>{"layer-00000.report.json", "layer-00000.safetensors"}));
    expect_error(ErrorKind::kArgument, [&] { w.layer_part(1); });
  }
  {
    WriterOptions o = opts("sig-a");
    o.resume = false;
    CheckpointWriter w(src.dir(), out, o);
    EXPECT_FALSE(w.has_layer(0));
    EXPECT_TRUE(entries(w.partial_dir() / "parts").empty());
    w.write_layer(0, tensors_of(p));
  }
  {
    CheckpointWriter w(src.dir(), out, opts("sig-b"));
    EXPECT_FALSE(w.has_layer(0));
    EXPECT_TRUE(entries(w.partial_dir() / "parts").empty());
    EXPECT_EQ(test::read_json(w.partial_dir() / "run.json").at("run_signature"), "sig-b");
  }
}

TEST(CheckpointWriter, RefusesAForeignPartialFolder) {
  TempDir tmp;
  SourceModel src(tmp.path() / "src");
  fs::create_directories(tmp.path() / "out.partial");
  io::write_file_atomic(tmp.path() / "out.partial/precious.txt", "mine");
  const std::string msg = expect_error(ErrorKind::kArgument, [&] {
    CheckpointWriter w(src.dir(), tmp.path() / "out", opts());
  });
  EXPECT_NE(msg.find("out.partial"), std::string::npos) << msg;
  EXPECT_TRUE(fs::exists(tmp.path() / "out.partial/precious.txt"));
  // An empty one (a crash right after creating it) is taken over.
  fs::remove_all(tmp.path() / "out.partial");
  fs::create_directories(tmp.path() / "out.partial");
  CheckpointWriter w(src.dir(), tmp.path() / "out/", opts());  // trailing slash: same folder
  EXPECT_EQ(w.partial_dir(), tmp.path() / "out.partial");
}

TEST(CheckpointWriter, ExistingOutputNeedsForceAndSurvivesFailures) {
  TempDir tmp;
  SourceModel src(tmp.path() / "src");
  const fs::path out = tmp.path() / "out";
  fs::create_directories(out);
  io::write_file_atomic(out / "old.txt", "old model");

  const std::string msg = expect_error(ErrorKind::kArgument, [&] { CheckpointWriter w(src.dir(), out, opts()); });
  EXPECT_NE(msg.find(out.string()), std::string::npos) << msg;
  EXPECT_EQ(test::read_file(out / "old.txt"), "old model");
  expect_error(ErrorKind::kArgument, [&] {
    WriterOptions o = opts();
    o.force = true;
    CheckpointWriter w(src.dir(), src.dir(), o);  // never over the source
  });

  WriterOptions o = opts();
  o.force = true;
  CheckpointWriter w(src.dir(), out, o);
  const io::TensorStore source = io::TensorStore::open_dir(src.dir());
  // Fails before writing: layer 1 has no part.
  {
    const PackedLinear p = make_packed(layer_prefix(0) + "mlp.up_proj", kInter, kHidden, 4, 32, false, 7);
    w.write_layer(0, tensors_of(p));
    const std::string m = expect_error(ErrorKind::kArgument, [&] { w.finalize(source, src.config(), summary()); });
    EXPECT_NE(m.find("layer 1"), std::string::npos) << m;
  }
  EXPECT_EQ(entries(out), std::set<std::string>{"old.txt"});
  // Fails with a bad source config.
  write_all_layers(w);
  config::ModelConfig bad_cfg = src.config();
  bad_cfg.raw_json = "{ not json";
  expect_error(ErrorKind::kConfig, [&] { w.finalize(source, bad_cfg, summary()); });
  EXPECT_EQ(entries(out), std::set<std::string>{"old.txt"});
  // Fails on an undeclared unquantized block linear (layer parts without down_proj).
  write_all_layers(w, {layer_prefix(1) + "mlp.down_proj"});
  const std::string m2 = expect_error(ErrorKind::kArgument, [&] { w.finalize(source, src.config(), summary()); });
  EXPECT_NE(m2.find("model.layers.1.mlp.down_proj"), std::string::npos) << m2;
  EXPECT_EQ(entries(out), std::set<std::string>{"old.txt"});
  EXPECT_TRUE(w.has_layer(0));
  EXPECT_TRUE(w.has_layer(1));

  // Succeeds: the old folder is replaced as a whole.
  w.finalize(source, src.config(), summary({layer_prefix(1) + "mlp.down_proj"}));
  EXPECT_FALSE(fs::exists(out / "old.txt"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(tmp.path() / "out.old"));
  EXPECT_FALSE(fs::exists(tmp.path() / "out.partial"));
  // The unquantized linear kept its original weight and got a dynamic rule.
  const io::TensorStore got = io::TensorStore::open_dir(out);
  EXPECT_TRUE(same_bytes(got.get("model.layers.1.mlp.down_proj.weight"),
                         source.get("model.layers.1.mlp.down_proj.weight")));
  EXPECT_EQ(got.find("model.layers.1.mlp.down_proj.qweight"), nullptr);
  EXPECT_NE(got.find("model.layers.0.mlp.down_proj.qweight"), nullptr);
  EXPECT_EQ(got.find("model.layers.0.mlp.down_proj.weight"), nullptr);
  const json qc = test::read_json(out / "config.json").at("quantization_config");
  EXPECT_EQ(qc.at("dynamic"), (json{{"-:model\\.layers\\.1\\.mlp\\.down_proj$", json::object()}}));
  EXPECT_FALSE(qc.contains("modules_in_block_to_quantize"));
}

TEST(CheckpointWriter, RefusesMismatchedQweight) {
  TempDir tmp;
  SourceModel src(tmp.path() / "src");
  CheckpointWriter w(src.dir(), tmp.path() / "out", opts());
  write_all_layers(w, {}, /*bits=*/8);  // parts at 8 bits, summary says 4
  const io::TensorStore source = io::TensorStore::open_dir(src.dir());
  const std::string m = expect_error(ErrorKind::kArgument, [&] { w.finalize(source, src.config(), summary()); });
  EXPECT_NE(m.find(".qweight"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));
}

// ---- quantization_config_json ---------------------------------------------------------------

TEST(QuantizationConfigJson, ModulesInBlockToQuantizeAndDynamic) {
  // Nothing left out: neither key.
  {
    const json j = json::parse(quantization_config_json(summary()));
    EXPECT_FALSE(j.contains("modules_in_block_to_quantize"));
    EXPECT_FALSE(j.contains("dynamic"));
  }
  // down_proj unquantized in every layer: left out of the list, group structure kept.
  {
    const json j = json::parse(quantization_config_json(
        summary({layer_prefix(0) + "mlp.down_proj", layer_prefix(1) + "mlp.down_proj"})));
    const json want = json::array({json::array({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}),
                                   json::array({"self_attn.o_proj"}),
                                   json::array({"mlp.gate_proj", "mlp.up_proj"})});
    EXPECT_EQ(j.at("modules_in_block_to_quantize"), want);
    // And a "-:" rule per module, which GPTQModel and vLLM read.
    const json dyn = {{"-:model\\.layers\\.0\\.mlp\\.down_proj$", json::object()},
                      {"-:model\\.layers\\.1\\.mlp\\.down_proj$", json::object()}};
    EXPECT_EQ(j.at("dynamic"), dyn);
    const auto q = config::parse_quantization_config(j.dump(), "test");
    EXPECT_EQ(q.modules_in_block_to_quantize.size(), 6u);
    EXPECT_FALSE(q.scheme_for(layer_prefix(1) + "mlp.down_proj").quantized);
    EXPECT_TRUE(q.scheme_for(layer_prefix(1) + "mlp.up_proj").quantized);
  }
  // Mixed: o_proj everywhere, k_proj in layer 0 only, and a module outside the blocks.
  {
    const json j = json::parse(quantization_config_json(summary(
        {layer_prefix(0) + "self_attn.o_proj", layer_prefix(1) + "self_attn.o_proj",
         layer_prefix(0) + "self_attn.k_proj", "model.extra.proj"})));
    const json want = json::array({json::array({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}),
                                   json::array({"mlp.gate_proj", "mlp.up_proj"}),
                                   json::array({"mlp.down_proj"})});
    EXPECT_EQ(j.at("modules_in_block_to_quantize"), want);
    const json dyn = {{"-:model\\.layers\\.0\\.self_attn\\.k_proj$", json::object()},
                      {"-:model\\.layers\\.0\\.self_attn\\.o_proj$", json::object()},
                      {"-:model\\.layers\\.1\\.self_attn\\.o_proj$", json::object()},
                      {"-:model\\.extra\\.proj$", json::object()}};
    EXPECT_EQ(j.at("dynamic"), dyn);
    const auto q = config::parse_quantization_config(j.dump(), "test");
    EXPECT_EQ(q.dynamic.size(), 4u);
    EXPECT_FALSE(q.scheme_for("model.extra.proj").quantized);
    EXPECT_TRUE(q.scheme_for(layer_prefix(1) + "self_attn.k_proj").quantized);
  }
  // Everything left out everywhere is not a GPTQ model.
  {
    std::vector<std::string> all;
    for (int64_t l = 0; l < kLayers; ++l) {
      for (const auto& g : kGroups) {
        for (const auto& s : g) all.push_back(layer_prefix(l) + s);
      }
    }
    expect_error(ErrorKind::kArgument, [&] { quantization_config_json(summary(all)); });
  }
}

TEST(QuantizationConfigJson, RuleMatchesExactlyOneModule) {
  const std::string rx = exact_module_regex("model.layers.1.mlp.down_proj");
  EXPECT_EQ(rx, "model\\.layers\\.1\\.mlp\\.down_proj$");
  // Python's re.match anchors at the start: std::regex_search with ^ does the same here.
  const std::regex re("^" + rx);
  EXPECT_TRUE(std::regex_search("model.layers.1.mlp.down_proj", re));
  for (const char* other : {"model.layers.11.mlp.down_proj", "model.layers.1.mlp.down_proj_x",
                            "model.layers.1Xmlp.down_proj", "xmodel.layers.1.mlp.down_proj"}) {
    EXPECT_FALSE(std::regex_search(other, re)) << other;
  }
}

TEST(QuantizationConfigJson, ValuesAndValidation) {
  QuantizationSummary s = summary();
  s.q.bits = 3;
  s.q.group_size = -1;
  s.q.desc_act = true;
  s.q.sym = false;
  s.q.damp_percent = 0.05;
  s.q.static_groups = true;
  s.q.true_sequential = false;
  s.q.checkpoint_format = "gptq_v2";
  s.damp_auto_increment = false;
  s.mse = true;
  const json j = json::parse(quantization_config_json(s));
  EXPECT_EQ(j.at("bits"), 3);
  EXPECT_EQ(j.at("group_size"), -1);
  // Act-order with static groups: a trivial g_idx, declared without act-order; meta keeps it.
  EXPECT_EQ(j.at("desc_act"), false);
  EXPECT_EQ(j.at("meta").at("desc_act"), true);
  s.q.static_groups = false;
  EXPECT_EQ(json::parse(quantization_config_json(s)).at("desc_act"), true);
  s.q.static_groups = true;
  EXPECT_EQ(j.at("sym"), false);
  EXPECT_DOUBLE_EQ(j.at("damp_percent").get<double>(), 0.05);
  EXPECT_EQ(j.at("static_groups"), true);
  EXPECT_EQ(j.at("true_sequential"), false);
  EXPECT_EQ(j.at("checkpoint_format"), "gptq_v2");
  EXPECT_EQ(j.at("format"), "gptq_v2");
  EXPECT_EQ(j.at("meta").at("damp_auto_increment"), false);
  EXPECT_EQ(j.at("meta").at("mse"), true);
  const auto q = config::parse_quantization_config(j.dump(), "test");
  EXPECT_EQ(q.bits, 3);
  EXPECT_EQ(q.checkpoint_format, "gptq_v2");
  EXPECT_FALSE(q.sym);

  s.q.bits = 5;
  expect_error(ErrorKind::kArgument, [&] { quantization_config_json(s); });
  s.q.bits = 4;
  s.q.checkpoint_format = "marlin";
  expect_error(ErrorKind::kArgument, [&] { quantization_config_json(s); });
  s.q.checkpoint_format = "gptq";
  s.block_prefix = "model.layers.";
  expect_error(ErrorKind::kArgument, [&] { quantization_config_json(s); });
}

// ---- tensors_of ----------------------------------------------------------------------------

TEST(TensorsOf, NamesShapesAndChecks) {
  const PackedLinear p = make_packed("m.q", 64, 96, 3, 32, true, 1);
  const auto ts = tensors_of(p);
  ASSERT_EQ(ts.size(), 5u);
  EXPECT_EQ(ts[0].name, "m.q.qweight");
  EXPECT_EQ(ts[0].shape, (Shape{9, 64}));
  EXPECT_EQ(ts[0].dtype, DType::kI32);
  EXPECT_EQ(ts[1].name, "m.q.qzeros");
  EXPECT_EQ(ts[1].shape, (Shape{3, 6}));
  EXPECT_EQ(ts[2].name, "m.q.scales");
  EXPECT_EQ(ts[2].dtype, DType::kF16);
  EXPECT_EQ(ts[2].shape, (Shape{3, 64}));
  EXPECT_EQ(ts[3].name, "m.q.g_idx");
  EXPECT_EQ(ts[3].shape, (Shape{96}));
  EXPECT_EQ(ts[4].name, "m.q.bias");
  EXPECT_EQ(ts[4].dtype, DType::kF16);
  EXPECT_EQ(ts[4].nbytes, 128u);
  EXPECT_EQ(tensors_of(make_packed("m.q", 64, 96, 3, 32, false, 1)).size(), 4u);

  PackedLinear bad = p;
  bad.qzeros.pop_back();
  std::string m = expect_error(ErrorKind::kArgument, [&] { tensors_of(bad); });
  EXPECT_NE(m.find("m.q"), std::string::npos) << m;
  EXPECT_NE(m.find("qzeros"), std::string::npos) << m;
  bad = p;
  bad.bias.resize(3);
  expect_error(ErrorKind::kArgument, [&] { tensors_of(bad); });
  bad = p;
  bad.k = 80;
  expect_error(ErrorKind::kArgument, [&] { tensors_of(bad); });
  bad = p;
  bad.bits = 5;
  expect_error(ErrorKind::kArgument, [&] { tensors_of(bad); });
  bad = p;
  bad.g_idx.push_back(0);
  expect_error(ErrorKind::kArgument, [&] { tensors_of(bad); });
}

// ---- find_quantized_linear -----------------------------------------------------------------

class FindQuantizedLinear : public ::testing::Test {
 protected:
  // Writes one linear "blk.lin" (N = 64, K = 128, 4 bits, g = 32) with the given replacements.
  io::TensorStore store(const std::map<std::string, io::TensorToWrite>& replace = {},
                        const std::set<std::string>& drop = {}) {
    p_ = make_packed("blk.lin", 64, 128, 4, 32, false, 3);
    bias_.assign(64, 0.5f);
    std::map<std::string, io::TensorToWrite> ts;
    for (const auto& t : tensors_of(p_)) ts[t.name] = t;
    ts["blk.lin.bias"] = {"blk.lin.bias", DType::kF32, {64}, bias_.data(), 256};
    for (const auto& [name, t] : replace) ts[name] = t;
    std::vector<io::TensorToWrite> v;
    for (const auto& [name, t] : ts) {
      if (!drop.count(name)) v.push_back(t);
    }
    const fs::path file = tmp_.path() / ("lin" + std::to_string(count_++) + ".safetensors");
    io::write_safetensors(file, v);
    return io::TensorStore::open_files({file});
  }
  config::QuantizationConfig cfg(int bits = 4, int group = 32) {
    config::QuantizationConfig q;
    q.bits = bits;
    q.group_size = group;
    return q;
  }
  TempDir tmp_;
  PackedLinear p_;
  std::vector<float> bias_;
  std::vector<int32_t> buf_;
  int count_ = 0;
};

TEST_F(FindQuantizedLinear, FindsAValidLinear) {
  const io::TensorStore s = store();
  const QuantizedLinearTensors r = find_quantized_linear(s, "blk.lin", 64, 128, cfg());
  EXPECT_EQ(r.n, 64);
  EXPECT_EQ(r.k, 128);
  EXPECT_EQ(r.groups, 4);
  EXPECT_EQ(r.bits, 4);
  EXPECT_EQ(r.group_size, 32);
  EXPECT_TRUE(r.zeros_are_v1);
  ASSERT_NE(r.qweight, nullptr);
  EXPECT_EQ(r.qweight->name, "blk.lin.qweight");
  ASSERT_NE(r.g_idx, nullptr);
  ASSERT_NE(r.bias, nullptr);
  EXPECT_EQ(r.bias->dtype, DType::kF32);

  config::QuantizationConfig v2 = cfg();
  v2.checkpoint_format = "gptq_v2";
  EXPECT_FALSE(find_quantized_linear(s, "blk.lin", 64, 128, v2).zeros_are_v1);

  // Optional tensors may be absent.
  const io::TensorStore bare = store({}, {"blk.lin.g_idx", "blk.lin.bias"});
  const QuantizedLinearTensors b = find_quantized_linear(bare, "blk.lin", 64, 128, cfg());
  EXPECT_EQ(b.g_idx, nullptr);
  EXPECT_EQ(b.bias, nullptr);
}

TEST_F(FindQuantizedLinear, GroupSizeMinusOneIsOneGroup) {
  buf_.assign(64 * 4 / 32, 0x77777777);
  std::vector<uint16_t> sc(64, 0x3c00);
  std::vector<int32_t> gi(128, 0);
  const io::TensorStore s = store({{"blk.lin.qzeros", {"blk.lin.qzeros", DType::kI32, {1, 8}, buf_.data(), 32}},
                                   {"blk.lin.scales", {"blk.lin.scales", DType::kF16, {1, 64}, sc.data(), 128}},
                                   {"blk.lin.g_idx", {"blk.lin.g_idx", DType::kI32, {128}, gi.data(), 512}}});
  const QuantizedLinearTensors r = find_quantized_linear(s, "blk.lin", 64, 128, cfg(4, -1));
  EXPECT_EQ(r.groups, 1);
  EXPECT_EQ(r.group_size, 128);
}

TEST_F(FindQuantizedLinear, WrongQweightShape) {
  buf_.assign(16 * 64 * 2, 0);
  const io::TensorStore s = store({{"blk.lin.qweight", {"blk.lin.qweight", DType::kI32, {32, 64}, buf_.data(), 32 * 64 * 4}}});
  const std::string m = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 128, cfg()); });
  EXPECT_NE(m.find("blk.lin.qweight"), std::string::npos) << m;
  EXPECT_NE(m.find("[16, 64]"), std::string::npos) << m;  // expected
  EXPECT_NE(m.find("[32, 64]"), std::string::npos) << m;  // found
  EXPECT_NE(m.find("8 bits"), std::string::npos) << m;    // the hint
  EXPECT_NE(m.find(".safetensors"), std::string::npos) << m;  // the file
}

TEST_F(FindQuantizedLinear, ScalesF32) {
  std::vector<float> sc(4 * 64, 0.1f);
  const io::TensorStore s = store({{"blk.lin.scales", {"blk.lin.scales", DType::kF32, {4, 64}, sc.data(), sc.size() * 4}}});
  const std::string m = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 128, cfg()); });
  EXPECT_NE(m.find("blk.lin.scales"), std::string::npos) << m;
  EXPECT_NE(m.find("expected F16 [4, 64]"), std::string::npos) << m;
  EXPECT_NE(m.find("found F32 [4, 64]"), std::string::npos) << m;
}

TEST_F(FindQuantizedLinear, GIdxOutOfRange) {
  std::vector<int32_t> gi(128);
  for (int i = 0; i < 128; ++i) gi[i] = i / 32;
  gi[77] = 4;  // G = 4
  const io::TensorStore s = store({{"blk.lin.g_idx", {"blk.lin.g_idx", DType::kI32, {128}, gi.data(), 512}}});
  const std::string m = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 128, cfg()); });
  EXPECT_NE(m.find("blk.lin"), std::string::npos) << m;
  EXPECT_NE(m.find("g_idx[77] = 4"), std::string::npos) << m;
  EXPECT_NE(m.find("[0, 4)"), std::string::npos) << m;
  gi[77] = -1;
  const io::TensorStore s2 = store({{"blk.lin.g_idx", {"blk.lin.g_idx", DType::kI32, {128}, gi.data(), 512}}});
  expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s2, "blk.lin", 64, 128, cfg()); });
}

TEST_F(FindQuantizedLinear, UnsupportedBitsAndSizes) {
  const io::TensorStore s = store();
  const std::string m = expect_error(ErrorKind::kUnsupported, [&] { find_quantized_linear(s, "blk.lin", 64, 128, cfg(5)); });
  EXPECT_NE(m.find("5"), std::string::npos) << m;
  // K = 120 is readable (ceil(K*b/32) = 15 rows), but this file's qweight has 16.
  const std::string m2 = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 120, cfg()); });
  EXPECT_NE(m2.find("blk.lin.qweight"), std::string::npos) << m2;
  EXPECT_NE(m2.find("expected I32 [15, 64]"), std::string::npos) << m2;
  expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 48, 128, cfg()); });
  // A config at another bit width than the file.
  expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 128, cfg(8)); });
}

// K and N not multiples of 32, as GPTQModel 7.7 packs stories260k's MLP (gate/up K = 64,
// N = 172; down K = 172, N = 64) at 4 bits, g = 32: qweight [ceil(K*b/32), N], qzeros
// [ceil(K/g), ceil(N*b/32)], scales [ceil(K/g), N], g_idx [K]. Shapes are exact: one row or word
// more or less is refused, naming the tensor; 3 bits (whose packer refuses such shapes) too.
TEST_F(FindQuantizedLinear, ShapesThatAreNotMultiplesOf32) {
  struct Case {
    int64_t n, k;
    int bits, group;
    int64_t qw_rows, groups, qz_words;
  };
  for (const Case c : {Case{64, 172, 4, 32, 22, 6, 8}, Case{172, 64, 4, 32, 8, 2, 22},
                       Case{64, 172, 2, 32, 11, 6, 4}, Case{172, 172, 8, -1, 43, 1, 43},
                       Case{172, 64, 2, 32, 4, 2, 11}}) {
    std::vector<int32_t> qw(static_cast<size_t>(c.qw_rows * c.n)), qz(static_cast<size_t>(c.groups * c.qz_words));
    std::vector<uint16_t> sc(static_cast<size_t>(c.groups * c.n), 0x3c00);
    std::vector<int32_t> gi(static_cast<size_t>(c.k));
    for (int64_t i = 0; i < c.k; ++i) gi[i] = static_cast<int32_t>(c.group == -1 ? 0 : i / c.group);
    auto t = [](const char* name, DType dt, Shape shape, const void* data, size_t bytes) {
      return io::TensorToWrite{name, dt, std::move(shape), data, bytes};
    };
    std::map<std::string, io::TensorToWrite> good = {
        {"blk.lin.qweight", t("blk.lin.qweight", DType::kI32, {c.qw_rows, c.n}, qw.data(), qw.size() * 4)},
        {"blk.lin.qzeros", t("blk.lin.qzeros", DType::kI32, {c.groups, c.qz_words}, qz.data(), qz.size() * 4)},
        {"blk.lin.scales", t("blk.lin.scales", DType::kF16, {c.groups, c.n}, sc.data(), sc.size() * 2)},
        {"blk.lin.g_idx", t("blk.lin.g_idx", DType::kI32, {c.k}, gi.data(), gi.size() * 4)}};
    const std::string what = "N = " + std::to_string(c.n) + ", K = " + std::to_string(c.k) + ", " +
                             std::to_string(c.bits) + " bits";
    const io::TensorStore s = store(good, {"blk.lin.bias"});
    const QuantizedLinearTensors r = find_quantized_linear(s, "blk.lin", c.n, c.k, cfg(c.bits, c.group));
    EXPECT_EQ(r.groups, c.groups) << what;
    // One qweight row fewer (K*b/32 rounded down) or one qzeros word fewer: refused.
    auto less = good;
    less["blk.lin.qweight"].shape = {c.qw_rows - 1, c.n};
    less["blk.lin.qweight"].nbytes = static_cast<uint64_t>((c.qw_rows - 1) * c.n * 4);
    const io::TensorStore s2 = store(less, {"blk.lin.bias"});
    const std::string m = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s2, "blk.lin", c.n, c.k, cfg(c.bits, c.group)); });
    const std::string want = "expected I32 [" + std::to_string(c.qw_rows) + ", " + std::to_string(c.n) + "]";
    EXPECT_NE(m.find(want), std::string::npos) << what << ": " << m;
    less = good;
    less["blk.lin.qzeros"].shape = {c.groups, c.qz_words - 1};
    less["blk.lin.qzeros"].nbytes = static_cast<uint64_t>(c.groups * (c.qz_words - 1) * 4);
    const io::TensorStore s3 = store(less, {"blk.lin.bias"});
    const std::string m3 = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s3, "blk.lin", c.n, c.k, cfg(c.bits, c.group)); });
    EXPECT_NE(m3.find("blk.lin.qzeros"), std::string::npos) << what << ": " << m3;
    // A scales row fewer (groups counted as floor(K/g), dropping the partial one): refused.
    if (c.group != -1) {
      less = good;
      less["blk.lin.scales"].shape = {c.groups - 1, c.n};
      less["blk.lin.scales"].nbytes = static_cast<uint64_t>((c.groups - 1) * c.n * 2);
      const io::TensorStore s4 = store(less, {"blk.lin.bias"});
      expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s4, "blk.lin", c.n, c.k, cfg(c.bits, c.group)); });
    }
  }
  // 3 bits: no packer writes part-filled 96-bit streams; the message names the module and rule.
  const io::TensorStore s = store();
  const std::string m = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 172, cfg(3)); });
  EXPECT_NE(m.find("blk.lin"), std::string::npos) << m;
  EXPECT_NE(m.find("3-bit"), std::string::npos) << m;
  EXPECT_NE(m.find("K = 172"), std::string::npos) << m;
}

TEST_F(FindQuantizedLinear, MissingOrMistypedTensors) {
  const io::TensorStore s = store({}, {"blk.lin.qzeros"});
  const std::string m = expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "blk.lin", 64, 128, cfg()); });
  EXPECT_NE(m.find("blk.lin.qzeros"), std::string::npos) << m;
  EXPECT_NE(m.find("found none"), std::string::npos) << m;
  expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s, "other", 64, 128, cfg()); });

  std::vector<uint16_t> b16(64);
  const io::TensorStore s2 = store({{"blk.lin.bias", {"blk.lin.bias", DType::kI16, {64}, b16.data(), 128}}});
  expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s2, "blk.lin", 64, 128, cfg()); });
  std::vector<int64_t> gi(128, 0);
  const io::TensorStore s3 = store({{"blk.lin.g_idx", {"blk.lin.g_idx", DType::kI64, {128}, gi.data(), 1024}}});
  expect_error(ErrorKind::kShape, [&] { find_quantized_linear(s3, "blk.lin", 64, 128, cfg()); });
  const io::TensorStore s4 = store({{"blk.lin.bias", {"blk.lin.bias", DType::kBF16, {64}, b16.data(), 128}}});
  EXPECT_EQ(find_quantized_linear(s4, "blk.lin", 64, 128, cfg()).bias->dtype, DType::kBF16);
}

}  // namespace
}  // namespace gptq::checkpoint

namespace gptq::checkpoint {
namespace {

// The family rules (what transformers 5.24 and GPTQModel 7.7 did with the families' folders in
// the interop check): they apply to the model types named and only to quantized folders.
TEST(LoaderVerdicts, FamilyRules) {
  config::QuantizationConfig q;
  q.bits = 4;
  q.group_size = 32;
  auto loads = [&](const std::vector<LinearShape>& ls, const std::string& mt, const std::string& loader) {
    for (const auto& v : loader_verdicts(q, ls, mt)) {
      if (v.loader == loader) return v.loads;
    }
    ADD_FAILURE() << loader;
    return false;
  };
  const std::vector<LinearShape> fused = {{"model.layers.0.self_attn.qkv_proj", 96, 32, true},
                                          {"model.layers.0.mlp.gate_up_proj", 128, 32, true}};
  const std::vector<LinearShape> split = {{"model.layers.0.self_attn.qkv_proj", 96, 32, true},
                                          {"model.layers.0.mlp.gate_proj", 64, 32, true},
                                          {"model.layers.0.mlp.up_proj", 64, 32, true}};
  EXPECT_FALSE(loads(fused, "phi3", "GPTQModel"));
  EXPECT_TRUE(loads(fused, "phi3", "transformers"));
  EXPECT_TRUE(loads(split, "phi3", "GPTQModel"));
  EXPECT_FALSE(loads(split, "phi3", "transformers"));
  EXPECT_TRUE(loads(fused, "phi3", "vLLM gptq_marlin"));
  EXPECT_TRUE(loads(split, "phi3", "vLLM gptq_marlin"));
  // The same module names under another model type, and no model type: no family rule.
  EXPECT_TRUE(loads(fused, "llama", "GPTQModel"));
  EXPECT_TRUE(loads(split, "", "transformers"));
  const std::vector<LinearShape> c_attn = {{"transformer.h.0.attn.c_attn", 96, 32, true}};
  EXPECT_FALSE(loads(c_attn, "gpt2", "transformers"));
  EXPECT_TRUE(loads(c_attn, "gpt2", "GPTQModel"));
  const std::vector<LinearShape> neox = {{"gpt_neox.layers.0.attention.query_key_value", 96, 32, true}};
  EXPECT_FALSE(loads(neox, "gpt_neox", "GPTQModel"));
  EXPECT_TRUE(loads(neox, "gpt_neox", "transformers"));
}

// Each rule of loader_verdicts, one shape at a time.
TEST(LoaderVerdicts, RulesOfEachLoader) {
  config::QuantizationConfig q;
  q.bits = 4;
  q.group_size = 128;
  q.sym = true;
  auto verdict = [&](const std::vector<LinearShape>& ls, const std::string& loader) {
    for (const auto& v : loader_verdicts(q, ls)) {
      if (v.loader == loader) return v;
    }
    ADD_FAILURE() << loader;
    return LoaderVerdict{};
  };
  const std::vector<LinearShape> good = {{"model.layers.0.mlp.up_proj", 1536, 1536, true}};
  for (const char* l : {"transformers", "GPTQModel", "vLLM gptq_marlin", "vLLM <= 0.11 gptq"}) {
    EXPECT_TRUE(verdict(good, l).loads) << l;
  }
  // K = 576 is not a multiple of Marlin's 128-wide tile: vLLM 0.33 pads it (marlin_padded_nk), so
  // with g = 64 every loader takes it. N = 172 (GPTQModel packs its qzeros into 22 words) does not
  // fit vLLM's qzeros of N / 8 = 21 words.
  q.group_size = 64;
  const std::vector<LinearShape> k576 = {{"m.down", 576, 576, true}};
  EXPECT_TRUE(verdict(k576, "vLLM gptq_marlin").loads);
  EXPECT_TRUE(verdict(k576, "vLLM <= 0.11 gptq").loads);
  const std::vector<LinearShape> n172 = {{"m.up", 172, 64, true}};
  EXPECT_FALSE(verdict(n172, "vLLM gptq_marlin").loads);
  EXPECT_TRUE(verdict(n172, "GPTQModel").loads);
  // K not divisible by the group: transformers no; GPTQModel yes (its torch kernel pads K, as it
  // loads its own stories260k with down_proj K = 172 under g = 32), with the caveat said.
  q.group_size = 128;
  const std::vector<LinearShape> k192 = {{"m.x", 256, 192, true}};
  EXPECT_TRUE(verdict(k192, "GPTQModel").loads);
  ASSERT_EQ(verdict(k192, "GPTQModel").reasons.size(), 1u);
  EXPECT_NE(verdict(k192, "GPTQModel").reasons[0].find("TorchCpuAvx512Linear"), std::string::npos);
  EXPECT_FALSE(verdict(k192, "transformers").loads);
  // Asymmetric, 3 bits: Marlin no; the others yes. GPTQModel 7.7 refuses asymmetric v1 zeros it
  // did not write (models/loader.py), and takes them as v2.
  q.sym = false;
  EXPECT_FALSE(verdict(good, "vLLM gptq_marlin").loads);
  EXPECT_FALSE(verdict(good, "GPTQModel").loads);
  EXPECT_TRUE(verdict(good, "transformers").loads);
  // ... unless meta.quantizer names GPTQModel 0.9.0 or later (its own v1 writer).
  q.meta_quantizer = {"gptq.cpp:0.1.0", "gptqmodel:0.8.9"};
  EXPECT_FALSE(verdict(good, "GPTQModel").loads);
  q.meta_quantizer = {"gptqmodel:0.9.0"};
  EXPECT_TRUE(verdict(good, "GPTQModel").loads);
  q.meta_quantizer = {"gptqmodel:7.7.0"};
  EXPECT_TRUE(verdict(good, "GPTQModel").loads);
  EXPECT_FALSE(verdict(good, "vLLM gptq_marlin").loads);
  q.meta_quantizer.clear();
  q.checkpoint_format = "gptq_v2";
  EXPECT_TRUE(verdict(good, "GPTQModel").loads);
  q.checkpoint_format = "gptq";
  q.sym = true;
  q.bits = 3;
  EXPECT_FALSE(verdict(good, "vLLM gptq_marlin").loads);
  EXPECT_TRUE(verdict(good, "vLLM <= 0.11 gptq").loads);
  q.bits = 4;
  // Group act-order: vLLM 0.33 refuses it, GPTQModel takes it.
  q.desc_act = true;
  EXPECT_FALSE(verdict(good, "vLLM gptq_marlin").loads);
  EXPECT_TRUE(verdict(good, "GPTQModel").loads);
  q.desc_act = false;
  // An unquantized linear: declared only in modules_in_block_to_quantize -> transformers only.
  const std::vector<LinearShape> unq = {{"model.layers.0.mlp.up_proj", 1536, 1536, true},
                                        {"model.layers.0.mlp.down_proj", 576, 172, false}};
  q.modules_in_block_to_quantize = {"mlp.up_proj"};
  EXPECT_TRUE(verdict(unq, "transformers").loads);
  EXPECT_FALSE(verdict(unq, "GPTQModel").loads);
  q.dynamic.push_back(config::parse_dynamic_rule("-:model\\.layers\\.0\\.mlp\\.down_proj$", "{}", "t"));
  EXPECT_TRUE(verdict(unq, "GPTQModel").loads);
  EXPECT_TRUE(verdict(unq, "vLLM <= 0.11 gptq").loads);
  // Each module with its own scheme: 2-bit up_proj rules Marlin out.
  EXPECT_TRUE(verdict(unq, "vLLM gptq_marlin").loads);
  q.dynamic.push_back(config::parse_dynamic_rule("+:.*up_proj", R"({"bits": 2})", "t"));
  EXPECT_FALSE(verdict(unq, "vLLM gptq_marlin").loads);
  // transformers (optimum 2.3 has no dynamic support) gives up_proj the base 4 bits.
  EXPECT_FALSE(verdict(unq, "transformers").loads);
  EXPECT_TRUE(verdict(unq, "GPTQModel").loads);
}

}  // namespace
}  // namespace gptq::checkpoint
