#include <cstdio>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {

Runner add_generate(CLI::App& app) {
  struct Args {
    std::string model, prompt;
    GenerateOptions g;
    int threads = 0;
    int lm_head_bits = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("generate", "continue a prompt; prints the prompt and the continuation");
  cmd->add_option("-m,--model", a->model, "model folder (Hugging Face layout)")->required();
  cmd->add_option("-p,--prompt", a->prompt, "prompt text (default: empty, i.e. BOS only)");
  cmd->add_option("-n,--n-predict", a->g.n_predict, "tokens to generate (-1: until EOS or context end)")
      ->capture_default_str();
  cmd->add_option("--temp", a->g.temperature, "temperature (0: greedy)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", a->g.top_k, "top-k sampling (0: off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->g.top_p, "top-p (nucleus) sampling (1: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->g.seed, "random seed")->capture_default_str();
  cmd->add_flag("--ignore-eos", a->g.ignore_eos, "do not stop at an end-of-sequence token");
  add_threads(cmd, &a->threads);
  add_lm_head_bits(cmd, &a->lm_head_bits);
  return [a]() {
    LoadOptions lo;
    lo.threads = a->threads;
    lo.lm_head_bits = a->lm_head_bits;
    lo.progress = terminal_progress();
    auto model = CausalLM::from_pretrained(a->model, lo);
    std::fputs(a->prompt.c_str(), stdout);
    std::fflush(stdout);
    model.generate(a->prompt, a->g, [](const std::string& piece) {
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
    });
    std::fputc('\n', stdout);
    return 0;
  };
}

}  // namespace gptq::cli
