#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {

Runner add_bench(CLI::App& app) {
  struct Args {
    std::string model;
    BenchOptions b;
    int threads = 0;
    int lm_head_bits = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "prefill and decode speed (llama-bench's pp and tg)");
  cmd->add_option("-m,--model", a->model, "model folder")->required();
  cmd->add_option("-p,--n-prompt", a->b.prompt_tokens, "prompt tokens (pp)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("-n,--n-gen", a->b.gen_tokens, "generated tokens (tg)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("-r,--repetitions", a->b.repetitions, "repetitions (best is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json, "print one JSON object");
  add_threads(cmd, &a->threads);
  add_lm_head_bits(cmd, &a->lm_head_bits);
  return [a]() {
    LoadOptions lo;
    lo.threads = a->threads;
    lo.lm_head_bits = a->lm_head_bits;
    lo.progress = terminal_progress();
    auto model = CausalLM::from_pretrained(a->model, lo);
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
                          {"roofline_fraction", r.roofline_fraction}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("| model | threads | test | tok/s |\n|---|---:|---|---:|\n");
      std::printf("| %s | %d | pp%lld | %.2f |\n", a->model.c_str(), r.threads,
                  static_cast<long long>(a->b.prompt_tokens), r.prefill_tok_s);
      std::printf("| %s | %d | tg%lld | %.2f |\n", a->model.c_str(), r.threads,
                  static_cast<long long>(a->b.gen_tokens), r.decode_tok_s);
      std::printf("weights read per decode step: %.1f MB; read bandwidth %.1f GB/s; decode at %.0f%% of the roofline\n",
                  r.weight_bytes / 1e6, r.read_bandwidth_gb_s, 100 * r.roofline_fraction);
    }
    return 0;
  };
}

}  // namespace gptq::cli
