#include <cstdio>

#include "commands.h"
#include "gptq/gptq.h"
#include "synth/synth.h"

namespace gptq::cli {

Runner add_synth(CLI::App& app) {
  auto a = std::make_shared<SynthOptions>();
  auto* cmd = app.add_subcommand("synth", "write a random-weight model folder of a real shape (for benchmarks)");
  std::string out;
  cmd->add_option("-o,--out", a->out, "output folder")->required();
  cmd->add_option("--shape", a->shape, "tinyllama-1.1b | llama-350m | tiny")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "bf16 | fp16 | fp32")->capture_default_str();
  cmd->add_option("--seed", a->seed, "random seed")->capture_default_str();
  cmd->add_option("--layers", a->layers, "decoder layers (default: the shape's)");
  cmd->add_flag("--force", a->force, "replace an existing folder");
  return [a]() {
    synthesize_model(*a);
    std::fprintf(stderr, "gptq: wrote %s (%s, %s)\n", a->out.string().c_str(), a->shape.c_str(), a->dtype.c_str());
    return 0;
  };
}

}  // namespace gptq::cli
