// End-to-end quantization of stories260k: quality against RTN and fp32, the written folder, and
// resume after an interruption.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "common/test_util.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"

namespace gptq {
namespace {

CalibrationOptions calib() {
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 64;
  c.seqlen = 256;
  c.seed = 0;
  return c;
}

// Perplexity on the first 128 windows of the eval text (GPTQ convention, ctx 256).
double eval_ppl(const std::filesystem::path& dir) {
  auto m = CausalLM::from_pretrained(dir);
  PerplexityOptions po;
  po.ctx = 256;
  po.max_windows = 128;
  return m.perplexity(test::read_file(test::data_dir() / "text" / "tinystories-eval.txt"), po).ppl;
}

double quantized_ppl(const QuantizeConfig& q, const test::TempDir& tmp, const std::string& name) {
  const auto out = tmp.path() / name;
  quantize_model(test::stories_dir(), out, q, calib());
  return eval_ppl(out);
}

TEST(QuantizeStories260k, GptqBeatsRtnAndStaysCloseToFp32) {
  test::TempDir tmp;
  const double fp32 = eval_ppl(test::stories_dir());
  for (int bits : {4, 3}) {
    QuantizeConfig q;
    q.bits = bits;
    q.group_size = 32;
    q.method = "rtn";
    const double rtn = quantized_ppl(q, tmp, "rtn" + std::to_string(bits));
    q.method = "gptq";
    const double gptq = quantized_ppl(q, tmp, "gptq" + std::to_string(bits));
    q.desc_act = true;
    const double gptq_act = quantized_ppl(q, tmp, "gptq_act" + std::to_string(bits));
    RecordProperty("bits" + std::to_string(bits), fmt::format("fp32 {} rtn {} gptq {} act {}", fp32, rtn, gptq, gptq_act));
    // Measured when this test was written (whole eval file): 4-bit fp32 5.84 / RTN 6.14 /
    // GPTQ 6.00 / act-order 5.95; 3-bit RTN 7.14 / GPTQ 6.76 / act-order 6.60. The bounds below
    // leave room for summation-order noise but fail if error feedback stops working.
    EXPECT_LT(gptq, rtn - 0.3 * (rtn - fp32)) << bits << "-bit: GPTQ must recover a clear share of RTN's loss";
    EXPECT_LT(gptq_act, rtn - 0.3 * (rtn - fp32)) << bits << "-bit act-order";
    EXPECT_GT(gptq, fp32 * 0.999) << "quantization cannot beat fp32 by more than noise";
    EXPECT_LT(gptq, fp32 * (bits == 4 ? 1.05 : 1.25));
  }
}

// bf16 calibration (Hessians from bf16 operands): a different solve (other codes), of nearly the
// same quality on this model (README: 5.9995 against 6.0000 on the whole eval text), and fp32
// is what the default means.
TEST(QuantizeStories260k, Bf16CalibrationChangesCodesNotQuality) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.group_size = 32;
  const double f32 = quantized_ppl(q, tmp, "default");
  q.calib_dtype = "fp32";
  quantize_model(test::stories_dir(), tmp.path() / "fp32", q, calib());
  q.calib_dtype = "bf16";
  const double bf16 = quantized_ppl(q, tmp, "bf16");
  const auto weights = [&](const std::string& name) {
    return test::read_file(tmp.path() / name / "model.safetensors");
  };
  EXPECT_EQ(weights("default"), weights("fp32"));
  EXPECT_NE(weights("default"), weights("bf16"));
  EXPECT_NEAR(bf16, f32, 0.01 * f32) << "fp32 " << f32 << " bf16 " << bf16;
}

// Group-aware act-order: the folder is declared desc_act false (GPTQModel's meta key records the
// order), every g_idx is k / g, and it changes the codes (so the order was applied).
TEST(QuantizeStories260k, GroupAwareOrderKeepsTrivialGIdx) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  q.act_group_aware = true;
  const auto out = tmp.path() / "gar";
  quantize_model(test::stories_dir(), out, q, calib());
  const auto qc = test::read_json(out / "config.json")["quantization_config"];
  EXPECT_EQ(qc["desc_act"], false);
  EXPECT_EQ(qc["meta"]["act_group_aware"], true);
  q.act_group_aware = false;
  quantize_model(test::stories_dir(), tmp.path() / "plain", q, calib());
  const auto gar = io::TensorStore::open_dir(out), plain = io::TensorStore::open_dir(tmp.path() / "plain");
  int differ = 0;
  for (int l = 0; l < 5; ++l) {
    const std::string m = fmt::format("model.layers.{}.self_attn.q_proj", l);
    const auto& g = gar.get(m + ".g_idx");
    for (int64_t k = 0; k < g.numel(); ++k) {
      int32_t v;
      std::memcpy(&v, g.data + 4 * k, 4);
      EXPECT_EQ(v, k / 32) << m;
    }
    const auto& a = gar.get(m + ".qweight");
    const auto& b = plain.get(m + ".qweight");
    differ += std::memcmp(a.data, b.data, static_cast<size_t>(a.numel()) * 4) != 0;
  }
  EXPECT_GT(differ, 0);
}

TEST(QuantizeStories260k, WritesAValidFolder) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  const auto out = tmp.path() / "q";
  const auto rep = quantize_model(test::stories_dir(), out, q, calib());
  int quantized = 0, skipped = 0;
  for (const auto& m : rep.modules) (m.bits ? quantized : skipped)++;
  EXPECT_EQ(quantized, 20);  // q, k, v, o in 5 layers
  EXPECT_EQ(skipped, 15);    // gate/up (N = 172) and down (K = 172) stay dense
  const auto store = io::TensorStore::open_dir(out);
  EXPECT_EQ(store.get("model.layers.0.self_attn.q_proj.qweight").shape, (Shape{8, 64}));   // [K*4/32, N]
  EXPECT_EQ(store.get("model.layers.0.self_attn.k_proj.qzeros").shape, (Shape{2, 4}));    // [K/32, N*4/32]
  EXPECT_EQ(store.get("model.layers.0.self_attn.k_proj.scales").dtype, DType::kF16);
  EXPECT_EQ(store.find("model.layers.0.self_attn.q_proj.weight"), nullptr);
  EXPECT_NE(store.find("model.layers.0.mlp.down_proj.weight"), nullptr);
  EXPECT_EQ(store.find("lm_head.weight"), nullptr);  // tied: not duplicated
  // Symmetric v1: every qzeros word is 0x77777777 (SPEC §1).
  const auto& z = store.get("model.layers.3.self_attn.o_proj.qzeros");
  for (int64_t i = 0; i < z.numel(); ++i) {
    int32_t w;
    std::memcpy(&w, z.data + 4 * i, 4);
    EXPECT_EQ(static_cast<uint32_t>(w), 0x77777777u);
  }
  const auto cfg = test::read_json(out / "config.json");
  EXPECT_EQ(cfg["quantization_config"]["bits"], 4);
  EXPECT_EQ(cfg["quantization_config"]["checkpoint_format"], "gptq");
  EXPECT_EQ(test::read_json(out / "quantize_config.json")["group_size"], 32);
  EXPECT_TRUE(std::filesystem::exists(out / "tokenizer.json"));
  // Refuses to overwrite without force; nothing is left behind.
  EXPECT_THROW(quantize_model(test::stories_dir(), out, q, calib()), Error);
}

TEST(QuantizeStories260k, ResumesAfterAnInterruptionWithIdenticalFiles) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  q.desc_act = true;
  const auto whole = tmp.path() / "whole";
  quantize_model(test::stories_dir(), whole, q, calib());

  const auto resumed = tmp.path() / "resumed";
  QuantizeRunOptions run;
  // Simulate Ctrl-C / kill after layer 2 finished: the progress callback throws.
  run.progress = [](const Progress& p) {
    if (p.item == "layer 2 done") throw Error(ErrorKind::kInterrupted, "interrupted");
  };
  EXPECT_THROW(quantize_model(test::stories_dir(), resumed, q, calib(), run), Error);
  EXPECT_FALSE(std::filesystem::exists(resumed));
  EXPECT_TRUE(std::filesystem::exists(resumed.string() + ".partial"));
  const auto rep = quantize_model(test::stories_dir(), resumed, q, calib());
  EXPECT_EQ(rep.layers_resumed, 3);
  EXPECT_EQ(test::read_file(whole / "model.safetensors"), test::read_file(resumed / "model.safetensors"));
  EXPECT_EQ(test::read_file(whole / "config.json"), test::read_file(resumed / "config.json"));
  EXPECT_FALSE(std::filesystem::exists(resumed.string() + ".partial"));

  // Different arguments must not reuse the parts of another run.
  const auto other = tmp.path() / "other";
  EXPECT_THROW(quantize_model(test::stories_dir(), other, q, calib(), run), Error);
  q.desc_act = false;
  EXPECT_EQ(quantize_model(test::stories_dir(), other, q, calib()).layers_resumed, 0);
}

// Hidden states in a scratch file give the same bytes as in memory; the file has no name in its
// folder while the run goes on (so it cannot be left behind); bad settings fail before any work.
TEST(QuantizeStories260k, HiddenStatesOnDiskGiveTheSameBytes) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  CalibrationOptions c = calib();
  c.nsamples = 16;
  QuantizeRunOptions run;
  run.hidden_states = "memory";
  quantize_model(test::stories_dir(), tmp.path() / "memory", q, c, run);
  const auto spill = tmp.path() / "spill";
  std::filesystem::create_directories(spill);
  run.hidden_states = "disk";
  run.offload_dir = spill;
  int calls = 0, named = 0, open_there = 0;
  run.progress = [&](const Progress&) {
    ++calls;
    named += !std::filesystem::is_empty(spill);
    // The process holds it open: /proc/self/fd links to "<spill>/... (deleted)".
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(fd.path(), ec).string();
      if (!ec && target.rfind(spill.string() + "/", 0) == 0) {
        ++open_there;
        break;
      }
    }
  };
  quantize_model(test::stories_dir(), tmp.path() / "disk", q, c, run);
  EXPECT_GE(calls, 5);
  EXPECT_EQ(named, 0);
  EXPECT_EQ(open_there, calls) << "the hidden states must be in a scratch file in " << spill;
  for (const char* f : {"model.safetensors", "config.json"}) {
    EXPECT_EQ(test::read_file(tmp.path() / "memory" / f), test::read_file(tmp.path() / "disk" / f)) << f;
  }
  // The default (auto) keeps 16 x 256 x 64 floats in memory: also the same bytes.
  quantize_model(test::stories_dir(), tmp.path() / "auto", q, c);
  EXPECT_EQ(test::read_file(tmp.path() / "memory" / "model.safetensors"),
            test::read_file(tmp.path() / "auto" / "model.safetensors"));

  run.progress = {};
  run.hidden_states = "swap";
  try {
    quantize_model(test::stories_dir(), tmp.path() / "bad", q, c, run);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kArgument);
    EXPECT_NE(std::string(e.what()).find("swap"), std::string::npos) << e.what();
  }
  run.hidden_states = "disk";
  run.offload_dir = tmp.path() / "missing";
  try {
    quantize_model(test::stories_dir(), tmp.path() / "bad", q, c, run);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "bad.partial"));
}

TEST(QuantizeStories260k, CppApiQuantizeThenSave) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.bits = 4;
  q.group_size = 32;
  auto model = CausalLM::from_pretrained(test::stories_dir(), q);
  const std::string text = test::read_file(test::data_dir() / "text" / "tinystories-calib.txt");
  std::vector<std::string> examples;
  for (int i = 0; i < 16; ++i) examples.push_back(text.substr(i * 4000, 1200));
  const auto rep = model.quantize(examples);
  EXPECT_EQ(rep.layers, 5);
  model.save_quantized(tmp.path() / "api");
  // The quantized model in memory and the one read back from disk give the same logits.
  auto back = CausalLM::from_pretrained(tmp.path() / "api");
  const auto ids = model.tokenizer().encode("Once upon a time", true);
  const auto a = model.logits(ids), b = back.logits(ids);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-3) << i;
}

TEST(QuantizeBadInput, ClearErrors) {
  test::TempDir tmp;
  QuantizeConfig q;
  auto expect_kind = [&](QuantizeConfig qc, CalibrationOptions c, ErrorKind kind, const std::string& needle) {
    try {
      quantize_model(test::stories_dir(), tmp.path() / "x", qc, c);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(tmp.path() / "x"));
  };
  q.bits = 5;
  expect_kind(q, calib(), ErrorKind::kArgument, "bits");
  q.bits = 4;
  q.group_size = 7;
  expect_kind(q, calib(), ErrorKind::kArgument, "group");
  q.group_size = 32;
  q.format = "marlin";
  expect_kind(q, calib(), ErrorKind::kArgument, "gptq_v2");
  q = {};
  auto c = calib();
  c.seqlen = 100000;
  expect_kind(q, c, ErrorKind::kArgument, "exceeds the model's context");
  c = calib();
  {
    std::ofstream(tmp.path() / "short.txt") << "Once upon a time there was a cat.";
  }
  c.file = tmp.path() / "short.txt";
  expect_kind(q, c, ErrorKind::kArgument, "fewer than one window");
  c = calib();
  c.file = tmp.path() / "missing.txt";
  expect_kind(q, c, ErrorKind::kIo, "missing.txt");
}

// The default --seqlen is min(2048, context): stories260k's context is 512, so text windows have
// 512 tokens, and JSONL rows longer than that are cut to it.
TEST(Quantize, DefaultSeqlenIsTheModelsContext) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.group_size = 32;
  CalibrationOptions c = calib();
  c.seqlen = 0;
  c.nsamples = 3;
  const auto r = quantize_model(test::stories_dir(), tmp.path() / "text", q, c);
  EXPECT_EQ(r.calibration_tokens, 3 * 512);
  {
    std::ofstream f(tmp.path() / "rows.jsonl");
    std::string ids;
    for (int i = 0; i < 700; ++i) {
      if (i) ids += ",";
      ids += std::to_string(1 + i % 400);
    }
    f << "{\"input_ids\": [" << ids << "]}\n{\"input_ids\": [5, 6, 7]}\n";
  }
  c.file = tmp.path() / "rows.jsonl";
  const auto rj = quantize_model(test::stories_dir(), tmp.path() / "jsonl", q, c);
  EXPECT_EQ(rj.calibration_tokens, 512 + 3);
}

// Per-module overrides through the C++ API, and the default group of 128 on K = 64 linears:
// clamped to one group per row, said in the report and in a rule of the written config; the
// independent checker verifies the folder and it loads (kernels = dequantized).
TEST(Quantize, DynamicRulesAndGroupLargerThanK) {
  test::TempDir tmp;
  QuantizeConfig q;  // group_size 128 > K = 64 for the attention linears
  q.sym = false;
  q.dynamic.push_back(parse_dynamic_arg("-:model\\.layers\\.1\\.self_attn\\.o_proj$"));
  q.dynamic.push_back(parse_dynamic_arg(".*self_attn\\.v_proj=bits:8,group_size:32,sym:true"));
  CalibrationOptions c = calib();
  c.nsamples = 8;
  QuantizeRunOptions ro;
  ro.dequantized_out = tmp.path() / "deq.safetensors";
  const auto r = quantize_model(test::stories_dir(), tmp.path() / "q", q, c, ro);
  int seen = 0;
  for (const auto& m : r.modules) {
    if (m.module == "model.layers.1.self_attn.o_proj") {
      EXPECT_EQ(m.bits, 0);
      EXPECT_NE(m.note.find("dynamic rule"), std::string::npos) << m.note;
      ++seen;
    } else if (m.module.find("v_proj") != std::string::npos) {
      EXPECT_EQ(m.bits, 8);
      EXPECT_EQ(m.group_size, 32);
      EXPECT_EQ(m.note, "");
      ++seen;
    } else if (m.module.find("q_proj") != std::string::npos) {
      EXPECT_EQ(m.bits, 4);
      EXPECT_EQ(m.group_size, -1);
      EXPECT_NE(m.note.find("group_size 128 > K = 64"), std::string::npos) << m.note;
      ++seen;
    }
  }
  EXPECT_EQ(seen, 11);
  const auto qc = test::read_json(tmp.path() / "q" / "config.json").at("quantization_config");
  const auto& dyn = qc.at("dynamic");
  EXPECT_TRUE(dyn.contains("-:model\\.layers\\.1\\.self_attn\\.o_proj$"));
  EXPECT_EQ(dyn.at("+:.*self_attn\\.v_proj"), nlohmann::json({{"bits", 8}, {"group_size", 32}, {"sym", true}}));
  EXPECT_EQ(dyn.at("+:model\\.layers\\.0\\.self_attn\\.q_proj$"),
            nlohmann::json({{"bits", 4}, {"group_size", -1}, {"desc_act", false}, {"sym", false}}));
  EXPECT_EQ(qc.at("checkpoint_format"), "gptq");
  const std::string py = GPTQ_PYTHON3;
  if (!py.empty()) {
    const std::string cmd = py + " " + GPTQ_FORMAT_PY + " verify " + (tmp.path() / "q").string() + " --reference " +
                            ro.dequantized_out.string() + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  auto kern = CausalLM::from_pretrained(tmp.path() / "q");
  LoadOptions deq;
  deq.dequantize = true;
  auto ref = CausalLM::from_pretrained(tmp.path() / "q", deq);
  PerplexityOptions po;
  po.ctx = 256;
  po.max_windows = 8;
  const std::string text = test::read_file(test::data_dir() / "text" / "tinystories-eval.txt");
  const double a = kern.perplexity(text, po).ppl, b = ref.perplexity(text, po).ppl;
  EXPECT_NEAR(a, b, 1e-3 * b);
}

TEST(Quantize, DynamicArgumentErrors) {
  auto expect = [](const std::string& arg, const char* needle) {
    try {
      parse_dynamic_arg(arg);
      ADD_FAILURE() << "accepted " << arg;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect("model.(layers=bits:8", "not a valid regular expression");
  expect(".*mlp=bits:5", "bits = 5");
  expect(".*mlp=bits:eight", "expected an integer");
  expect(".*mlp=colour:red", "unknown field");
  expect(".*mlp", "expected REGEX=");
  expect("-:.*mlp=bits:8", "takes no settings");
  const auto d = parse_dynamic_arg(".*mlp\\.down_proj=bits:8,group_size:64");
  EXPECT_EQ(d.rule, "+:.*mlp\\.down_proj");
  EXPECT_EQ(d.bits, 8);
  EXPECT_EQ(d.group_size, 64);
  EXPECT_FALSE(d.sym.has_value());
  // A group size the quantizer refuses is caught before any work.
  QuantizeConfig q;
  q.dynamic.push_back(parse_dynamic_arg(".*mlp=group_size:7"));
  try {
    validate_quantize_config(q);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dynamic rule \"+:.*mlp\""), std::string::npos) << e.what();
  }
  test::TempDir tmp;
  {
    std::ofstream(tmp.path() / "rules.json") << R"({"dynamic": {"-:.*o_proj": {}, "+:.*mlp": {"bits": 8}}})";
    std::ofstream(tmp.path() / "bad.json") << R"({"+:.*mlp": {"bits": 8, "colour": 1}})";
  }
  const auto rules = read_dynamic_file(tmp.path() / "rules.json");
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].rule, "-:.*o_proj");
  EXPECT_EQ(rules[1].bits, 8);
  try {
    read_dynamic_file(tmp.path() / "bad.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("colour"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gptq
