// The gptq command as a user runs it: stdout carries results only, errors exit non-zero with a
// message on stderr.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/test_util.h"

namespace gptq {
namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

// Runs a shell command line (its stderr captured).
Run run_command(const std::string& command) {
  test::TempDir tmp;
  const std::string errf = (tmp.path() / "stderr").string();
  const std::string cmd = command + " 2>" + errf;
  Run r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = test::read_file(errf);
  return r;
}

// Runs the gptq command with these arguments.
Run run(const std::string& args) { return run_command(std::string(GPTQ_CLI_PATH) + " " + args); }

const std::string kModel = test::stories_dir().string();

TEST(Cli, GenerateGreedyPrintsPromptAndGoldenContinuation) {
  const auto g = test::read_json(test::stories_dir() / "golden" / "prompt_0.json");
  const auto r = run("generate -m " + kModel + " -p 'Once upon a time' -n 64 --temp 0 -t 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, g["greedy_full_text"].get<std::string>() + "\n");
}

TEST(Cli, PerplexityJson) {
  const auto r = run("perplexity -m " + kModel + " -f " + (test::data_dir() / "text" / "tinystories-eval.txt").string() +
                     " -c 256 --chunks 64 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto g = test::read_json(test::stories_dir() / "golden" / "ppl_tinystories-eval_ctx256.json");
  const double expect = g["gptq_convention"]["first_64_windows_mean_nll"];
  EXPECT_NEAR(j["nll"].get<double>(), expect, 1e-4 * expect);  // 1e-4 relative, as the golden tests
  EXPECT_EQ(j["windows"], 64);
  EXPECT_EQ(j["tokens"], 64 * 255);
}

TEST(Cli, LogitsOfTheLastPositionMatchTheGolden) {
  // The golden's last_logits come from the reference implementation, for the prompt's ids.
  const auto g = test::read_json(test::stories_dir() / "golden" / "prompt_0.json");
  std::string ids;
  for (const auto& id : g["prompt_ids"]) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(id.get<int>());
  }
  std::string cmd = "logits -m " + kModel;
  cmd += " --ids ";
  cmd += ids;
  cmd += " -t 1";
  const auto r = run(cmd);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& want = g["last_logits"];
  ASSERT_EQ(j["logits"].size(), want.size());
  EXPECT_EQ(j["vocab"], want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(j["logits"][i].get<double>(), want[i].get<double>(), 1e-4) << i;
  // The same text given as a prompt tokenizes to the same ids.
  std::string pcmd = "logits -m " + kModel;
  pcmd += " -p '";
  pcmd += g["prompt"].get<std::string>();
  pcmd += "' -t 1";
  const auto t = run(pcmd);
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_EQ(nlohmann::json::parse(t.out)["ids"], g["prompt_ids"]);
  const auto bad = run("logits -m " + kModel + " --ids 1,99999");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("gptq: error:"), std::string::npos) << bad.err;
}

// OpenBLAS picks its kernels from the CPU model when it loads and falls back to its SSE3
// "Prescott" ones on a model it does not know; the library then has it choose again with
// OPENBLAS_CORETYPE set (gptq/runtime.h). So on a CPU with AVX2 the kernels in use are never a
// pre-AVX2 core's, and a value the user set is kept.
TEST(Cli, OpenBlasUsesTheCpusVectorKernels) {
  const std::string bench = "bench -m " + kModel + " -p 8 -n 2 -r 1 -t 1 --json";
  const auto r = run_command("env -u OPENBLAS_CORETYPE " + std::string(GPTQ_CLI_PATH) + " " + bench);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const std::string kernels = j["blas_kernels"], replaced = j["blas_kernels_replaced"];
  if (__builtin_cpu_supports("avx2")) {
    for (const char* old : {"Prescott", "Core2", "Penryn", "Nehalem", "Atom", "Sandybridge"}) {
      EXPECT_NE(kernels, old);
    }
  }
  if (!replaced.empty()) {
    EXPECT_NE(replaced, kernels);
  }
  const auto forced = run_command("env OPENBLAS_CORETYPE=Nehalem " + std::string(GPTQ_CLI_PATH) + " " + bench);
  ASSERT_EQ(forced.status, 0) << forced.err;
  const auto f = nlohmann::json::parse(forced.out);
  EXPECT_EQ(f["blas_kernels"], "Nehalem");
  EXPECT_EQ(f["blas_kernels_replaced"], "");
}

TEST(Cli, InspectJson) {
  const auto r = run("inspect -m " + kModel + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"], 260032);
  EXPECT_EQ(j["layers"], 5);
  EXPECT_EQ(j["quantized"], false);
}

TEST(Cli, QuantizeThenRunTheResult) {
  test::TempDir tmp;
  const std::string out = (tmp.path() / "q").string();
  auto r = run("quantize -m " + kModel + " -o " + out + " --bits 4 --group-size 32 --calib " +
               (test::data_dir() / "text" / "tinystories-calib.txt").string() + " --nsamples 16 --seqlen 128 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["modules"].size(), 35u);
  r = run("inspect -m " + out + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["quantization"]["bits"], 4);
  r = run("generate -m " + out + " -p 'Once upon a time' -n 16 --temp 0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u);
  EXPECT_GT(r.out.size(), std::string("Once upon a time").size() + 20);
  // A second run into the same folder is refused without --force.
  r = run("quantize -m " + kModel + " -o " + out + " --nsamples 4 --seqlen 64");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
}

// The saved sublayer inputs are only a speed-up: when their scratch file cannot be allocated,
// calibration warns and recomputes every pass from the block input, and writes the same bytes.
// A file-size limit between the hidden states (24 x 256 tokens x 64 wide x 4 B = 1.5 MiB) and
// down_proj's saved input (172 wide: 4.2 MiB) stands in for a full disk (bash's ulimit -f counts
// KiB; SIGXFSZ ignored, so the allocation fails with EFBIG instead of killing the process).
TEST(Cli, QuantizeWithoutRoomForSavedInputsRecomputesToTheSameBytes) {
  test::TempDir tmp;
  const std::string args = " -m " + kModel + " --bits 4 --group-size 32 --calib " +
                           (test::data_dir() / "text" / "tinystories-calib.txt").string() +
                           " --nsamples 24 --seqlen 256 -t 1 --hidden-states disk --offload-dir " + tmp.path().string();
  const auto free_dir = tmp.path() / "free", limited = tmp.path() / "limited";
  auto r = run("quantize" + args + " -o " + free_dir.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("recomputes"), std::string::npos) << r.err;
  r = run_command("bash -c \"trap '' XFSZ; ulimit -f 3000; exec " + std::string(GPTQ_CLI_PATH) + " quantize" + args +
                  " -o " + limited.string() + "\"");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("calibration recomputes each pass from the block input"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(free_dir / "model.safetensors"), test::read_file(limited / "model.safetensors"));
}

TEST(Cli, ErrorsExitNonZeroWithAMessage) {
  auto r = run("generate -m /nonexistent/folder -p hi");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("gptq: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/folder"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run("perplexity -m " + kModel + " -f /nonexistent.txt");
  EXPECT_NE(r.status, 0);
  r = run("quantize -m " + kModel + " -o /tmp/never-written --bits 5");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("bits"), std::string::npos) << r.err;
  r = run("quantize -m " + kModel + " -o /tmp/never-written --max-shard-size 1e30GB");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--max-shard-size"), std::string::npos) << r.err;
  r = run("quantize -m " + kModel + " -o /tmp/never-written --nsamples 2000000000 --seqlen 256");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("calibration tokens"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists("/tmp/never-written"));
  r = run("generate -m " + kModel + " -p hi --lm-head-bits 4");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--lm-head-bits"), std::string::npos) << r.err;
  r = run("nosuchcommand");
  EXPECT_NE(r.status, 0);
}

// quantize --format gguf writes one GGUF file (no folder left behind); export-gguf refuses an
// existing output without --force and a 3-bit folder without --widen, naming the reason.
TEST(Cli, QuantizeToGgufAndExportErrors) {
  test::TempDir tmp;
  const std::string out = (tmp.path() / "s.gguf").string();
  const std::string calib = (test::data_dir() / "text" / "tinystories-calib.txt").string();
  auto r = run("quantize -m " + kModel + " -o " + out + " --group-size 32 --calib " + calib +
               " --nsamples 8 --seqlen 64 --format gguf --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["exact_linears"], 20);
  EXPECT_EQ(j["dense_linears"], 15);
  EXPECT_TRUE(std::filesystem::is_regular_file(out));
  EXPECT_FALSE(std::filesystem::exists(out + ".gptq-tmp"));
  std::ifstream f(out, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  EXPECT_EQ(std::string(magic, 4), "GGUF");
  r = run("export-gguf -m " + kModel + " -o " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  const std::string q3 = (tmp.path() / "q3").string();
  r = run("quantize -m " + kModel + " -o " + q3 + " --bits 3 --group-size 32 --calib " + calib +
          " --nsamples 4 --seqlen 64");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run("export-gguf -m " + q3 + " -o " + (tmp.path() / "q3.gguf").string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--widen"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "q3.gguf"));
  r = run("export-gguf -m " + q3 + " -o " + (tmp.path() / "q3.gguf").string() + " --widen --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["widened_linears"], 20);
}

// --llama-cpp scores only the second half of each window, as llama-perplexity does.
TEST(Cli, PerplexityLlamaCppConvention) {
  const auto r = run("perplexity -m " + kModel + " -f " + (test::data_dir() / "text" / "tinystories-eval.txt").string() +
                     " -c 256 --chunks 8 --llama-cpp --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"], 8 * (256 - 256 / 2 - 1));
  EXPECT_GT(j["ppl"].get<double>(), 1.0);
}

// --lm-head-bits 8 reaches the model: the 8-bit head changes the perplexity a little (see
// tests/model/head_quant_test.cpp for the bound), and bench reports fewer bytes per token.
TEST(Cli, LmHeadBits8) {
  const std::string ppl = "perplexity -m " + kModel + " -f " +
                          (test::data_dir() / "text" / "tinystories-eval.txt").string() +
                          " -c 256 --chunks 16 --json -t 1";
  auto a = run(ppl), b = run(ppl + " --lm-head-bits 8");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  const double pa = nlohmann::json::parse(a.out)["ppl"], pb = nlohmann::json::parse(b.out)["ppl"];
  EXPECT_NE(pa, pb);
  EXPECT_NEAR(pa, pb, 5e-3 * pa);
  a = run("bench -m " + kModel + " -p 8 -n 4 --json -t 1");
  b = run("bench -m " + kModel + " -p 8 -n 4 --json -t 1 --lm-head-bits 8");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_LT(nlohmann::json::parse(b.out)["weight_bytes"].get<double>(),
            nlohmann::json::parse(a.out)["weight_bytes"].get<double>());
}

// Processes whose command line holds `needle` (the busy processes of bench --load are forks of the
// gptq process, so they carry its command line).
int processes_with(const std::string& needle) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::FILE* f = std::fopen((e.path() / "cmdline").c_str(), "rb");
    if (!f) continue;
    std::string cmd(4096, '\0');
    cmd.resize(std::fread(cmd.data(), 1, cmd.size(), f));
    std::fclose(f);
    for (char& c : cmd) c = c == '\0' ? ' ' : c;
    if (cmd.find(needle) != std::string::npos) ++n;
  }
  return n;
}

TEST(Cli, BenchUnderLoadRunsIdleAndLoadedAtBothThreadCountsAndLeavesNoProcess) {
  // -r 1 -n 3: a distinctive command line to look for afterwards.
  const auto r = run("bench -m " + kModel + " -p 4 -n 3 -t 2 --load 1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["load"], 1);
  ASSERT_EQ(j["runs"].size(), 4u);
  const int threads[] = {2, 2, 1, 1}, busy[] = {0, 1, 0, 1};
  for (size_t i = 0; i < 4; ++i) {
    const auto& run_i = j["runs"][i];
    EXPECT_EQ(run_i["threads"], threads[i]) << i;
    EXPECT_EQ(run_i["busy_processes"], busy[i]) << i;
    EXPECT_GT(run_i["prefill_tok_s"].get<double>(), 0) << i;
    EXPECT_GT(run_i["decode_tok_s"].get<double>(), 0) << i;
  }
  EXPECT_EQ(processes_with("-p 4 -n 3 -t 2 --load 1"), 0);
  const auto bad = run("bench -m " + kModel + " --load -1");
  EXPECT_NE(bad.status, 0);
}

}  // namespace
}  // namespace gptq

namespace gptq {
namespace {

// kill -9 in the middle of a run, then the same command again: it resumes and the files equal
// those of an uninterrupted run.
TEST(Cli, QuantizeResumesAfterKill9) {
  test::TempDir tmp;
  const std::string calib = (test::data_dir() / "text" / "tinystories-calib.txt").string();
  const std::string args = " --bits 4 --group-size 32 --desc-act --calib " + calib + " --nsamples 48 --seqlen 256";
  const auto whole = tmp.path() / "whole", killed = tmp.path() / "killed";
  ASSERT_EQ(run("quantize -m " + kModel + " -o " + whole.string() + args).status, 0);

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = std::string(GPTQ_CLI_PATH) + " quantize -m " + kModel + " -o " + killed.string() + args +
                            " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto first_part = std::filesystem::path(killed.string() + ".partial") / "parts" / "layer-00000.safetensors";
  for (int i = 0; i < 60000 && !std::filesystem::exists(first_part); ++i) usleep(500);
  kill(pid, SIGKILL);
  int st = 0;
  waitpid(pid, &st, 0);
  if (std::filesystem::exists(killed)) GTEST_SKIP() << "the run finished before it could be killed";
  ASSERT_TRUE(std::filesystem::exists(first_part));

  const auto r = run("quantize -m " + kModel + " -o " + killed.string() + args + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(nlohmann::json::parse(r.out)["layers_resumed"].get<int>(), 1);
  EXPECT_EQ(test::read_file(whole / "model.safetensors"), test::read_file(killed / "model.safetensors"));
}

}  // namespace
}  // namespace gptq
