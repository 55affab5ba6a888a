#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {

Runner add_perplexity(CLI::App& app) {
  struct Args {
    std::string model, file;
    PerplexityOptions p;
    bool json = false;
    int threads = 0;
    int lm_head_bits = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("perplexity", "perplexity of a text file (GPTQ-paper convention by default)");
  cmd->add_option("-m,--model", a->model, "model folder")->required();
  cmd->add_option("-f,--file", a->file, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-c,--ctx-size", a->p.ctx, "window length in tokens")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_flag("--bos-per-window", a->p.bos_per_window, "start every window with BOS followed by ctx-1 text tokens");
  cmd->add_flag("--llama-cpp", a->p.llama_cpp,
                "llama-perplexity's convention: each window's first token replaced by BOS, only the second half scored");
  cmd->add_option("--chunks", a->p.max_windows, "evaluate only the first N windows (-1: all)")->capture_default_str();
  cmd->add_flag("--json", a->json, "print one JSON object of metrics");
  add_threads(cmd, &a->threads);
  add_lm_head_bits(cmd, &a->lm_head_bits);
  return [a]() {
    std::ifstream f(a->file, std::ios::binary);
    if (!f) throw Error(ErrorKind::kIo, a->file + ": cannot read");
    std::ostringstream ss;
    ss << f.rdbuf();
    LoadOptions lo;
    lo.threads = a->threads;
    lo.lm_head_bits = a->lm_head_bits;
    lo.progress = terminal_progress();
    auto model = CausalLM::from_pretrained(a->model, lo);
    const auto r = model.perplexity(ss.str(), a->p, terminal_progress());
    if (a->json) {
      nlohmann::json j = {{"ppl", r.ppl},         {"nll", r.nll},        {"tokens", r.tokens},
                          {"windows", r.windows}, {"ctx", a->p.ctx},     {"bos_per_window", a->p.bos_per_window},
                          {"seconds", r.seconds}, {"model", a->model},   {"file", a->file}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity: %.4f  (mean NLL %.6f over %lld tokens in %lld windows of %lld)\n", r.ppl, r.nll,
                  static_cast<long long>(r.tokens), static_cast<long long>(r.windows),
                  static_cast<long long>(a->p.ctx));
    }
    return 0;
  };
}

}  // namespace gptq::cli
