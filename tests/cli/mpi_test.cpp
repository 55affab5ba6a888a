// `mpirun -np N gptq quantize` (docs/distributed.md): the output folder is byte for byte the one a
// single process writes, for every N; a killed rank stops the job and a rerun resumes to the same
// bytes; a rank that cannot read the model is an error on every rank. Skipped when built without
// MPI (GPTQ_MPIEXEC empty).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;
  std::string out, err;
};

Result sh(const std::string& cmd) {
  test::TempDir tmp;
  const std::string errf = (tmp.path() / "stderr").string();
  Result r;
  FILE* p = popen((cmd + " 2>" + errf).c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = test::read_file(errf);
  return r;
}

// mpirun as CI runs it: as root, more ranks than cores.
std::string mpirun(int np) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  // Under AddressSanitizer, OpenMPI's own allocations (libmpi, its dlopened plugins) that it never
  // frees at exit would fail every rank in LeakSanitizer; leaks of our code are checked by the
  // single-process tests of the same pipeline. Read by the ranks at start, not by this process.
  static const bool once = [] {
    const char* a = std::getenv("ASAN_OPTIONS");
    const std::string opts = std::string(a ? a : "") + (a && *a ? ":" : "") + "detect_leaks=0";
    setenv("ASAN_OPTIONS", opts.c_str(), 1);
    return true;
  }();
  (void)once;
  return std::string(GPTQ_MPIEXEC) + " --oversubscribe --allow-run-as-root -np " + std::to_string(np) + " ";
}

#define SKIP_WITHOUT_MPI() \
  if (std::string(GPTQ_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI (GPTQ_MPI=OFF)"

const std::string kCli = GPTQ_CLI_PATH;
const std::string kCalib = (test::data_dir() / "text" / "tinystories-calib.txt").string();

// Every file under a folder (relative name -> bytes).
std::map<std::string, std::string> files_of(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) m[fs::relative(e.path(), dir).string()] = test::read_file(e.path());
  }
  return m;
}

void expect_same_files(const fs::path& a, const fs::path& b) {
  const auto fa = files_of(a), fb = files_of(b);
  ASSERT_FALSE(fa.empty());
  ASSERT_EQ(fa.size(), fb.size()) << a << " vs " << b;
  for (const auto& [name, bytes] : fa) {
    ASSERT_TRUE(fb.count(name)) << name << " missing in " << b;
    EXPECT_TRUE(bytes == fb.at(name)) << name << " differs between " << a << " and " << b;
  }
}

// 24 samples: three canonical shards of 8, so with -np 2 rank 0 has shards 0 and 2, with -np 3
// each rank one.
const std::string kStoriesArgs = " --bits 4 --group-size 32 --desc-act --calib " + kCalib + " --nsamples 24 --seqlen 128 -t 1";

TEST(Mpi, StoriesByteIdenticalForOneTwoAndThreeRanks) {
  SKIP_WITHOUT_MPI();
  test::TempDir tmp;
  const std::string model = test::stories_dir().string();
  const auto one = tmp.path() / "one", two = tmp.path() / "two", three = tmp.path() / "three";
  Result r = sh(kCli + " quantize -m " + model + " -o " + one.string() + kStoriesArgs);
  ASSERT_EQ(r.status, 0) << r.err;
  r = sh(mpirun(2) + kCli + " quantize -m " + model + " -o " + two.string() + kStoriesArgs);
  ASSERT_EQ(r.status, 0) << r.err;
  // Results from rank 0 only: one table, not one per rank.
  size_t tables = 0;
  for (size_t p = r.out.find("| module |"); p != std::string::npos; p = r.out.find("| module |", p + 1)) ++tables;
  EXPECT_EQ(tables, 1u) << r.out;
  r = sh(mpirun(3) + kCli + " quantize -m " + model + " -o " + three.string() + kStoriesArgs);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same_files(one, two);
  expect_same_files(one, three);
  // q, k and v solved on three ranks at once (o alone in its group; the MLP is left unquantized:
  // 172 is not a multiple of 32).
  const auto spread = tmp.path() / "spread";
  r = sh(mpirun(3) + kCli + " quantize -m " + model + " -o " + spread.string() + kStoriesArgs + " --distribute-solve");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same_files(one, spread);
}

// A synthetic model, with the damp search (two folds per shard) and all linears of a layer
// calibrated at once (--no-true-sequential), asymmetric.
TEST(Mpi, SynthDampSearchByteIdenticalForTwoRanks) {
  SKIP_WITHOUT_MPI();
  test::TempDir tmp;
  const auto model = tmp.path() / "synth";
  Result r = sh(kCli + " synth --shape tiny --dtype fp32 -o " + model.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string args = " --bits 3 --group-size 64 --asym --damp-search --no-true-sequential --calib " + kCalib +
                           " --nsamples 20 --seqlen 64 -t 1";
  const auto one = tmp.path() / "one", two = tmp.path() / "two";
  r = sh(kCli + " quantize -m " + model.string() + " -o " + one.string() + args);
  ASSERT_EQ(r.status, 0) << r.err;
  r = sh(mpirun(2) + kCli + " quantize -m " + model.string() + " -o " + two.string() + args);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same_files(one, two);
  // The seven linears of each layer (one group) spread over both ranks, each solver receiving
  // both folds of its input's Hessian.
  const auto spread = tmp.path() / "spread";
  r = sh(mpirun(2) + kCli + " quantize -m " + model.string() + " -o " + spread.string() + args + " --distribute-solve");
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same_files(one, spread);
}

// --broadcast-weights: ranks given a model folder and a calibration file that do not exist (hosts
// without the shared filesystem) receive everything from rank 0, and the output is the bytes of
// a single process. A bf16 synthetic model (the layers travel in their stored dtype), spread
// solve, three ranks of which two have nothing.
TEST(Mpi, BroadcastWeightsRanksWithoutTheFolderWriteTheSameBytes) {
  SKIP_WITHOUT_MPI();
  test::TempDir tmp;
  const auto model = tmp.path() / "synth";
  Result r = sh(kCli + " synth --shape tiny --dtype bf16 -o " + model.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string args = " --bits 4 --group-size 32 --nsamples 20 --seqlen 64 -t 1";
  const auto one = tmp.path() / "one", two = tmp.path() / "two";
  r = sh(kCli + " quantize -m " + model.string() + " -o " + one.string() + args + " --calib " + kCalib);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string bad = (tmp.path() / "not-here").string();
  const std::string tail = " -o " + two.string() + args + " --broadcast-weights --distribute-solve";
  r = sh(mpirun(1) + kCli + " quantize -m " + model.string() + " --calib " + kCalib + tail + " : -np 2 " + kCli +
         " quantize -m " + bad + " --calib " + bad + "/calib.txt" + tail);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_same_files(one, two);
}

// One rank given a folder it cannot read (as on a host without the shared filesystem), without
// --broadcast-weights: every rank stops, and the message names the rank and the folder.
TEST(Mpi, RankThatCannotReadTheModelIsAnErrorNamingIt) {
  SKIP_WITHOUT_MPI();
  test::TempDir tmp;
  const std::string good = test::stories_dir().string(), bad = (tmp.path() / "no-such-model").string();
  const std::string tail = " -o " + (tmp.path() / "q").string() + kStoriesArgs;
  const Result r = sh(mpirun(1) + kCli + " quantize -m " + good + tail + " : -np 1 " + kCli + " quantize -m " + bad + tail);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("rank 1 of 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.path() / "q"));
}

// True while a process exists and is not a zombie (an orphan's exit may not be reaped here).
bool running(pid_t p) {
  std::ifstream st("/proc/" + std::to_string(p) + "/stat");
  std::string line;
  if (!std::getline(st, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// The pids of mpirun's children that run gptq (the ranks).
std::vector<pid_t> ranks_of(pid_t launcher) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream st(e.path() / "stat");
    std::string line;
    if (!std::getline(st, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    const std::string comm = line.substr(line.find('(') + 1, close - line.find('(') - 1);
    int ppid = 0;
    char state = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) continue;
    if (ppid == launcher && comm == "gptq") out.push_back(std::stoi(name));
  }
  return out;
}

// SIGKILL one rank mid-run: mpirun ends the others within seconds and names the rank; the same
// command with another N resumes and writes the bytes of a single-process run.
TEST(Mpi, KilledRankStopsTheJobAndARerunResumesToTheSameBytes) {
  SKIP_WITHOUT_MPI();
  test::TempDir tmp;
  const std::string model = test::stories_dir().string();
  const std::string args = " --bits 4 --group-size 32 --calib " + kCalib + " --nsamples 24 --seqlen 256 -t 1";
  const auto one = tmp.path() / "one", killed = tmp.path() / "killed";
  ASSERT_EQ(sh(kCli + " quantize -m " + model + " -o " + one.string() + args).status, 0);

  const std::string errf = (tmp.path() / "mpirun.err").string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = mpirun(2) + kCli + " quantize -m " + model + " -o " + killed.string() + args +
                            " >/dev/null 2>" + errf;
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto first_part = fs::path(killed.string() + ".partial") / "parts" / "layer-00000.safetensors";
  for (int i = 0; i < 120000 && !fs::exists(first_part); ++i) usleep(500);
  std::vector<pid_t> ranks = ranks_of(pid);
  ASSERT_EQ(ranks.size(), 2u);
  std::sort(ranks.begin(), ranks.end());
  kill(ranks.back(), SIGKILL);  // started second: most likely rank 1, but mpirun names whichever
  // The launcher and the surviving rank must be gone within seconds (a generous bound: a hang
  // waits forever, a working abort takes well under a second).
  int st = 0;
  pid_t done = 0;
  for (int i = 0; i < 600 && done == 0; ++i) {
    done = waitpid(pid, &st, WNOHANG);
    if (done == 0) usleep(50000);
  }
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    FAIL() << "mpirun still running 30 s after a rank was killed";
  }
  if (fs::exists(killed)) GTEST_SKIP() << "the run finished before it could be killed";
  EXPECT_FALSE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  const std::string err = test::read_file(errf);
  EXPECT_NE(err.find("rank"), std::string::npos) << err;
  EXPECT_NE(err.find("signal 9"), std::string::npos) << err;
  for (pid_t p : ranks) EXPECT_FALSE(running(p)) << "rank process " << p << " still running";
  ASSERT_TRUE(fs::exists(first_part));

  const Result r = sh(mpirun(3) + kCli + " quantize -m " + model + " -o " + killed.string() + args + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(nlohmann::json::parse(r.out)["layers_resumed"].get<int>(), 1);
  expect_same_files(one, killed);
}

}  // namespace
}  // namespace gptq
