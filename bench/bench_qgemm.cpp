// Quantized matmul kernels (backend/cpu/qlinear.h) on the TinyLlama-1.1B linear shapes, 4-bit
// g128, each figure next to its baseline measured in the same run:
//   decode  (m = 1):   GB/s of packed weights read (weight_bytes / time) vs a summing loop's read
//                      bandwidth, and vs OpenBLAS fp32 sgemv of the same shape;
//   prefill (m = 512): GFLOP/s (2 M N K / time) vs OpenBLAS fp32 sgemm of the same shape;
//   dense 16-bit decode: the lm_head shape (32000 x 2048) in bf16 and fp16 through
//                      backend::dense16_gemv, GB/s vs the read bandwidth, and vs the fp32
//                      backend::dense_gemv of the same shape.
// Decode benchmarks cycle through enough copies of the layer to exceed the caches (kColdBytes), as
// a model does: 22 layers of TinyLlama are ~600 MB of 4-bit weights per token, so every weight
// comes from DRAM. "hot" variants reuse one copy (cache-resident: the kernel's compute ceiling).
// After the runs a summary table prints the ratios and a whole-model estimate.
//
// Usage: bench_qgemm [--benchmark_filter=...]; threads are 1 and 2 (core::set_num_threads).

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cpu/dense.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/qlinear.h"
#include "core/dtype.h"
#include "core/parallel.h"

namespace {

using gptq::backend::QLinear;
using gptq::backend::QuantizedLinearView;

constexpr int64_t kColdBytes = int64_t{768} << 20;  // > any cache here, like a model's weights
constexpr int64_t kPrefillRows = 512;
constexpr int kLayers = 22;  // TinyLlama-1.1B decoder layers

struct LinearShape {
  const char* name;
  int64_t n, k;   // outputs, inputs
  int per_layer;  // how many such linears one decoder layer has
};
// hidden 2048, intermediate 5632, 32 query heads and 4 KV heads of 64.
const LinearShape kShapes[] = {
    {"q_o", 2048, 2048, 2},
    {"k_v", 256, 2048, 2},
    {"gate_up", 5632, 2048, 2},
    {"down", 2048, 5632, 1},
};

// A random symmetric 4-bit g128 layer in the GPTQ v1 file layout, built from its words directly
// (the kernels' speed does not depend on the values).
QLinear make_layer(const LinearShape& s) {
  std::mt19937 rng(42);
  const int64_t groups = s.k / 128;
  std::vector<int32_t> qweight(static_cast<size_t>(s.k / 8 * s.n));
  for (auto& w : qweight) w = static_cast<int32_t>(rng());
  std::vector<int32_t> qzeros(static_cast<size_t>(groups * s.n / 8), 0x77777777);
  std::vector<uint16_t> scales(static_cast<size_t>(groups * s.n));
  std::uniform_real_distribution<float> d(0.001f, 0.01f);
  for (auto& v : scales) v = gptq::core::fp32_to_fp16(d(rng));
  QuantizedLinearView v;
  v.n = s.n;
  v.k = s.k;
  v.bits = 4;
  v.group_size = 128;
  v.qweight = qweight.data();
  v.qzeros = qzeros.data();
  v.scales = scales.data();
  return QLinear::create(v, s.name);
}

// Uniform values in [-1, 1) from a xorshift generator: cheap enough for the 768 MB fp32 buffers
// (the timings do not depend on the values).
std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = static_cast<float>(static_cast<int32_t>(s >> 32)) * (1.0f / 2147483648.0f);
  }
  return v;
}

// Results for the summary: key "what/shape/threads" -> the best figure over all runs (with
// --benchmark_repetitions=N the summary is best-of-N, which filters out interference from other
// processes on a shared machine; the baselines get the same treatment).
std::map<std::string, double>& results() {
  static std::map<std::string, double> r;
  return r;
}
// Google Benchmark first calls each benchmark with a few iterations to size the real run; only
// runs that lasted at least this long are recorded (a lucky single call must not win best-of).
constexpr double kMinRecordedSeconds = 0.2;
double g_last_elapsed = 0;  // seconds of the run being recorded, set by each benchmark

// Keeps the larger of the stored and the new rate.
void record_rate(const std::string& k, double v) {
  if (g_last_elapsed < kMinRecordedSeconds) return;
  auto [it, fresh] = results().emplace(k, v);
  if (!fresh && v > it->second) it->second = v;
}
// Keeps the smaller of the stored and the new time.
void record_time(const std::string& k, double v) {
  if (g_last_elapsed < kMinRecordedSeconds) return;
  auto [it, fresh] = results().emplace(k, v);
  if (!fresh && v < it->second) it->second = v;
}
std::string key(const char* what, const LinearShape& s, int threads) {
  return std::string(what) + "/" + s.name + "/" + std::to_string(threads);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- decode ----
void BM_QGemv(benchmark::State& state, const LinearShape* s, bool hot) {
  const int threads = static_cast<int>(state.range(0));
  gptq::core::set_num_threads(threads);
  const QLinear layer = make_layer(*s);
  const int64_t copies =
      hot ? 1 : std::max<int64_t>(1, kColdBytes / static_cast<int64_t>(layer.weight_bytes()) + 1);
  std::vector<QLinear> layers(static_cast<size_t>(copies), layer);
  const std::vector<float> x = random_vec(static_cast<size_t>(s->k), 1);
  std::vector<float> y(static_cast<size_t>(s->n));
  size_t i = 0;
  const double t0 = now_s();
  for (auto _ : state) {
    layers[i].forward(x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    if (++i == layers.size()) i = 0;
  }
  g_last_elapsed = now_s() - t0;
  const double per_call = g_last_elapsed / static_cast<double>(state.iterations());
  const double gbs = static_cast<double>(layer.weight_bytes()) / per_call / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["us"] = per_call * 1e6;
  record_rate(key(hot ? "qgemv_hot" : "qgemv", *s, threads), gbs);
  record_time(key(hot ? "qgemv_hot_us" : "qgemv_us", *s, threads), per_call * 1e6);
}

void BM_SGemv(benchmark::State& state, const LinearShape* s, bool hot) {
  const int threads = static_cast<int>(state.range(0));
  gptq::core::set_num_threads(threads);
  const int64_t bytes = s->n * s->k * 4;
  const int64_t copies = hot ? 1 : kColdBytes / bytes + 1;
  std::vector<float> w = random_vec(static_cast<size_t>(copies * s->n * s->k), 2);
  const std::vector<float> x = random_vec(static_cast<size_t>(s->k), 1);
  std::vector<float> y(static_cast<size_t>(s->n));
  int64_t i = 0;
  const double t0 = now_s();
  for (auto _ : state) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(s->n), static_cast<int>(s->k), 1.0f,
                w.data() + i * s->n * s->k, static_cast<int>(s->k), x.data(), 1, 0.0f, y.data(), 1);
    benchmark::DoNotOptimize(y.data());
    if (++i == copies) i = 0;
  }
  g_last_elapsed = now_s() - t0;
  const double per_call = g_last_elapsed / static_cast<double>(state.iterations());
  state.counters["GB/s"] = static_cast<double>(bytes) / per_call / 1e9;
  state.counters["us"] = per_call * 1e6;
  record_time(key(hot ? "sgemv_hot_us" : "sgemv_us", *s, threads), per_call * 1e6);
  record_rate(key(hot ? "sgemv_hot" : "sgemv", *s, threads),
              static_cast<double>(bytes) / per_call / 1e9);
}

// The summing loop: read bandwidth of kColdBytes with `threads` threads (the same parallel_for
// as the kernels). Integer sums, because the compiler may vectorize those (an fp sum it may not
// reorder), so the loop is limited by memory, not by adds.
void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  gptq::core::set_num_threads(threads);
  const int64_t n = kColdBytes / 8;
  std::vector<uint64_t> buf(static_cast<size_t>(n), 1);
  uint64_t sink = 0;
  const double t0 = now_s();
  for (auto _ : state) {
    std::atomic<uint64_t> total{0};
    gptq::core::parallel_for(n, [&](int64_t b, int64_t e) {
      uint64_t sum = 0;
      const uint64_t* p = buf.data();
      for (int64_t i = b; i < e; ++i) sum += p[i];
      total.fetch_add(sum, std::memory_order_relaxed);
    });
    sink += total.load();
    benchmark::DoNotOptimize(sink);
  }
  g_last_elapsed = now_s() - t0;
  const double per_call = g_last_elapsed / static_cast<double>(state.iterations());
  const double gbs = static_cast<double>(kColdBytes) / per_call / 1e9;
  state.counters["GB/s"] = gbs;
  record_rate("read_bw/" + std::to_string(threads), gbs);
}

// ---- dense 16-bit decode (lm_head) ----
constexpr int64_t kHeadN = 32000, kHeadK = 2048;  // TinyLlama's vocab x hidden

// Weights uniform in [-0.05, 0.05) rounded to bf16 or fp16. Random bit patterns would not do:
// products that underflow to fp32 subnormals take a microcode assist per FMA, which would measure
// the assists instead of the memory.
std::vector<uint16_t> random_half(gptq::DType dtype, size_t n, uint32_t seed) {
  const std::vector<float> f = random_vec(n, seed);
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    const float w = f[i] * 0.05f;
    v[i] = dtype == gptq::DType::kBF16 ? gptq::core::fp32_to_bf16(w) : gptq::core::fp32_to_fp16(w);
  }
  return v;
}

// "head_<dtype><suffix>/<threads>", built with append (GCC 12 warns, wrongly, about
// -Wrestrict in chains of std::string operator+ here).
std::string head_key(std::string_view dtype, const char* suffix, int threads) {
  std::string k = "head_";
  k.append(dtype).append(suffix).append("/").append(std::to_string(threads));
  return k;
}

// dtype: kBF16 / kF16 through dense16_gemv, kF32 through dense_gemv (the fp32 baseline).
void BM_DenseHeadGemv(benchmark::State& state, gptq::DType dtype) {
  const int threads = static_cast<int>(state.range(0));
  gptq::core::set_num_threads(threads);
  const int64_t es = dtype == gptq::DType::kF32 ? 4 : 2;
  const int64_t bytes = kHeadN * kHeadK * es;
  const int64_t copies = kColdBytes / bytes + 1;
  std::vector<uint16_t> w16;
  std::vector<float> w32;
  if (es == 2) {
    w16 = random_half(dtype, static_cast<size_t>(copies * kHeadN * kHeadK), 3);
  } else {
    w32 = random_vec(static_cast<size_t>(copies * kHeadN * kHeadK), 3);
  }
  const std::vector<float> x = random_vec(static_cast<size_t>(kHeadK), 1);
  std::vector<float> y(static_cast<size_t>(kHeadN));
  int64_t i = 0;
  const double t0 = now_s();
  for (auto _ : state) {
    if (es == 2) {
      gptq::backend::dense16_gemv(dtype, w16.data() + i * kHeadN * kHeadK, kHeadN, kHeadK,
                                  x.data(), y.data());
    } else {
      gptq::backend::dense_gemv(w32.data() + i * kHeadN * kHeadK, kHeadN, kHeadK, x.data(),
                                y.data());
    }
    benchmark::DoNotOptimize(y.data());
    if (++i == copies) i = 0;
  }
  g_last_elapsed = now_s() - t0;
  const double per_call = g_last_elapsed / static_cast<double>(state.iterations());
  const double gbs = static_cast<double>(bytes) / per_call / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["us"] = per_call * 1e6;
  record_rate(head_key(gptq::dtype_name(dtype), "", threads), gbs);
  record_time(head_key(gptq::dtype_name(dtype), "_us", threads), per_call * 1e6);
}

// ---- prefill ----
void BM_QGemm(benchmark::State& state, const LinearShape* s) {
  const int threads = static_cast<int>(state.range(0));
  gptq::core::set_num_threads(threads);
  const QLinear layer = make_layer(*s);
  const std::vector<float> x = random_vec(static_cast<size_t>(kPrefillRows * s->k), 1);
  std::vector<float> y(static_cast<size_t>(kPrefillRows * s->n));
  const double t0 = now_s();
  for (auto _ : state) {
    layer.forward(x.data(), kPrefillRows, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  g_last_elapsed = now_s() - t0;
  const double per_call = g_last_elapsed / static_cast<double>(state.iterations());
  const double gflops = 2.0 * kPrefillRows * s->n * s->k / per_call / 1e9;
  state.counters["GFLOP/s"] = gflops;
  record_rate(key("qgemm", *s, threads), gflops);
}

void BM_SGemm(benchmark::State& state, const LinearShape* s) {
  const int threads = static_cast<int>(state.range(0));
  gptq::core::set_num_threads(threads);
  const std::vector<float> w = random_vec(static_cast<size_t>(s->n * s->k), 2);
  const std::vector<float> x = random_vec(static_cast<size_t>(kPrefillRows * s->k), 1);
  std::vector<float> y(static_cast<size_t>(kPrefillRows * s->n));
  const double t0 = now_s();
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(kPrefillRows),
                static_cast<int>(s->n), static_cast<int>(s->k), 1.0f, x.data(),
                static_cast<int>(s->k), w.data(), static_cast<int>(s->k), 0.0f, y.data(),
                static_cast<int>(s->n));
    benchmark::DoNotOptimize(y.data());
  }
  g_last_elapsed = now_s() - t0;
  const double per_call = g_last_elapsed / static_cast<double>(state.iterations());
  const double gflops = 2.0 * kPrefillRows * s->n * s->k / per_call / 1e9;
  state.counters["GFLOP/s"] = gflops;
  record_rate(key("sgemm", *s, threads), gflops);
}

void register_all() {
  benchmark::RegisterBenchmark("ReadBandwidth", BM_ReadBandwidth)
      ->Arg(1)
      ->Arg(2)
      ->UseRealTime()
      ->MinTime(0.5);
  for (const gptq::DType dt : {gptq::DType::kBF16, gptq::DType::kF16, gptq::DType::kF32}) {
    benchmark::RegisterBenchmark(("DenseHeadGemv/" + std::string(gptq::dtype_name(dt))).c_str(),
                                 BM_DenseHeadGemv, dt)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->MinTime(0.5);
  }
  for (const LinearShape& s : kShapes) {
    const std::string n = s.name;
    benchmark::RegisterBenchmark(("QGemv/" + n).c_str(), BM_QGemv, &s, false)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->MinTime(0.5);
    benchmark::RegisterBenchmark(("SGemv/" + n).c_str(), BM_SGemv, &s, false)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->MinTime(0.5);
    benchmark::RegisterBenchmark(("QGemvHot/" + n).c_str(), BM_QGemv, &s, true)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->MinTime(0.3);
    benchmark::RegisterBenchmark(("QGemm512/" + n).c_str(), BM_QGemm, &s)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->MinTime(1.0);
    benchmark::RegisterBenchmark(("SGemm512/" + n).c_str(), BM_SGemm, &s)
        ->Arg(1)
        ->Arg(2)
        ->UseRealTime()
        ->MinTime(1.0);
  }
}

double get(const std::string& k) {
  auto it = results().find(k);
  return it == results().end() ? NAN : it->second;
}

void print_summary() {
  std::printf("\n== summary (isa %s; 4-bit g128; ratios > 1 favour the quantized kernel) ==\n",
              std::string(gptq::backend::isa_name(gptq::backend::active_isa())).c_str());
  for (int t : {1, 2}) {
    const double bw = get("read_bw/" + std::to_string(t));
    std::printf("\nthreads %d   read bandwidth (summing loop, %lld MB): %.1f GB/s\n", t,
                static_cast<long long>(kColdBytes >> 20), bw);
    std::printf(
        "%-8s | decode GB/s  /read_bw | hot GB/s | sgemv GB/s  q-vs-fp32 speed | prefill GFLOP/s  "
        "sgemm  ratio\n",
        "shape");
    double q_us = 0, s_us = 0, q_flop_s = 0, flops = 0;
    for (const LinearShape& s : kShapes) {
      const double q = get(key("qgemv", s, t)), hot = get(key("qgemv_hot", s, t)),
                   sg = get(key("sgemv", s, t));
      const double qu = get(key("qgemv_us", s, t)), su = get(key("sgemv_us", s, t));
      const double qg = get(key("qgemm", s, t)), sgm = get(key("sgemm", s, t));
      std::printf("%-8s | %9.1f  %8.2f | %8.1f | %9.1f  %13.2fx | %15.1f  %5.1f  %5.2f\n", s.name,
                  q, q / bw, hot, sg, su / qu, qg, sgm, qg / sgm);
      const double n = kLayers * s.per_layer;
      q_us += n * qu;
      s_us += n * su;
      const double f = n * 2.0 * kPrefillRows * s.n * s.k;
      flops += f;
      q_flop_s += f / (qg * 1e9);
    }
    std::printf(
        "whole model, quantized linears only: decode %.1f tok/s (fp32 sgemv %.1f tok/s); "
        "prefill pp%lld %.1f tok/s\n",
        1e6 / q_us, 1e6 / s_us, static_cast<long long>(kPrefillRows), kPrefillRows / q_flop_s);
    const double f32_us = get(head_key("F32", "_us", t));
    for (const char* dt : {"BF16", "F16"}) {
      const double gbs = get(head_key(dt, "", t));
      const double us = get(head_key(dt, "_us", t));
      std::printf(
          "lm_head %lldx%lld %-4s GEMV (cold): %6.1f GB/s = %.2f of read_bw, %7.0f us; fp32 "
          "dense_gemv %7.0f us (%.1f GB/s): %.2fx faster\n",
          static_cast<long long>(kHeadN), static_cast<long long>(kHeadK), dt, gbs, gbs / bw, us,
          f32_us, get(head_key("F32", "", t)), f32_us / us);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  print_summary();
  benchmark::Shutdown();
  return 0;
}
