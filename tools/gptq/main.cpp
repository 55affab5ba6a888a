// gptq: the command-line tool, a thin layer over the public C++ API (include/gptq/gptq.h).
// Results go to stdout, logs and progress to stderr.
#include <cstdio>
#include <map>

#include "commands.h"
#include "gptq/gptq.h"

int main(int argc, char** argv) {
  CLI::App app{"gptq.cpp: GPTQ quantization and inference for Hugging Face LLMs, without Python"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("gptq.cpp ") + GPTQ_VERSION);
  std::map<std::string, gptq::cli::Runner> runners;
  using Adder = gptq::cli::Runner (*)(CLI::App&);
  const std::pair<const char*, Adder> kCommands[] = {
      {"generate", gptq::cli::add_generate}, {"perplexity", gptq::cli::add_perplexity},
      {"inspect", gptq::cli::add_inspect},   {"bench", gptq::cli::add_bench},
      {"synth", gptq::cli::add_synth},       {"quantize", gptq::cli::add_quantize},
      {"solve-layer", gptq::cli::add_solve_layer}, {"export-gguf", gptq::cli::add_export_gguf},
      {"logits", gptq::cli::add_logits},
  };
  for (const auto& [name, f] : kCommands) runners[name] = f(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub->get_name())();
  } catch (const gptq::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "gptq: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "gptq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
