#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {
namespace {

// N processes that each keep one core busy (a plain counting loop), as another program on the
// user's machine would, for as long as this object lives. They die with this process too.
class BusyProcesses {
 public:
  explicit BusyProcesses(int n) {
    for (int i = 0; i < n; ++i) {
      const pid_t pid = fork();
      if (pid < 0) throw Error(ErrorKind::kIo, "bench --load: fork failed");
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        volatile unsigned long x = 0;
        for (;;) x = x + 1;
      }
      pids_.push_back(pid);
    }
  }
  ~BusyProcesses() {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
  }
  BusyProcesses(const BusyProcesses&) = delete;
  BusyProcesses& operator=(const BusyProcesses&) = delete;

 private:
  std::vector<pid_t> pids_;
};

// --load N: the same benchmark idle and beside N busy processes, alternating, at the -t thread
// count (all cores by default) and at one thread.
int bench_under_load(const CausalLM& model, const std::string& name, BenchOptions b, int load, bool json) {
  b.measure_bandwidth = false;
  const int threads = num_threads();
  std::vector<int> counts = {threads};
  if (threads != 1) counts.push_back(1);
  struct Row {
    int threads, busy;
    BenchResult r;
  };
  std::vector<Row> rows;
  for (int t : counts) {
    set_num_threads(t);
    for (int busy : {0, load}) {
      BenchResult r;
      if (busy > 0) {
        BusyProcesses procs(busy);
        r = benchmark(model, b);
      } else {
        r = benchmark(model, b);
      }
      rows.push_back({t, busy, r});
    }
  }
  set_num_threads(threads);
  if (json) {
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& row : rows) {
      runs.push_back({{"threads", row.threads},
                      {"busy_processes", row.busy},
                      {"prefill_tok_s", row.r.prefill_tok_s},
                      {"decode_tok_s", row.r.decode_tok_s}});
    }
    nlohmann::json j = {{"model", name}, {"n_prompt", b.prompt_tokens}, {"n_gen", b.gen_tokens},
                        {"load", load}, {"cpus", std::thread::hardware_concurrency()}, {"runs", runs}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("| threads | busy processes | pp%lld tok/s | tg%lld tok/s |\n|---:|---:|---:|---:|\n",
              static_cast<long long>(b.prompt_tokens), static_cast<long long>(b.gen_tokens));
  for (const auto& row : rows) {
    std::printf("| %d | %d | %.2f | %.2f |\n", row.threads, row.busy, row.r.prefill_tok_s, row.r.decode_tok_s);
  }
  for (size_t i = 0; i + 1 < rows.size(); i += 2) {
    const auto &idle = rows[i].r, &loaded = rows[i + 1].r;
    std::printf("%d thread(s), loaded/idle: pp %.2f, tg %.2f\n", rows[i].threads,
                idle.prefill_tok_s > 0 ? loaded.prefill_tok_s / idle.prefill_tok_s : 0.0,
                idle.decode_tok_s > 0 ? loaded.decode_tok_s / idle.decode_tok_s : 0.0);
  }
  return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  struct Args {
    std::string model;
    BenchOptions b;
    int threads = 0;
    int lm_head_bits = 0;
    bool json = false;
    int load = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "prefill and decode speed (llama-bench's pp and tg)");
  cmd->add_option("-m,--model", a->model, "model folder")->required();
  cmd->add_option("-p,--n-prompt", a->b.prompt_tokens, "prompt tokens (pp)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("-n,--n-gen", a->b.gen_tokens, "generated tokens (tg)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("-r,--repetitions", a->b.repetitions, "repetitions (best is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->add_option("--load", a->load,
                  "also run beside N busy processes (one busy core each) and report idle and loaded "
                  "speed at -t and at 1 thread")
      ->check(CLI::Range(0, 1024));
  add_threads(cmd, &a->threads);
  add_lm_head_bits(cmd, &a->lm_head_bits);
  return [a]() {
    LoadOptions lo;
    lo.threads = a->threads;
    lo.lm_head_bits = a->lm_head_bits;
    lo.progress = terminal_progress();
    auto model = CausalLM::from_pretrained(a->model, lo);
    if (a->load > 0) return bench_under_load(model, a->model, a->b, a->load, a->json);
    const auto r = benchmark(model, a->b);
    if (a->json) {
      nlohmann::json j = {{"model", a->model},
                          {"threads", r.threads},
                          {"n_prompt", a->b.prompt_tokens},
                          {"n_gen", a->b.gen_tokens},
                          {"prefill_tok_s", r.prefill_tok_s},
                          {"decode_tok_s", r.decode_tok_s},
                          {"weight_bytes", r.weight_bytes},
                          {"read_bandwidth_gb_s", r.read_bandwidth_gb_s},
                          {"roofline_fraction", r.roofline_fraction},
                          {"blas_kernels", gptq::blas_kernels()},
                          {"blas_kernels_replaced", gptq::blas_kernels_replaced()}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("| model | threads | test | tok/s |\n|---|---:|---|---:|\n");
      std::printf("| %s | %d | pp%lld | %.2f |\n", a->model.c_str(), r.threads,
                  static_cast<long long>(a->b.prompt_tokens), r.prefill_tok_s);
      std::printf("| %s | %d | tg%lld | %.2f |\n", a->model.c_str(), r.threads,
                  static_cast<long long>(a->b.gen_tokens), r.decode_tok_s);
      std::printf("weights read per decode step: %.1f MB; read bandwidth %.1f GB/s; decode at %.0f%% of the roofline\n",
                  r.weight_bytes / 1e6, r.read_bandwidth_gb_s, 100 * r.roofline_fraction);
      const std::string replaced = gptq::blas_kernels_replaced();
      std::printf("OpenBLAS kernels: %s%s\n", gptq::blas_kernels().c_str(),
                  replaced.empty() ? "" : (" (it chose " + replaced + " for this CPU, which it does not know)").c_str());
    }
    return 0;
  };
}

}  // namespace gptq::cli
