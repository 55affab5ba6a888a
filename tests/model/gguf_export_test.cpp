// export_gguf on stories260k: every quantized linear of the GGUF, decoded by a naive reader of
// ggml's block layout written here, equals the checkpoint loader's dequantized weight bit for bit
// after the q/k row permutation llama.cpp's converter applies (restated here from its
// reshape(heads, 2, d/2, K).swapaxes(1, 2)); the metadata llama.cpp reads is there; bad inputs
// are refused with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <tuple>

#include "common/test_util.h"
#include "config/model_config.h"
#include "core/dtype.h"
#include "gptq/gptq.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/linear.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;

float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return core::fp16_to_fp32(h);
}

// Element (r, c) of a ggml Q4_0 / Q4_1 / Q8_0 / F32 / F16 tensor with ne0 = k.
float ggml_at(const io::GgufTensorInfo& t, int64_t k, int64_t r, int64_t c) {
  const int64_t nb = k / 32, b = c / 32, j = c % 32;
  switch (t.type) {
    case io::kGgmlF32: {
      float v;
      std::memcpy(&v, t.data + (r * k + c) * 4, 4);
      return v;
    }
    case io::kGgmlF16:
      return h2f(t.data + (r * k + c) * 2);
    case io::kGgmlQ8_0: {
      const uint8_t* blk = t.data + (r * nb + b) * 34;
      return h2f(blk) * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
    }
    case io::kGgmlQ4_0:
    case io::kGgmlQ4_1: {
      const bool q41 = t.type == io::kGgmlQ4_1;
      const uint8_t* blk = t.data + (r * nb + b) * (q41 ? 20 : 18);
      const uint8_t* qs = blk + (q41 ? 4 : 2);
      const int q = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
      return q41 ? h2f(blk) * static_cast<float>(q) + h2f(blk + 2)
                 : h2f(blk) * static_cast<float>(q - 8);
    }
  }
  ADD_FAILURE() << "type " << t.type;
  return 0;
}

// The converter's permutation: row (h, i, j) of the result is row (h, j, i) of the source, with
// i < d/2 and j < 2.
int64_t converter_source_row(int64_t row, int64_t heads, int64_t n) {
  const int64_t d = n / heads, h = row / d, i = (row % d) / 2, j = row % 2;
  return h * d + j * (d / 2) + i;
}

fs::path quantize_stories(const fs::path& dir, const std::string& name, QuantizeConfig q) {
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 8;
  c.seqlen = 64;
  const fs::path out = dir / name;
  quantize_model(test::stories_dir(), out, q, c);
  return out;
}

struct Checked {
  int64_t linears = 0, exact = 0;
  std::map<uint32_t, int> types;
};

Checked check_against_loader(const fs::path& folder, const fs::path& gguf_path) {
  const auto cfg = config::load_model_config(folder);
  const auto store = io::TensorStore::open_dir(folder);
  auto f = io::GgufFile::open(gguf_path);
  const auto& g = f->contents();
  const std::map<std::string, std::string> roles = {
      {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},  {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  Checked out;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    for (const auto& [role, gname] : roles) {
      const std::string module = "model.layers." + std::to_string(l) + "." + role;
      if (!store.find(module + ".qweight")) continue;
      const auto* t = g.tensor("blk." + std::to_string(l) + "." + gname + ".weight");
      EXPECT_NE(t, nullptr) << module;
      if (!t) continue;
      const auto [n, k] =
          std::array<int64_t, 2>{static_cast<int64_t>(t->ne[1]), static_cast<int64_t>(t->ne[0])};
      model::Linear ref =
          model::load_quantized_linear(store, module, n, k, cfg.quant->for_module(module), true);
      const int64_t heads = role == "self_attn.q_proj"   ? cfg.num_attention_heads
                            : role == "self_attn.k_proj" ? cfg.num_key_value_heads
                                                         : 0;
      int64_t diff = 0;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t src = heads ? converter_source_row(r, heads, n) : r;
        for (int64_t c = 0; c < k; ++c) {
          const float got = ggml_at(*t, k, r, c), want = ref.weight()[src * k + c];
          if (std::memcmp(&got, &want, 4) != 0) ++diff;
        }
      }
      ++out.linears;
      out.types[t->type]++;
      if (diff == 0) ++out.exact;
    }
  }
  return out;
}

const io::GgufValue& kv(const io::ParsedGguf& g, const char* key) {
  const io::GgufValue* v = g.find(key);
  EXPECT_NE(v, nullptr) << key;
  static const io::GgufValue none;
  return v ? *v : none;
}

TEST(GgufExport, SymmetricGroupsAndWholeRowsAreQ4_0BitForBitWithLlamaMetadata) {
  test::TempDir dir;
  for (int gs : {32, -1}) {
    QuantizeConfig q;
    q.group_size = gs;
    const fs::path folder = quantize_stories(dir.path(), "q" + std::to_string(gs), q);
    const fs::path out = dir.path() / ("q" + std::to_string(gs) + ".gguf");
    const GgufExportReport rep = export_gguf(folder, out);
    EXPECT_EQ(rep.exact_linears, 5 * 4);  // q/k/v/o; the MLP (172 wide) stays dense
    EXPECT_EQ(rep.dense_linears, 5 * 3);
    const Checked c = check_against_loader(folder, out);
    EXPECT_EQ(c.linears, 20);
    EXPECT_EQ(c.exact, 20);
    EXPECT_EQ(c.types.at(io::kGgmlQ4_0), 20);
    // No temporary file is left behind.
    for (const auto& e : fs::directory_iterator(dir.path())) {
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    }
    if (gs != 32) continue;
    auto f = io::GgufFile::open(out);
    const auto& g = f->contents();
    EXPECT_EQ(kv(g, "general.architecture").strings.at(0), "llama");
    EXPECT_EQ(kv(g, "general.file_type").ints.at(0), 2);  // MOSTLY_Q4_0
    EXPECT_EQ(kv(g, "llama.block_count").ints.at(0), 5);
    EXPECT_EQ(kv(g, "llama.embedding_length").ints.at(0), 64);
    EXPECT_EQ(kv(g, "llama.feed_forward_length").ints.at(0), 172);
    EXPECT_EQ(kv(g, "llama.attention.head_count").ints.at(0), 8);
    EXPECT_EQ(kv(g, "llama.attention.head_count_kv").ints.at(0), 4);
    EXPECT_EQ(kv(g, "llama.rope.dimension_count").ints.at(0), 8);
    EXPECT_EQ(kv(g, "llama.context_length").ints.at(0), 512);
    EXPECT_FLOAT_EQ(
        static_cast<float>(kv(g, "llama.attention.layer_norm_rms_epsilon").floats.at(0)), 1e-5f);
    EXPECT_EQ(kv(g, "tokenizer.ggml.model").strings.at(0), "llama");
    const auto& tokens = kv(g, "tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.strings.size(), 512u);
    EXPECT_EQ(tokens.strings[1], "<s>");
    EXPECT_EQ(tokens.strings[3], "<0x00>");
    const auto& types = kv(g, "tokenizer.ggml.token_type");
    EXPECT_EQ(types.ints[0], 2);  // unknown
    EXPECT_EQ(types.ints[1], 3);  // control
    EXPECT_EQ(types.ints[3], 6);  // byte
    EXPECT_EQ(types.ints[300], 1);
    // Pieces made by earlier merges score higher: the first merge "▁ t" makes "▁t".
    const auto& scores = kv(g, "tokenizer.ggml.scores");
    const auto it = std::find(tokens.strings.begin(), tokens.strings.end(), "\xe2\x96\x81t");
    ASSERT_NE(it, tokens.strings.end());
    EXPECT_EQ(scores.floats[it - tokens.strings.begin()], -1.0);
    EXPECT_EQ(kv(g, "tokenizer.ggml.bos_token_id").ints.at(0), 1);
    EXPECT_EQ(kv(g, "tokenizer.ggml.eos_token_id").ints.at(0), 2);
    EXPECT_EQ(kv(g, "tokenizer.ggml.add_bos_token").ints.at(0), 1);
    // Tied embeddings: no output.weight; the embedding is F32 as stored.
    EXPECT_EQ(g.tensor("output.weight"), nullptr);
    ASSERT_NE(g.tensor("token_embd.weight"), nullptr);
    EXPECT_EQ(g.tensor("token_embd.weight")->type, io::kGgmlF32);
    EXPECT_EQ(g.tensor("token_embd.weight")->ne, (std::vector<uint64_t>{64, 512}));
    EXPECT_EQ(g.tensor("blk.0.ffn_down.weight")->ne, (std::vector<uint64_t>{172, 64}));
    // Without --force the file is not replaced.
    try {
      export_gguf(folder, out);
      ADD_FAILURE() << "an existing output was replaced without force";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kArgument);
      EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
    }
    GgufExportOptions o;
    o.force = true;
    o.dense_type = "f16";
    export_gguf(folder, out, o);
    auto f2 = io::GgufFile::open(out);
    EXPECT_EQ(f2->contents().tensor("token_embd.weight")->type, io::kGgmlF16);
    EXPECT_EQ(f2->contents().tensor("blk.0.ffn_up.weight")->type, io::kGgmlF16);
  }
}

TEST(GgufExport, AsymmetricIsQ4_1AndEightBitIsQ8_0) {
  test::TempDir dir;
  QuantizeConfig q;
  q.group_size = 32;
  q.sym = false;
  q.format = "gptq_v2";
  const fs::path a = quantize_stories(dir.path(), "asym", q);
  const GgufExportReport ra = export_gguf(a, dir.path() / "asym.gguf");
  EXPECT_EQ(ra.exact_linears, 20);
  EXPECT_GT(ra.q4_1_blocks, 0);
  EXPECT_LT(ra.q4_1_max_offset_error, 1.0 / 128);
  const Checked ca = check_against_loader(a, dir.path() / "asym.gguf");
  EXPECT_EQ(ca.types.at(io::kGgmlQ4_1), 20);
  // Only blocks whose offset needed rounding differ; if none did, all are exact.
  if (ra.q4_1_inexact_offsets == 0) {
    EXPECT_EQ(ca.exact, 20);
  }

  q = QuantizeConfig{};
  q.bits = 8;
  q.group_size = 64;
  const fs::path e = quantize_stories(dir.path(), "b8", q);
  export_gguf(e, dir.path() / "b8.gguf");
  const Checked ce = check_against_loader(e, dir.path() / "b8.gguf");
  EXPECT_EQ(ce.exact, 20);
  EXPECT_EQ(ce.types.at(io::kGgmlQ8_0), 20);
}

// stories260k with every linear quantized as GPTQModel 7.7 packs it (gate/up N = 172, down_proj
// K = 172), written by the numpy packer (scripts/gptq_format.py): gate/up go into Q4_0 blocks
// (blocks run along K = 64), down_proj, whose 172 inputs fill no whole ggml block, into F32;
// every weight equals the loader's.
TEST(GgufExport, GptqModelShapesNotMultiplesOf32) {
  const std::string py = GPTQ_PYTHON3;
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy found at configure time";
  test::TempDir dir;
  const fs::path folder = dir.path() / "odd";
  const std::string cmd = py + " " + GPTQ_FORMAT_PY + " pack --from " + test::stories_dir().string() + " --out " +
                          folder.string() + " --bits 4 --group-size 32 --odd-n --odd-k >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const GgufExportReport r = export_gguf(folder, dir.path() / "odd.gguf");
  EXPECT_EQ(r.exact_linears, 30);
  EXPECT_EQ(r.dense_linears, 5);
  const Checked c = check_against_loader(folder, dir.path() / "odd.gguf");
  EXPECT_EQ(c.linears, 35);
  EXPECT_EQ(c.exact, 35);
  EXPECT_EQ(c.types.at(io::kGgmlQ4_0), 30);
  EXPECT_EQ(c.types.at(io::kGgmlF32), 5);
}

// llama.cpp's Q4_0 block scale of x[0, 32) (ggml-quants.c, quantize_row_q4_0_ref): the value of
// largest magnitude, the first of equal ones, over -8, stored as fp16.
uint16_t ggml_q4_0_d(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return core::fp32_to_fp16(max / -8);
}

// --grid ggml: round-to-nearest on it writes the scales llama-quantize would write for the same
// weights, block for block (and the nearest level of each weight under them); GPTQ on it
// exports bit for bit, and the folder says which grid made it.
TEST(GgufExport, GgmlGridFoldersCarryLlamaCppsQ4_0Scales) {
  test::TempDir dir;
  QuantizeConfig q;
  q.group_size = 32;
  q.grid = "ggml";
  q.method = "rtn";
  const fs::path rtn = quantize_stories(dir.path(), "rtn", q);
  EXPECT_EQ(export_gguf(rtn, dir.path() / "rtn.gguf").exact_linears, 20);
  const auto cfg = config::load_model_config(rtn);
  const auto dense = io::TensorStore::open_dir(test::stories_dir());
  auto f = io::GgufFile::open(dir.path() / "rtn.gguf");
  int64_t blocks = 0;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    for (const auto& [role, gname] : std::vector<std::pair<std::string, std::string>>{
             {"q_proj", "attn_q"}, {"k_proj", "attn_k"}, {"v_proj", "attn_v"}, {"o_proj", "attn_output"}}) {
      const std::string pre = "model.layers." + std::to_string(l) + ".self_attn." + role;
      const auto* t = f->contents().tensor("blk." + std::to_string(l) + "." + gname + ".weight");
      ASSERT_NE(t, nullptr) << pre;
      ASSERT_EQ(t->type, io::kGgmlQ4_0);
      const int64_t n = static_cast<int64_t>(t->ne[1]), k = static_cast<int64_t>(t->ne[0]);
      const std::vector<float> w = dense.read_f32(pre + ".weight");
      const int64_t heads = role == "q_proj"   ? cfg.num_attention_heads
                            : role == "k_proj" ? cfg.num_key_value_heads
                                               : 0;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t src = heads ? converter_source_row(r, heads, n) : r;
        for (int64_t b = 0; b < k / 32; ++b) {
          const float* x = w.data() + src * k + b * 32;
          const uint8_t* blk = t->data + (r * (k / 32) + b) * 18;
          uint16_t d;
          std::memcpy(&d, blk, 2);
          ASSERT_EQ(d, ggml_q4_0_d(x)) << pre << " row " << r << " block " << b;
          const double dd = core::fp16_to_fp32(d);
          for (int j = 0; j < 32; ++j) {
            const int code = j < 16 ? (blk[2 + j] & 0x0f) : (blk[2 + j - 16] >> 4);
            const double err = std::fabs(x[j] - dd * (code - 8));
            // Up to a millionth of a step: the quotient is rounded in fp32 before it is rounded
            // to a code.
            for (int c = 0; c < 16; ++c) {
              ASSERT_LE(err, std::fabs(x[j] - dd * (c - 8)) + 1e-6 * std::fabs(dd)) << pre << " " << r;
            }
          }
          ++blocks;
        }
      }
    }
  }
  EXPECT_EQ(blocks, 5 * (64 + 32 + 32 + 64) * 2);  // rows of q/k/v/o per layer, 2 blocks each

  q.method = "gptq";
  const fs::path g = quantize_stories(dir.path(), "gptq", q);
  EXPECT_EQ(test::read_json(g / "config.json")["quantization_config"]["meta"]["grid"], "ggml");
  EXPECT_EQ(export_gguf(g, dir.path() / "gptq.gguf").exact_linears, 20);
  const Checked c = check_against_loader(g, dir.path() / "gptq.gguf");
  EXPECT_EQ(c.exact, 20);
  EXPECT_EQ(c.types.at(io::kGgmlQ4_0), 20);
}

// The grid is checked before any work: another name, or settings llama.cpp's grid lacks.
TEST(GgufExport, GgmlGridSettingsAreChecked) {
  for (auto [grid, bits, sym] : {std::tuple{"ggml", 3, true}, std::tuple{"ggml", 4, false},
                                 std::tuple{"nf4", 4, true}}) {
    QuantizeConfig q;
    q.grid = grid;
    q.bits = bits;
    q.sym = sym;
    try {
      validate_quantize_config(q);
      ADD_FAILURE() << grid << " " << bits << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kArgument);
      EXPECT_NE(std::string(e.what()).find(std::string("--grid ") + grid), std::string::npos) << e.what();
    }
  }
  QuantizeConfig q;
  q.grid = "ggml";
  q.bits = 8;
  validate_quantize_config(q);
}

void expect_unsupported(const fs::path& folder, const fs::path& out, const GgufExportOptions& o,
                        const std::vector<std::string>& needles) {
  try {
    export_gguf(folder, out, o);
    ADD_FAILURE() << folder << ": exported";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
    for (const auto& s : needles)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << s << " in: " << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(GgufExport, ScatteredActOrderAndThreeBitAreRefusedUnlessAsked) {
  test::TempDir dir;
  QuantizeConfig q;
  q.group_size = 32;
  q.desc_act = true;
  const fs::path act = quantize_stories(dir.path(), "act", q);
  expect_unsupported(act, dir.path() / "act.gguf", {},
                     {"act-order", "--static-groups", "--requant"});
  GgufExportOptions rq;
  rq.requant = true;
  const GgufExportReport r = export_gguf(act, dir.path() / "act.gguf", rq);
  EXPECT_GT(r.requantized_linears, 0);
  EXPECT_EQ(r.requantized_linears + r.exact_linears, 20);

  q.static_groups = true;  // groups fixed in column order: exportable exactly
  const fs::path st = quantize_stories(dir.path(), "static", q);
  EXPECT_EQ(export_gguf(st, dir.path() / "static.gguf").exact_linears, 20);
  EXPECT_EQ(check_against_loader(st, dir.path() / "static.gguf").exact, 20);

  q = QuantizeConfig{};
  q.bits = 3;
  q.group_size = 32;
  const fs::path b3 = quantize_stories(dir.path(), "b3", q);
  expect_unsupported(b3, dir.path() / "b3.gguf", {}, {"3-bit", "--widen"});
  GgufExportOptions w;
  w.widen = true;
  EXPECT_EQ(export_gguf(b3, dir.path() / "b3.gguf", w).widened_linears, 20);
  EXPECT_EQ(check_against_loader(b3, dir.path() / "b3.gguf").exact, 20);
}

TEST(GgufExport, AnArchitectureWithoutAMappingIsRefused) {
  test::TempDir dir;
  const fs::path m = dir.path() / "m";
  fs::copy(test::stories_dir(), m, fs::copy_options::recursive);
  auto cfg = test::read_json(m / "config.json");
  cfg["model_type"] = "gpt_bigcode";
  std::ofstream(m / "config.json") << cfg.dump();
  try {
    export_gguf(m, dir.path() / "x.gguf");
    ADD_FAILURE() << "exported";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gpt_bigcode"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.path() / "x.gguf"));
}

}  // namespace
}  // namespace gptq
