#include <unistd.h>

#include <fmt/format.h>

#include <csignal>
#include <filesystem>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/log.h"
#include "dist/dist.h"
#include "gptq/gptq.h"

namespace gptq::cli {

namespace {

// Finished layers are already on disk (each written atomically), so Ctrl-C can stop at once;
// the message tells the user how to continue.
void on_interrupt(int) {
  static const char kMsg[] =
      "\ngptq: interrupted; finished layers are kept: run the same command again to resume\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  ::_exit(130);
}

uint64_t parse_size(const std::string& s) {
  // "4GB", "500MB", "2GiB", "123" (bytes); decimal units as Hugging Face uses them.
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    throw Error(ErrorKind::kArgument, "--max-shard-size " + s + ": expected a size like 4GB or 500MB");
  }
  std::string unit = s.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double m = 1;
  if (unit == "" || unit == "B") m = 1;
  else if (unit == "KB") m = 1e3;
  else if (unit == "MB") m = 1e6;
  else if (unit == "GB") m = 1e9;
  else if (unit == "KIB") m = 1024.0;
  else if (unit == "MIB") m = 1024.0 * 1024;
  else if (unit == "GIB") m = 1024.0 * 1024 * 1024;
  else throw Error(ErrorKind::kArgument, "--max-shard-size " + s + ": unknown unit (use B, KB, MB, GB, KiB, MiB, GiB)");
  // v * m must fit in uint64 before the cast (a double out of range is undefined behaviour).
  if (!(v > 0) || v * m < 1 || v * m > 9.0e18) {
    throw Error(ErrorKind::kArgument, "--max-shard-size " + s + ": expected a size between 1 byte and 9 EB");
  }
  return static_cast<uint64_t>(v * m);
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  struct Args {
    std::string model, out, shard = "4GB", dequant, hidden_states = "auto", offload_dir;
    std::vector<std::string> dynamic;
    QuantizeConfig q;
    GgufExportOptions gguf;
    CalibrationOptions c;
    bool asym = false, no_true_seq = false, json = false, force = false, broadcast_weights = false,
         distribute_solve = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("quantize", "GPTQ-quantize a Hugging Face model folder into a GPTQ checkpoint");
  cmd->add_option("-m,--model", a->model, "input model folder (fp32/fp16/bf16)")->required();
  cmd->add_option("-o,--out", a->out, "output folder")->required();
  cmd->add_option("--bits", a->q.bits, "2, 3, 4 or 8")->capture_default_str();
  cmd->add_option("--group-size", a->q.group_size, "-1 (per row) or 16..1024")->capture_default_str();
  cmd->add_flag("--desc-act", a->q.desc_act, "act-order: quantize columns by descending Hessian diagonal");
  cmd->add_flag("--static-groups", a->q.static_groups, "with --desc-act: groups fixed before reordering");
  cmd->add_flag("--act-group-aware", a->q.act_group_aware, "group-aware act-order (GPTQModel's): within groups, g_idx stays trivial");
  cmd->add_flag("--asym", a->asym, "asymmetric quantization (zero points packed as GPTQModel packs v1)");
  cmd->add_option("--damp", a->q.damp_percent, "damp_percent; raised by 0.01 while Cholesky fails")->capture_default_str();
  cmd->add_flag("--mse", a->q.mse, "search a clipping range per group (slower, slightly better)");
  cmd->add_flag("--mse-hessian", a->q.mse_hessian,
                "--mse with each column's squared error weighted by GPTQ's loss weight from the Hessian");
  cmd->add_option("--grid", a->q.grid,
                  "gptq (default: SPEC's grid, scale = 2 max|w| / 15) or ggml (llama.cpp's Q4_0/Q8_0 rule, d = the "
                  "largest-magnitude weight / -8 in fp16, so that --format gguf lays out the blocks llama-quantize would; "
                  "symmetric 4- or 8-bit; the default with --format gguf when those hold and no --dynamic rule is given)");
  cmd->add_flag("--damp-search", a->q.damp_search, "choose damp_percent per linear by cross-validation (10 extra solves each)");
  cmd->add_option("--calib-dtype", a->q.calib_dtype,
                  "Hessian precision: fp32 (default) or bf16 (vdpbf16ps with AVX512-BF16; costs quality, README)");
  cmd->add_option("--method", a->q.method, "gptq or rtn (round-to-nearest baseline)")->capture_default_str();
  cmd->add_option("--format", a->q.format,
                  "gptq (v1 zeros, the default), gptq_v2, or gguf (a GGUF file for llama.cpp at -o, codes carried "
                  "exactly; the GPTQ folder is built next to it as OUT.gptq-tmp and removed afterwards)");
  add_gguf_export_flags(cmd, &a->gguf);
  cmd->add_option("--dynamic", a->dynamic,
                  "per-module override, repeatable, first match wins: FILE.json (GPTQModel's \"dynamic\" object), "
                  "'REGEX=bits:8,group_size:64' or '-:REGEX' (leave unquantized)");
  cmd->add_flag("--no-true-sequential", a->no_true_seq, "quantize each layer from its unquantized inputs");
  cmd->add_option("--calib", a->c.file, "calibration text, or JSONL with \"text\" or \"input_ids\" rows");
  cmd->add_option("--nsamples", a->c.nsamples, "calibration windows")->capture_default_str();
  cmd->add_option("--seqlen", a->c.seqlen, "tokens per window (default: min(2048, the model's context))");
  cmd->add_option("--seed", a->c.seed, "seed for window sampling")->capture_default_str();
  cmd->add_option("--max-shard-size", a->shard, "largest safetensors shard (e.g. 4GB, 500MB)")->capture_default_str();
  cmd->add_option("--save-dequantized", a->dequant, "also write the fp32 dequantized weights here (for checks)");
  cmd->add_option("--hidden-states", a->hidden_states,
                  "where the calibration hidden states stay between layers: memory, disk (an unnamed scratch file, "
                  "read and written once per pass) or auto (disk above 128 MiB)")
      ->capture_default_str();
  cmd->add_option("--offload-dir", a->offload_dir,
                  "folder of that scratch file (default: the output folder's parent)");
  cmd->add_flag("--force", a->force, "replace an existing output folder");
  cmd->add_flag("--json", a->json, "print the report as one JSON object");
  cmd->add_flag("--broadcast-weights", a->broadcast_weights,
                "under mpirun: only rank 0 reads the model folder and --calib; the others receive config, tokens "
                "and each layer from it (no shared filesystem needed)");
  cmd->add_flag("--distribute-solve", a->distribute_solve,
                "under mpirun: solve the linears of each true-sequential group on several ranks at once (each "
                "solving rank holds its input's Hessian; docs/distributed.md)");
  add_threads(cmd, &a->threads);
  return [a]() {
    a->q.sym = !a->asym;
    a->q.true_sequential = !a->no_true_seq;
    for (const std::string& d : a->dynamic) {
      // A file when it names one (a regex with '=' settings never ends in .json).
      if (d.size() > 5 && d.compare(d.size() - 5, 5, ".json") == 0 && d.find('=') == std::string::npos) {
        for (auto& r : read_dynamic_file(d)) a->q.dynamic.push_back(std::move(r));
      } else {
        a->q.dynamic.push_back(parse_dynamic_arg(d));
      }
    }
    const bool to_gguf = a->q.format == "gguf";
    std::string folder = a->out;
    if (to_gguf) {
      // The GGUF is exported from a GPTQ folder (v2 zeros: no v1 round trip), which stays on disk
      // only while the run is unfinished, so that an interrupted run resumes.
      if (std::filesystem::exists(a->out) && !a->force) {
        throw Error(ErrorKind::kArgument, a->out + " exists; pass --force to replace it");
      }
      a->q.format = "gptq_v2";
      // The file goes to llama.cpp: solve on its grid unless told otherwise (README "GGUF export").
      if (a->q.grid.empty() && a->q.sym && (a->q.bits == 4 || a->q.bits == 8) && a->q.dynamic.empty()) {
        a->q.grid = "ggml";
      }
      folder = a->out + ".gptq-tmp";
      a->gguf.force = a->force;
    }
    QuantizeRunOptions run;
    run.threads = a->threads;
    run.force = a->force;
    run.max_shard_bytes = parse_size(a->shard);
    run.progress = terminal_progress();
    run.dequantized_out = a->dequant;
    run.broadcast_weights = a->broadcast_weights;
    run.distribute_solve = a->distribute_solve;
    run.hidden_states = a->hidden_states;
    run.offload_dir = a->offload_dir;
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    // Under mpirun (-np N) every rank runs the same command; rank 0 logs, prints and writes.
    const dist::Group group = dist::Group::world();
    if (!group.root()) core::set_log_level(core::LogLevel::kError);
    QuantizeReport r;
    try {
      r = quantize_model(a->model, folder, a->q, a->c, run);
    } catch (const dist::GroupError& e) {
      if (group.size() == 1) throw;
      // Every rank has this error (it names the failing ranks): each stops on its own.
      std::fprintf(stderr, "gptq: error: %s\n", e.what());
      dist::finalize();
      return 1;
    } catch (const std::exception& e) {
      if (group.size() == 1) throw;
      // Ends every rank: none may wait on this one.
      std::fflush(stdout);
      dist::abort(fmt::format("gptq: error: rank {} of {}: {}", group.rank(), group.size(), e.what()), 1);
    }
    dist::finalize();
    if (!group.root()) return 0;
    if (to_gguf) {
      const GgufExportReport g = export_gguf(folder, a->out, a->gguf);
      std::filesystem::remove_all(folder);
      std::fprintf(stderr, "quantized %lld layers in %.1f s\n", static_cast<long long>(r.layers), r.seconds);
      return print_gguf_report(g, a->json);
    }
    if (a->json) {
      nlohmann::json mods = nlohmann::json::array();
      for (const auto& m : r.modules) {
        mods.push_back({{"module", m.module}, {"bits", m.bits}, {"group_size", m.group_size}, {"n", m.n}, {"k", m.k}, {"loss", m.loss},
                        {"damp", m.damp}, {"seconds", m.seconds}, {"note", m.note}});
      }
      nlohmann::json j = {{"output", r.output.string()},  {"layers", r.layers},
                          {"layers_resumed", r.layers_resumed}, {"calibration_tokens", r.calibration_tokens},
                          {"seconds", r.seconds},          {"bits", a->q.bits},
                          {"group_size", a->q.group_size}, {"desc_act", a->q.desc_act},
                          {"sym", a->q.sym},               {"method", a->q.method},
                          {"modules", mods}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::printf("| module | bits | loss | damp | seconds |\n|---|---:|---:|---:|---:|\n");
    for (const auto& m : r.modules) {
      if (m.bits == 0) {
        std::printf("| %s | - | - | - | - |  %s\n", m.module.c_str(), m.note.c_str());
      } else {
        std::printf("| %s | %d | %.6g | %.2f | %.3f |%s%s\n", m.module.c_str(), m.bits, m.loss, m.damp, m.seconds,
                    m.note.empty() ? "" : "  ", m.note.c_str());
      }
    }
    std::printf("quantized %lld layers (%lld resumed) with %lld calibration tokens in %.1f s -> %s\n",
                static_cast<long long>(r.layers), static_cast<long long>(r.layers_resumed),
                static_cast<long long>(r.calibration_tokens), r.seconds, r.output.string().c_str());
    return 0;
  };
}

}  // namespace gptq::cli
