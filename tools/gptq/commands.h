// Each subcommand registers its flags on the app and returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace gptq::cli {

using Runner = std::function<int()>;

Runner add_generate(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_inspect(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_solve_layer(CLI::App& app);
Runner add_export_gguf(CLI::App& app);
Runner add_logits(CLI::App& app);

}  // namespace gptq::cli
namespace gptq {
struct GgufExportOptions;
struct GgufExportReport;
}  // namespace gptq
namespace gptq::cli {
// The export flags shared by export-gguf and quantize --format gguf, and the report printer.
void add_gguf_export_flags(CLI::App* cmd, GgufExportOptions* o);
int print_gguf_report(const GgufExportReport& r, bool as_json);

// Common -t/--threads flag.
inline void add_threads(CLI::App* cmd, int* threads) {
  cmd->add_option("-t,--threads", *threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
}

inline void add_lm_head_bits(CLI::App* cmd, int* bits) {
  cmd->add_option("--lm-head-bits", *bits,
                  "0: run the lm_head as stored; 8: round a copy to 8 bits at load (faster decode, "
                  "logits change slightly)")
      ->capture_default_str()
      ->check(CLI::IsMember({0, 8}));
}

}  // namespace gptq::cli
