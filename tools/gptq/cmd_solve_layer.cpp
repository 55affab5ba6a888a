#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gptq/gptq.h"

namespace gptq::cli {

Runner add_solve_layer(CLI::App& app) {
  struct Args {
    std::string weight, hessian, out;
    QuantizeConfig q;
    bool asym = false, json = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("solve-layer", "run the GPTQ solver on one linear (weight [N,K], hessian [K,K])");
  cmd->add_option("--weight", a->weight, "safetensors file with tensor \"weight\" [N, K]")->required()->check(CLI::ExistingFile);
  cmd->add_option("--hessian", a->hessian, "safetensors file with tensor \"hessian\" [K, K]")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--out", a->out, "output safetensors file")->required();
  cmd->add_option("--bits", a->q.bits, "2, 3, 4 or 8")->capture_default_str();
  cmd->add_option("--group-size", a->q.group_size, "-1 or 16..1024")->capture_default_str();
  cmd->add_flag("--desc-act", a->q.desc_act, "act-order");
  cmd->add_flag("--static-groups", a->q.static_groups, "static groups");
  cmd->add_flag("--asym", a->asym, "asymmetric");
  cmd->add_option("--damp", a->q.damp_percent, "damp_percent")->capture_default_str();
  cmd->add_flag("--mse", a->q.mse, "MSE clipping search");
  cmd->add_option("--method", a->q.method, "gptq or rtn")->capture_default_str();
  cmd->add_option("--format", a->q.format, "gptq or gptq_v2");
  cmd->add_flag("--json", a->json, "print one JSON object");
  add_threads(cmd, &a->threads);
  return [a]() {
    a->q.sym = !a->asym;
    const auto r = solve_layer(a->weight, a->hessian, a->out, a->q, a->threads);
    if (a->json) {
      nlohmann::json j = {{"n", r.n}, {"k", r.k}, {"loss", r.loss}, {"damp", r.damp}, {"seconds", r.seconds},
                          {"output_error", r.output_error}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("solved %lld x %lld in %.3f s: loss %.6g, damp %.2f, tr(E H E^T)/N %.6g\n",
                  static_cast<long long>(r.n), static_cast<long long>(r.k), r.seconds, r.loss, r.damp,
                  r.output_error);
    }
    return 0;
  };
}

}  // namespace gptq::cli
