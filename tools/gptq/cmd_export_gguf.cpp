#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {

void add_gguf_export_flags(CLI::App* cmd, GgufExportOptions* o) {
  cmd->add_flag("--widen", o->widen, "store 2/3-bit codes exactly in Q4_0 (4.5 bits per weight)");
  cmd->add_flag(
      "--requant", o->requant,
      "re-round linears that fit no ggml block exactly (scattered act-order groups, groups of 16, "
      "8-bit asym) to Q4_0/Q8_0 by round-to-nearest, and say which");
  cmd->add_option(
         "--dense-type", o->dense_type,
         "token embedding and output head: f32, f16, bf16, q8_0 or q4_0 (default: as stored)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}));
  cmd->add_option(
      "--tokenizer-pre", o->tokenizer_pre,
      "llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer (default: recognised)");
}

int print_gguf_report(const GgufExportReport& r, bool as_json) {
  if (as_json) {
    nlohmann::json t = nlohmann::json::array();
    for (const auto& x : r.tensors)
      t.push_back({{"name", x.name}, {"type", x.type}, {"source", x.source}, {"note", x.note}});
    nlohmann::json j = {{"output", r.output.string()},
                        {"bytes", r.bytes},
                        {"exact_linears", r.exact_linears},
                        {"widened_linears", r.widened_linears},
                        {"requantized_linears", r.requantized_linears},
                        {"dense_linears", r.dense_linears},
                        {"q4_1_blocks", r.q4_1_blocks},
                        {"q4_1_inexact_offsets", r.q4_1_inexact_offsets},
                        {"q4_1_max_offset_error", r.q4_1_max_offset_error},
                        {"tensors", t}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("| tensor | type | from | note |\n|---|---|---|---|\n");
  for (const auto& x : r.tensors) {
    std::printf("| %s | %s | %s | %s |\n", x.name.c_str(), x.type.c_str(), x.source.c_str(),
                x.note.c_str());
  }
  std::printf(
      "wrote %s (%llu bytes): %lld linears exact, %lld widened, %lld re-rounded, %lld dense\n",
      r.output.string().c_str(), static_cast<unsigned long long>(r.bytes),
      static_cast<long long>(r.exact_linears), static_cast<long long>(r.widened_linears),
      static_cast<long long>(r.requantized_linears), static_cast<long long>(r.dense_linears));
  return 0;
}

Runner add_export_gguf(CLI::App& app) {
  struct Args {
    std::string model, out;
    GgufExportOptions o;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "export-gguf",
      "write a GPTQ folder as a GGUF file for llama.cpp, carrying the codes exactly");
  cmd->add_option("-m,--model", a->model, "GPTQ model folder (ours or a community one)")
      ->required();
  cmd->add_option("-o,--out", a->out, "output .gguf file")->required();
  add_gguf_export_flags(cmd, &a->o);
  cmd->add_option("--name", a->o.name, "general.name (default: the folder's name)");
  cmd->add_flag("--force", a->o.force, "replace an existing output file");
  cmd->add_flag("--json", a->json, "print the report as one JSON object");
  return [a]() { return print_gguf_report(export_gguf(a->model, a->out, a->o), a->json); };
}

}  // namespace gptq::cli
