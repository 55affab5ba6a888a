#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {

// The logits of the last position of one sequence, for comparing with another implementation.
Runner add_logits(CLI::App& app) {
  struct Args {
    std::string model, prompt;
    std::vector<int32_t> ids;
    int threads = 0;
    int lm_head_bits = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("logits", "print the last position's logits of a sequence as JSON");
  cmd->add_option("-m,--model", a->model, "model folder")->required();
  auto* ids = cmd->add_option("--ids", a->ids, "token ids, comma-separated, used as given")->delimiter(',');
  auto* prompt = cmd->add_option("-p,--prompt", a->prompt, "text, tokenized with BOS as the tokenizer adds it");
  ids->excludes(prompt);
  prompt->excludes(ids);
  add_threads(cmd, &a->threads);
  add_lm_head_bits(cmd, &a->lm_head_bits);
  return [a, ids]() {
    LoadOptions lo;
    lo.threads = a->threads;
    lo.lm_head_bits = a->lm_head_bits;
    lo.progress = terminal_progress();
    auto model = CausalLM::from_pretrained(a->model, lo);
    std::vector<int32_t> seq = ids->count() ? a->ids : model.tokenizer().encode(a->prompt);
    if (seq.empty()) throw Error(ErrorKind::kArgument, "logits: the sequence is empty (give --ids or a non-empty -p)");
    const auto all = model.logits(seq);
    const size_t vocab = all.size() / seq.size();
    std::vector<float> last(all.end() - static_cast<std::ptrdiff_t>(vocab), all.end());
    nlohmann::json j = {{"model", a->model}, {"ids", seq}, {"vocab", vocab}, {"logits", last}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  };
}

}  // namespace gptq::cli
