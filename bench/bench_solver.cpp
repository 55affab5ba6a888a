// GPTQ solver on a 4096 x 4096 linear (4-bit, g128) with H from 8192 correlated random tokens.
// Each figure comes with its baseline from the same run: the solver's lazy-update GFLOP/s next
// to plain OpenBLAS sgemm on the shapes those updates have (M = 4096 rows, inner 512 for the
// superblock updates, inner 128 for the in-superblock ones).
//
//   build/bin/bench_solver [--benchmark_filter=...]
// The first argument of each benchmark is the thread count (0 = all cores), shared by OpenMP and
// OpenBLAS; compare a solver figure with the sgemm baseline of the same thread count.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/parallel.h"
#include "quant/quantizer.h"

namespace {

constexpr int64_t kN = 4096, kK = 4096, kTokens = 8192;

// Inputs built once: W [N, K], X [tokens, K], H [K, K].
struct Problem {
  std::vector<float> w, x;
  std::vector<double> h;
};

const Problem& problem() {
  static const Problem p = [] {
    gptq::core::set_num_threads(0);
    Problem r;
    std::mt19937 gen(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    r.w.resize(static_cast<size_t>(kN * kK));
    for (auto& v : r.w) v = 0.02f * nd(gen);
    // Tokens: AR(1) across features (rho 0.8) times a per-feature scale in [0.2, 5].
    std::uniform_real_distribution<float> ud(std::log(0.2f), std::log(5.0f));
    std::vector<float> scale(static_cast<size_t>(kK));
    for (auto& s : scale) s = std::exp(ud(gen));
    r.x.resize(static_cast<size_t>(kTokens * kK));
    const float rho = 0.8f, a = std::sqrt(1 - rho * rho);
    for (int64_t t = 0; t < kTokens; ++t) {
      float prev = nd(gen);
      for (int64_t c = 0; c < kK; ++c) {
        prev = rho * prev + a * nd(gen);
        r.x[t * kK + c] = prev * scale[c];
      }
    }
    gptq::quant::HessianAccumulator acc(kK);
    acc.add(r.x.data(), kTokens);
    r.h = acc.hessian();
    return r;
  }();
  return p;
}

gptq::quant::QuantParams params() {
  gptq::quant::QuantParams p;
  p.bits = 4;
  p.group_size = 128;
  return p;
}

void report(benchmark::State& state, const gptq::quant::SolverStats& s, double factor_s) {
  state.counters["factor_s"] = factor_s;
  state.counters["block_s"] = s.block_seconds;
  state.counters["update_s"] = s.update_seconds;
  state.counters["update_GFLOPs"] = s.update_flops / s.update_seconds / 1e9;
}

void set_threads(benchmark::State& state) {
  gptq::core::set_num_threads(static_cast<int>(state.range(0)));
  state.counters["threads"] = gptq::core::num_threads();
}

void BM_GptqQuantize(benchmark::State& state) {
  const Problem& pr = problem();
  set_threads(state);
  const gptq::quant::QuantParams p = params();
  gptq::quant::QuantResult r;
  for (auto _ : state) {
    r = gptq::quant::gptq_quantize(pr.w.data(), kN, kK, pr.h, p);
    benchmark::DoNotOptimize(r.codes.data());
  }
  report(state, r.stats, r.stats.factor_seconds);
}
BENCHMARK(BM_GptqQuantize)->Arg(1)->Arg(0)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(3);

// The same linear with the factorization prepared beforehand (shared by q/k/v or gate/up).
void BM_GptqQuantizeSharedFactor(benchmark::State& state) {
  const Problem& pr = problem();
  set_threads(state);
  const gptq::quant::QuantParams p = params();
  const gptq::quant::HessianFactor f = gptq::quant::prepare_hessian(pr.h, kK, p);
  gptq::quant::QuantResult r;
  for (auto _ : state) {
    r = gptq::quant::gptq_quantize(pr.w.data(), kN, kK, f, p);
    benchmark::DoNotOptimize(r.codes.data());
  }
  report(state, r.stats, f.seconds);
}
BENCHMARK(BM_GptqQuantizeSharedFactor)
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(3);

void BM_GptqQuantizeActOrder(benchmark::State& state) {
  const Problem& pr = problem();
  set_threads(state);
  gptq::quant::QuantParams p = params();
  p.desc_act = true;
  gptq::quant::QuantResult r;
  for (auto _ : state) {
    r = gptq::quant::gptq_quantize(pr.w.data(), kN, kK, pr.h, p);
    benchmark::DoNotOptimize(r.codes.data());
  }
  report(state, r.stats, r.stats.factor_seconds);
}
BENCHMARK(BM_GptqQuantizeActOrder)->Arg(0)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(2);

void BM_RtnQuantize(benchmark::State& state) {
  const Problem& pr = problem();
  set_threads(state);
  const gptq::quant::QuantParams p = params();
  for (auto _ : state) {
    auto r = gptq::quant::rtn_quantize(pr.w.data(), kN, kK, p);
    benchmark::DoNotOptimize(r.codes.data());
  }
}
BENCHMARK(BM_RtnQuantize)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

// H from the 8192 x 4096 calibration tokens; second argument 0: fp32, 1: bf16 operands
// (vdpbf16ps where the active ISA has AVX512-BF16, else the slow scalar emulation).
void BM_HessianAccumulate(benchmark::State& state) {
  const Problem& pr = problem();
  set_threads(state);
  const auto dtype = state.range(1) ? gptq::quant::CalibDtype::kBf16 : gptq::quant::CalibDtype::kFp32;
  state.SetLabel(state.range(1) ? "bf16" : "fp32");
  for (auto _ : state) {
    gptq::quant::HessianAccumulator acc(kK, dtype);
    acc.add(pr.x.data(), kTokens);
    auto h = acc.hessian();
    benchmark::DoNotOptimize(h.data());
  }
  // x^T x's useful flops: the symmetric half, T * K * (K + 1).
  state.counters["GFLOPs"] = benchmark::Counter(
      static_cast<double>(kTokens) * kK * (kK + 1) * state.iterations() / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_HessianAccumulate)
    ->Args({0, 0})
    ->Args({0, 1})
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(2);

// Baseline: C [4096, n] += A [4096, inner] B [inner, n], the shapes of the solver's updates
// (n = columns right of a superblock, inner = 512; and inside a superblock, inner = 128).
// Arguments: threads, n, inner.
void BM_SgemmBaseline(benchmark::State& state) {
  set_threads(state);
  const int64_t m = kN, n = state.range(1), inner = state.range(2);
  std::vector<float> a(static_cast<size_t>(m * inner), 0.01f);
  std::vector<float> b(static_cast<size_t>(inner * kK), 0.02f);
  std::vector<float> c(static_cast<size_t>(m * kK), 1.0f);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m),
                static_cast<int>(n), static_cast<int>(inner), 1.0f, a.data(),
                static_cast<int>(inner), b.data(), static_cast<int>(kK), 1.0f, c.data(),
                static_cast<int>(kK));
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * m * n * inner * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SgemmBaseline)
    ->Args({1, 2048, 512})
    ->Args({1, 384, 128})
    ->Args({0, 2048, 512})
    ->Args({0, 3584, 512})
    ->Args({0, 384, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
