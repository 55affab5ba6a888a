// QLinear (src/backend/cpu/qlinear.h) on every ISA against an independent reference: random codes,
// scales and zero points are packed into the GPTQ on-disk layout (SPEC §1) by the small packer
// below, and the expected y is a naive dequantize-then-matmul in double computed from the unpacked
// values, never from the kernels' layout.

#include "backend/cpu/qgemm_kernels.h"
#include "backend/cpu/qlinear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/isa.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/quantizer.h"

namespace gptq::backend {
namespace {

// ---- GPTQ packing, written here from SPEC §1 ----
// The layers below are packed with gptq::quant::pack_qweight / pack_qzeros (what the checkpoint
// writer uses). This second, independent packer cross-checks that code (QLinearTestPacker tests),
// so a bug there cannot hide one in the kernels by cancelling out.

// Sets field j (b bits) of the little-endian bit stream held by words(0), words(1), ...
template <typename WordRef>
void set_field(WordRef words, int bits, int64_t j, uint32_t value) {
  const int64_t bit = j * bits;
  const int off = static_cast<int>(bit % 32);
  words(bit / 32) |= value << off;
  if (off + bits > 32) words(bit / 32 + 1) |= value >> (32 - off);
}

// codes [N, K] -> qweight [ceil(K*b/32), N]. K need not be a multiple of 32: the fields of the
// last word past K stay 0, as GPTQModel's pack_original leaves them.
std::vector<int32_t> pack_qweight(const std::vector<uint8_t>& codes, int64_t n, int64_t k,
                                  int bits) {
  std::vector<uint32_t> q(static_cast<size_t>((k * bits + 31) / 32 * n), 0u);
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t i = 0; i < k; ++i) {
      set_field([&](int64_t r) -> uint32_t& { return q[r * n + c]; }, bits, i, codes[c * k + i]);
    }
  }
  std::vector<int32_t> out(q.size());
  std::memcpy(out.data(), q.data(), q.size() * 4);
  return out;
}

// stored zero points [G, N] -> qzeros [G, N*b/32].
std::vector<int32_t> pack_qzeros(const std::vector<int32_t>& stored, int64_t g, int64_t n,
                                 int bits) {
  const int64_t row = n * bits / 32;
  std::vector<uint32_t> q(static_cast<size_t>(g * row), 0u);
  for (int64_t i = 0; i < g; ++i) {
    for (int64_t c = 0; c < n; ++c) {
      set_field([&](int64_t w) -> uint32_t& { return q[i * row + w]; }, bits, c,
                static_cast<uint32_t>(stored[i * n + c]));
    }
  }
  std::vector<int32_t> out(q.size());
  std::memcpy(out.data(), q.data(), q.size() * 4);
  return out;
}

// ---- a random GPTQ layer ----
struct LayerSpec {
  int64_t n = 32, k = 96;
  int bits = 4;
  int group_size = 128;
  bool sym = true;
  bool v2 = false;
  bool act_order = false;
  bool bias = false;
  uint32_t seed = 1;
};

struct Layer {
  LayerSpec spec;
  int64_t n_groups = 0;
  std::vector<uint8_t> codes;  // [N, K]
  std::vector<float> scales;   // [G, N] values of the fp16 scales
  std::vector<int32_t> zeros;  // [G, N] true zero points
  std::vector<int32_t> g_idx;  // [K]
  std::vector<int32_t> qweight, qzeros;
  std::vector<uint16_t> scales_fp16, bias_fp16;
  std::vector<float> bias;  // [N] values of the fp16 bias

  QuantizedLinearView view() const {
    QuantizedLinearView v;
    v.n = spec.n;
    v.k = spec.k;
    v.bits = spec.bits;
    v.group_size = spec.group_size;
    v.qweight = qweight.data();
    v.qzeros = qzeros.data();
    v.scales = scales_fp16.data();
    v.g_idx = g_idx.data();
    v.zeros_v2 = spec.v2;
    v.bias_fp16 = spec.bias ? bias_fp16.data() : nullptr;
    return v;
  }
  // Reference W[n, k] = s * (q - z), in double.
  double w(int64_t n, int64_t k) const {
    const int64_t g = g_idx[k];
    return static_cast<double>(scales[g * spec.n + n]) *
           (codes[n * spec.k + k] - zeros[g * spec.n + n]);
  }
};

Layer make_layer(const LayerSpec& spec) {
  Layer l;
  l.spec = spec;
  const int64_t n = spec.n, k = spec.k;
  const int64_t g = spec.group_size == -1 ? k : spec.group_size;
  l.n_groups = (k + g - 1) / g;
  std::mt19937 rng(spec.seed);
  const int maxq = (1 << spec.bits) - 1;
  std::uniform_int_distribution<int> code(0, maxq);
  l.codes.resize(static_cast<size_t>(n * k));
  for (auto& c : l.codes) c = static_cast<uint8_t>(code(rng));
  // Scales: positive, varied over two orders of magnitude, rounded to fp16 as checkpoints are.
  std::uniform_real_distribution<float> log_scale(-7.0f, -2.5f);
  l.scales_fp16.resize(static_cast<size_t>(l.n_groups * n));
  l.scales.resize(l.scales_fp16.size());
  for (size_t i = 0; i < l.scales.size(); ++i) {
    l.scales_fp16[i] = core::fp32_to_fp16(std::exp(log_scale(rng)));
    l.scales[i] = core::fp16_to_fp32(l.scales_fp16[i]);
  }
  // Zero points: symmetric 2^(b-1); asymmetric v2 anywhere in [0, 2^b - 1]; asymmetric v1 in
  // [1, 2^b] (v1 stores z - 1, so 0 is impossible and 2^b is possible).
  std::uniform_int_distribution<int> zero_v2(0, maxq), zero_v1(1, maxq + 1);
  l.zeros.resize(static_cast<size_t>(l.n_groups * n));
  std::vector<int32_t> stored(l.zeros.size());
  for (size_t i = 0; i < l.zeros.size(); ++i) {
    l.zeros[i] = spec.sym ? (1 << (spec.bits - 1)) : (spec.v2 ? zero_v2(rng) : zero_v1(rng));
    stored[i] = spec.v2 ? l.zeros[i] : l.zeros[i] - 1;
  }
  // g_idx: k / g, or as act-order files without static groups write it: groups follow a random
  // processing order, g_idx[k] = (position of k in that order) / g.
  l.g_idx.resize(static_cast<size_t>(k));
  if (spec.act_order) {
    std::vector<int32_t> order(static_cast<size_t>(k));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t p = 0; p < k; ++p) l.g_idx[order[p]] = static_cast<int32_t>(p / g);
  } else {
    for (int64_t i = 0; i < k; ++i) l.g_idx[i] = static_cast<int32_t>(i / g);
  }
  if (spec.bias) {
    std::normal_distribution<float> b(0.0f, 0.5f);
    l.bias_fp16.resize(static_cast<size_t>(n));
    l.bias.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      l.bias_fp16[i] = core::fp32_to_fp16(b(rng));
      l.bias[i] = core::fp16_to_fp32(l.bias_fp16[i]);
    }
  }
  // quant::pack_qweight (our writer's) takes whole packs of 32 inputs only; other K are packed
  // by this file's packer, as GPTQModel writes them.
  l.qweight = k % 32 == 0 ? quant::pack_qweight(l.codes.data(), n, k, spec.bits)
                          : pack_qweight(l.codes, n, k, spec.bits);
  l.qzeros = quant::pack_qzeros(stored.data(), l.n_groups, n, spec.bits);
  return l;
}

std::vector<float> random_x(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = d(rng);
  return x;
}

// Checks y [m, N] against the double reference. The error allowed for y[r, n] is
// tol * sum_k |W[n, k] x[r, k]| (the scale of the rounding errors of any summation order) plus a
// tiny absolute term for outputs whose terms are all zero. Kernels that round the activations
// (x_round > 0: each x[r, k] may move by up to x_round * max_k |x[r, k]|) get that error's bound
// on top: x_round * max_k |x[r, k]| * sum_k |W[n, k]|.
void expect_matches_reference(const Layer& l, const std::vector<float>& x, int64_t m,
                              const std::vector<float>& y, double tol, const std::string& what,
                              double x_round = 0) {
  const int64_t n = l.spec.n, k = l.spec.k;
  // Dequantize once: [N, K] in double.
  std::vector<double> w(static_cast<size_t>(n * k));
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i) w[c * k + i] = l.w(c, i);
  int bad = 0;
  double worst = 0;
  for (int64_t r = 0; r < m; ++r) {
    double x_max = 0;
    for (int64_t i = 0; i < k; ++i) x_max = std::max(x_max, std::fabs(double{x[r * k + i]}));
    for (int64_t c = 0; c < n; ++c) {
      double ref = l.spec.bias ? l.bias[c] : 0.0, mag = l.spec.bias ? std::fabs(l.bias[c]) : 0.0;
      double w_abs = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double t = w[c * k + i] * x[r * k + i];
        ref += t;
        mag += std::fabs(t);
        w_abs += std::fabs(w[c * k + i]);
      }
      const double err = std::fabs(y[r * n + c] - ref);
      const double allowed = tol * mag + x_round * x_max * w_abs + 1e-30;
      worst = std::max(worst, err / (mag + 1e-30));
      if (!(err <= allowed) && bad++ < 5) {
        ADD_FAILURE() << what << ": y[" << r << ", " << c << "] = " << y[r * n + c] << ", expected "
                      << ref << " (error " << err << " > " << allowed << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " outputs out of tolerance; worst relative error "
                    << worst;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", worst);
  ::testing::Test::RecordProperty("worst_relative_error", buf);
}

// Runs the body with `isa` active and restores the previous choice.
class IsaScope {
 public:
  explicit IsaScope(Isa isa) : saved_(active_isa()) { set_isa_for_testing(isa); }
  ~IsaScope() { set_isa_for_testing(saved_); }

 private:
  Isa saved_;
};

// True (and says so once per ISA on stdout) when this CPU cannot run `isa`'s kernels.
bool skip_isa(Isa isa) {
  if (cpu_supports(isa)) return false;
  static bool said[8] = {};
  bool& s = said[static_cast<int>(isa)];
  if (!s) std::printf("note: %s kernels skipped: this CPU lacks them\n", std::string(isa_name(isa)).c_str());
  s = true;
  return true;
}

// Tolerances, relative to sum_k |W[n,k] x[k]| per output (observed worst cases over this file's
// cases in brackets, so the margins are visible):
//  - scalar: sums in double, then rounds to fp32 once: 5e-7 is ~4 fp32 ulps [6e-8].
//  - AVX2 GEMM (m > 4): exact fp32 weights, fp32 FMA chains of <= 256 terms per chunk [4.3e-7].
//  - AVX2 GEMV (m <= 4): sums q * x in fp32 per group and folds scale and zero point afterwards,
//    s * (q.x - z * sum x), whose terms can exceed sum |W x| by ~2x (q against q - z) [3.3e-7].
//  Both AVX2 paths get 4e-6: about 30 fp32 ulps, ~10x the worst seen, still far below what any
//  wrong code, scale, zero point or permutation produces (>= 1e-3).
//  - AMX GEMM (m >= 32 on the amx level): x and W each split in two bf16 parts, three products
//    of the four (qgemm_amx.cpp); each product within ~3 * 2^-18 of x w, and tdpbf16ps' own
//    fp32 sums [5.3e-6]. 3e-5, ~6x the worst seen, and still 30x below a wrong code.
double tolerance(Isa isa, int64_t m) {
  if (isa == Isa::kAmx && m >= backend::detail::kAmxMinRows) return 3e-5;
  return isa == Isa::kScalar ? 5e-7 : 4e-6;
}

// The AVX2 decode kernel for 2-, 4- and 8-bit weights (m <= 4) rounds x to 16-bit integers per
// unit of 32 inputs: |x - d * xi| <= d / 2 = (unit max |x|) / 65534 <= (row max |x|) / 65534.
// Relative to sum |W x| this is ~1e-4 here (row max ~4, mean |x| ~0.8), still 10x below what a
// wrong code, scale or zero point produces. At the AVX-512 levels the prefill GEMM for those
// widths rounds x the same way (qgemm_i16_avx512), except where the AMX kernel takes the rows.
// Every other path computes with x as given.
double x_rounding(Isa isa, int bits, int64_t m) {
  if (!uses_avx2(isa) || bits == 3) return 0.0;
  const bool rounds = m <= 4 || (uses_avx512(isa) && !(isa == Isa::kAmx && m >= backend::detail::kAmxMinRows));
  return rounds ? 1.0 / 65534.0 : 0.0;
}

// ---- the big parameterized comparison: ISA x bits x group x sym x v1/v2 x act-order x m x shape
struct Shape2 {
  int64_t k, n;
};

using Params = std::tuple<Isa, int, int, bool, bool, bool, int, Shape2>;

class QLinearVsReference : public ::testing::TestWithParam<Params> {};

TEST_P(QLinearVsReference, ForwardMatchesDoubleReference) {
  const auto [isa, bits, group, sym, v2, act, m, shape] = GetParam();
  if (skip_isa(isa)) GTEST_SKIP() << "CPU lacks " << isa_name(isa);
  IsaScope scope(isa);
  LayerSpec spec;
  spec.k = shape.k;
  spec.n = shape.n;
  spec.bits = bits;
  spec.group_size = group;
  spec.sym = sym;
  spec.v2 = v2;
  spec.act_order = act;
  spec.bias = !sym;  // half of the cases carry a bias
  spec.seed = static_cast<uint32_t>(bits * 1000003 + (group + 7) * 7919 + sym * 31 + v2 * 17 +
                                    act * 5 + shape.k);
  const Layer l = make_layer(spec);
  const QLinear q = QLinear::create(l.view(), "model.layers.0.mlp.up_proj");
  const std::vector<float> x = random_x(m, spec.k, spec.seed + static_cast<uint32_t>(m));
  std::vector<float> y(static_cast<size_t>(m * spec.n), std::nanf(""));
  q.forward(x.data(), m, y.data());
  expect_matches_reference(l, x, m, y, tolerance(isa, m), std::string(isa_name(isa)),
                           x_rounding(isa, bits, m));
  if (m == 1) {
    // The repacking must preserve every weight exactly: s * (q - z) is exact in fp32.
    const std::vector<float> deq = q.dequantize();
    int64_t mismatches = 0;
    for (int64_t c = 0; c < spec.n; ++c)
      for (int64_t i = 0; i < spec.k; ++i)
        mismatches += deq[c * spec.k + i] != static_cast<float>(l.w(c, i));
    EXPECT_EQ(mismatches, 0);
  }
}

std::string param_name(const ::testing::TestParamInfo<Params>& info) {
  const auto [isa, bits, group, sym, v2, act, m, shape] = info.param;
  return std::string(isa_name(isa)) + "_b" + std::to_string(bits) + "_g" +
         (group < 0 ? std::string("all") : std::to_string(group)) + (sym ? "_sym" : "_asym") +
         (v2 ? "_v2" : "_v1") + (act ? "_act" : "_seq") + "_m" + std::to_string(m) + "_K" +
         std::to_string(shape.k) + "_N" + std::to_string(shape.n);
}

INSTANTIATE_TEST_SUITE_P(
    All, QLinearVsReference,
    ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx), ::testing::Values(2, 3, 4, 8),
                       ::testing::Values(-1, 32, 64, 128), ::testing::Bool(), ::testing::Bool(),
                       ::testing::Bool(), ::testing::Values(1, 3, 17, 64),
                       // K, N multiples of 32 but not of 64/128; K = 96 with g = 128 is one partial
                       // group, K = 352 with g = 128 ends in a partial group of 96.
                       ::testing::Values(Shape2{96, 160}, Shape2{4096, 32}, Shape2{352, 96})),
    param_name);

// ---- more shapes of the kernels' edges ----

// Every row count of the GEMM microkernel remainder (m % 6) and of the GEMV (m <= 4).
TEST(QLinear, EveryRowCountOnEveryIsa) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    IsaScope scope(isa);
    for (int bits : {3, 4}) {
      LayerSpec spec;
      spec.k = 288;
      spec.n = 64;
      spec.bits = bits;
      spec.group_size = 32;
      spec.sym = false;
      spec.v2 = true;
      const Layer l = make_layer(spec);
      const QLinear q = QLinear::create(l.view(), "layer");
      for (int64_t m = 1; m <= 14; ++m) {
        const std::vector<float> x = random_x(m, spec.k, static_cast<uint32_t>(m));
        std::vector<float> y(static_cast<size_t>(m * spec.n));
        q.forward(x.data(), m, y.data());
        expect_matches_reference(l, x, m, y, tolerance(isa, m),
                                 std::string(isa_name(isa)) + " m=" + std::to_string(m) +
                                     " bits=" + std::to_string(bits),
                                 x_rounding(isa, bits, m));
      }
    }
  }
}

// Group sizes that are not multiples of 32 make the packer pad each group; g_idx omitted means k/g.
TEST(QLinear, GroupsThatNeedPaddingAndImplicitGIdx) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    IsaScope scope(isa);
    for (int group : {16, 48, 100}) {
      for (bool act : {false, true}) {
        LayerSpec spec;
        spec.k = 320;
        spec.n = 64;
        spec.bits = 4;
        spec.group_size = group;
        spec.act_order = act;
        spec.sym = false;
        spec.v2 = true;
        const Layer l = make_layer(spec);
        QuantizedLinearView v = l.view();
        if (!act) v.g_idx = nullptr;
        const QLinear q = QLinear::create(v, "layer");
        EXPECT_TRUE(q.permuted());
        for (int64_t m : {1, 2, 9}) {
          const std::vector<float> x = random_x(m, spec.k, 7);
          std::vector<float> y(static_cast<size_t>(m * spec.n));
          q.forward(x.data(), m, y.data());
          expect_matches_reference(l, x, m, y, tolerance(isa, m),
                                   std::string(isa_name(isa)) + " g=" + std::to_string(group),
                                   x_rounding(isa, spec.bits, m));
        }
      }
    }
  }
}

// K not a multiple of 32 (stories260k's down_proj as GPTQModel quantizes it: K = 172, qweight
// [ceil(K*b/32), N], 6 groups of 32 of which the last holds 12 inputs): the repacker pads the last
// group. Whatever the fields past K of the part-filled last word hold is ignored, as GPTQModel's
// dequantize_weight ignores it (they are set to all ones here).
TEST(QLinear, KNotAMultipleOf32AsGptqModelPacksIt) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    IsaScope scope(isa);
    for (int bits : {2, 3, 4, 8}) {
      for (int group : {32, -1, 48}) {
        for (bool act : {false, true}) {
          LayerSpec spec;
          spec.k = 172;
          spec.n = 64;
          spec.bits = bits;
          spec.group_size = group;
          spec.act_order = act;
          spec.sym = act;
          spec.v2 = !act;
          spec.seed = static_cast<uint32_t>(bits * 31 + group + act);
          Layer l = make_layer(spec);
          ASSERT_EQ(l.qweight.size(), static_cast<size_t>((172 * bits + 31) / 32 * 64));
          const int64_t used = 172 * bits - (172 * bits + 31) / 32 * 32 + 32;  // bits of the last row in use
          const uint32_t pad = used == 32 ? 0u : ~((uint32_t{1} << used) - 1u);
          for (int64_t c = 0; c < 64; ++c) l.qweight[l.qweight.size() - 64 + c] |= static_cast<int32_t>(pad);
          const QLinear q = QLinear::create(l.view(), "model.layers.0.mlp.down_proj");
          EXPECT_TRUE(q.permuted());
          const std::string what = std::string(isa_name(isa)) + " b" + std::to_string(bits) + " g" +
                                   std::to_string(group) + (act ? " act" : "");
          const std::vector<float> deq = q.dequantize();
          int64_t mismatches = 0;
          for (int64_t c = 0; c < spec.n; ++c)
            for (int64_t i = 0; i < spec.k; ++i)
              mismatches += deq[c * spec.k + i] != static_cast<float>(l.w(c, i));
          EXPECT_EQ(mismatches, 0) << what;
          for (int64_t m : {1, 3, 9}) {
            const std::vector<float> x = random_x(m, spec.k, 11);
            std::vector<float> y(static_cast<size_t>(m * spec.n));
            q.forward(x.data(), m, y.data());
            expect_matches_reference(l, x, m, y, tolerance(isa, m), what, x_rounding(isa, bits, m));
          }
        }
      }
    }
  }
}

// Results must not depend on the thread count (bit for bit), on either ISA and either kernel.
TEST(QLinear, ThreadCountDoesNotChangeResults) {
  const int saved = core::num_threads();
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    IsaScope scope(isa);
    for (int bits : {2, 3, 4, 8}) {
      LayerSpec spec;
      spec.k = 512;
      // 76 blocks: uneven splits over 3 threads, decode chunks of 32 blocks and a remainder of
      // 12, GEMV tiles of 4 and remainders.
      spec.n = 608;
      spec.bits = bits;
      spec.group_size = 128;
      spec.act_order = true;
      const Layer l = make_layer(spec);
      const QLinear q = QLinear::create(l.view(), "layer");
      for (int64_t m : {1, 2, 4, 17}) {
        const std::vector<float> x = random_x(m, spec.k, 3);
        std::vector<float> y1(static_cast<size_t>(m * spec.n)), yt(y1.size());
        core::set_num_threads(1);
        q.forward(x.data(), m, y1.data());
        for (int threads : {2, 3, 5}) {
          core::set_num_threads(threads);
          q.forward(x.data(), m, yt.data());
          EXPECT_EQ(0, std::memcmp(y1.data(), yt.data(), y1.size() * sizeof(float)))
              << isa_name(isa) << " bits=" << bits << " m=" << m << " threads=" << threads;
        }
      }
    }
  }
  core::set_num_threads(saved);
}

// The AVX2 decode kernel for 2/4/8 bits must compute exactly sum_k W[n, k] * xr[k], where xr is
// x rounded the documented way (qgemm_kernels.h): per unit of 32 inputs, d = max|x| / 32767 and
// xi = nearest integer to x * (32767 / max|x|). Emulating that rounding here (inputs in file
// order: no act-order, groups of multiples of 32, so units are consecutive inputs) leaves only
// fp32 summation error, so the tolerance is the tight one; a wrong pair layout, a dropped unit
// scale or a zero-point term computed from the unrounded x would all fail it.
TEST(QLinear, Int16DecodeEqualsProductWithRoundedX) {
  for (Isa isa : {Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512}) {
  if (skip_isa(isa)) continue;
  IsaScope scope(isa);
  for (int bits : {2, 4, 8}) {
    for (int group : {-1, 32, 128}) {
      LayerSpec spec;
      spec.k = 384;
      spec.n = 96;
      spec.bits = bits;
      spec.group_size = group;
      spec.sym = false;
      spec.v2 = bits != 8;
      spec.seed = static_cast<uint32_t>(bits * 31 + group);
      const Layer l = make_layer(spec);
      const QLinear q = QLinear::create(l.view(), "layer");
      ASSERT_FALSE(q.permuted());
      for (int64_t m : {1, 3}) {
        std::vector<float> x = random_x(m, spec.k, static_cast<uint32_t>(m + bits));
        x[5] = 1e-3f;  // a unit with one tiny and many ordinary values
        for (int i = 64; i < 96; ++i) x[i] = 0.0f;  // an all-zero unit
        std::vector<float> xr(x.size());
        for (size_t u = 0; u < x.size() / 32; ++u) {
          float mx = 0;
          for (int i = 0; i < 32; ++i) mx = std::max(mx, std::fabs(x[u * 32 + i]));
          const float d = mx / 32767.0f, inv = mx > 0 ? 32767.0f / mx : 0.0f;
          for (int i = 0; i < 32; ++i) {
            const float xi = std::nearbyint(std::clamp(x[u * 32 + i] * inv, -32767.0f, 32767.0f));
            xr[u * 32 + i] = static_cast<float>(static_cast<double>(d) * xi);
          }
        }
        std::vector<float> y(static_cast<size_t>(m * spec.n));
        q.forward(x.data(), m, y.data());
        expect_matches_reference(l, xr, m, y, tolerance(isa, m),
                                 std::string(isa_name(isa)) + " bits=" + std::to_string(bits) +
                                     " g=" + std::to_string(group) + " m=" + std::to_string(m));
      }
    }
  }
  }
}

// vpdpwssd and vpmaddwd + vpaddd compute the same exact integer sums, and every decode kernel
// converts and scales them in the same order per column: they must agree bit for bit, whether on
// ymm (AVX-VNNI) or two blocks per zmm (AVX-512). N = 4 blocks (pairs only, below a whole tile),
// 12 (an AVX-512 tile of 8 and two pairs at one row) and 148 (four whole decode
// chunks of 32 blocks and a partial one).
class DecodeEqualsAvx2Decode : public ::testing::TestWithParam<Isa> {};

TEST_P(DecodeEqualsAvx2Decode, BitForBit) {
  const Isa isa = GetParam();
  if (skip_isa(isa)) GTEST_SKIP() << "CPU lacks " << isa_name(isa);
  for (int bits : {2, 4, 8}) {
   for (int64_t n : {32, 96, 1184}) {
    LayerSpec spec;
    spec.k = 640;
    spec.n = n;
    spec.bits = bits;
    spec.group_size = 128;
    spec.act_order = true;
    spec.sym = false;
    const Layer l = make_layer(spec);
    const QLinear q = QLinear::create(l.view(), "layer");
    for (int64_t m = 1; m <= 4; ++m) {
      const std::vector<float> x = random_x(m, spec.k, static_cast<uint32_t>(m * 7 + bits));
      std::vector<float> a(static_cast<size_t>(m * spec.n)), b(a.size());
      {
        IsaScope scope(Isa::kAvx2);
        q.forward(x.data(), m, a.data());
      }
      {
        IsaScope scope(isa);
        q.forward(x.data(), m, b.data());
      }
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << isa_name(isa) << " bits=" << bits << " n=" << n << " m=" << m;
    }
   }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, DecodeEqualsAvx2Decode,
                         ::testing::Values(Isa::kAvxVnni, Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx),
                         [](const ::testing::TestParamInfo<Isa>& i) {
                           return std::string(isa_name(i.param));
                         });

// The layer of the bit-for-bit kernel comparisons below: K = 640 (a partial last group and
// 256-input chunk), groups of 128, act-order except at 2 bits, symmetric at 4 bits.
LayerSpec bit_exact_spec(int64_t n, int bits) {
  LayerSpec spec;
  spec.k = 640;
  spec.n = n;
  spec.bits = bits;
  spec.group_size = 128;
  spec.act_order = bits != 2;
  spec.sym = bits == 4;
  return spec;
}

// The AVX-512 prefill GEMM runs each output's FMA chain in the AVX2 kernel's order (one fused
// multiply-add per input, chunks of 256 added in order), 12 rows and up to 32 columns at a time:
// it must equal the AVX2 GEMM bit for bit, for row counts that leave every remainder of 12, N
// with an odd number of 16-column pairs per thread (N = 96: 6 pairs over 1, 2, 4 threads), and
// K with a partial last chunk (K = 640: 2.5 chunks).
// (At these levels only 3-bit layers take it; 2-, 4- and 8-bit ones take the int16 prefill,
// tested next.)
TEST(QLinear, AvxPrefill512EqualsAvx2PrefillBitForBit) {
  const int saved = core::num_threads();
  for (Isa isa : {Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    {
      const int bits = 3;
      for (int64_t n : {96, 1184}) {
        const LayerSpec spec = bit_exact_spec(n, bits);
        const Layer l = make_layer(spec);
        const QLinear q = QLinear::create(l.view(), "layer");
        for (int64_t m : {5, 11, 12, 13, 24, 31}) {
          const std::vector<float> x = random_x(m, spec.k, static_cast<uint32_t>(m * 5 + bits));
          std::vector<float> a(static_cast<size_t>(m * spec.n)), b(a.size());
          for (int threads : {1, 2, 4}) {
            core::set_num_threads(threads);
            {
              IsaScope scope(Isa::kAvx2);
              q.forward(x.data(), m, a.data());
            }
            {
              IsaScope scope(isa);
              q.forward(x.data(), m, b.data());
            }
            EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
                << isa_name(isa) << " bits=" << bits << " n=" << n << " m=" << m << " threads=" << threads;
          }
        }
      }
    }
  }
  core::set_num_threads(saved);
}

// The AVX-512 int16 prefill (2-, 4- and 8-bit layers, m > 4 at the AVX-512 levels) rounds each
// row's activations as the decode kernels do and sums each output in their order, 8, 4, 2 or 1
// rows per tile: every row of its output must equal, bit for bit, the AVX2 decode kernel's output
// for that row alone. Row counts leave every remainder of 8 and cross its 64-row tasks, N = 96
// and 1184 split unevenly into its 128-column tasks, K = 640 has a partial group, act-order
// permutes the inputs; on 1, 2 and 4 threads. (m < 32, where the amx level also takes it.)
TEST(QLinear, Int16PrefillEqualsDecodeRowByRow) {
  const int saved = core::num_threads();
  for (Isa isa : {Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    for (int bits : {2, 4, 8}) {
      for (int64_t n : {96, 1184}) {
        LayerSpec spec = bit_exact_spec(n, bits);
        spec.bias = bits == 8;
        const Layer l = make_layer(spec);
        const QLinear q = QLinear::create(l.view(), "layer");
        std::vector<int64_t> ms = {5, 7, 8, 9, 15, 22, 31};
        if (isa != Isa::kAmx) ms.insert(ms.end(), {63, 64, 71, 130});
        for (int64_t m : ms) {
          const std::vector<float> x = random_x(m, spec.k, static_cast<uint32_t>(m * 3 + bits));
          std::vector<float> rows(static_cast<size_t>(m * spec.n));
          {
            IsaScope scope(Isa::kAvx2);
            for (int64_t r = 0; r < m; ++r) q.forward(x.data() + r * spec.k, 1, rows.data() + r * spec.n);
          }
          for (int threads : {1, 2, 4}) {
            core::set_num_threads(threads);
            std::vector<float> y(rows.size());
            {
              IsaScope scope(isa);
              q.forward(x.data(), m, y.data());
            }
            EXPECT_EQ(0, std::memcmp(rows.data(), y.data(), y.size() * sizeof(float)))
                << isa_name(isa) << " bits=" << bits << " n=" << n << " m=" << m << " threads=" << threads;
          }
        }
      }
    }
  }
  core::set_num_threads(saved);
}

// The AMX GEMM (m >= 32): row counts at every edge of its 32-row blocks and 256-row chunks,
// N = 96 (three 32-column units, so 1, 2 and 4 threads split them unevenly), K = 640 (a partial
// last 256-input chunk), act-order and v1/v2 zero points; against the double reference, and bit
// for bit the same on 1, 2 and 4 threads.
TEST(QLinear, AmxPrefillMatchesReferenceAndThreadCounts) {
  if (skip_isa(Isa::kAmx)) GTEST_SKIP() << "CPU lacks amx";
  IsaScope scope(Isa::kAmx);
  const int saved = core::num_threads();
  for (int bits : {2, 3, 4, 8}) {
    LayerSpec spec;
    spec.k = 640;
    spec.n = 96;
    spec.bits = bits;
    spec.group_size = bits == 8 ? -1 : 64;
    spec.act_order = bits != 2;
    spec.sym = bits == 4;
    spec.v2 = bits == 3;
    spec.bias = bits == 8;
    spec.seed = static_cast<uint32_t>(bits * 77);
    const Layer l = make_layer(spec);
    const QLinear q = QLinear::create(l.view(), "layer");
    for (int64_t m : {32, 33, 47, 64, 255, 256, 257, 300}) {
      const std::vector<float> x = random_x(m, spec.k, static_cast<uint32_t>(m * 3 + bits));
      std::vector<float> first;
      for (int threads : {1, 2, 4}) {
        core::set_num_threads(threads);
        std::vector<float> y(static_cast<size_t>(m * spec.n), std::nanf(""));
        q.forward(x.data(), m, y.data());
        const std::string what = "amx bits=" + std::to_string(bits) + " m=" + std::to_string(m) +
                                 " threads=" + std::to_string(threads);
        if (first.empty()) {
          expect_matches_reference(l, x, m, y, tolerance(Isa::kAmx, m), what);
          first = y;
        } else {
          EXPECT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << what;
        }
      }
    }
  }
  core::set_num_threads(saved);
}

// Special activations on every path: a NaN or an infinity in x must not turn into a finite output
// (the integer path cannot carry them, so it routes them through the unit scale); values below
// 1e-30 next to zeros must not produce NaN (32767 / max would overflow).
TEST(QLinear, NonFiniteAndTinyActivations) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    IsaScope scope(isa);
    for (int bits : {2, 3, 4, 8}) {
      LayerSpec spec;
      spec.k = 128;
      spec.n = 32;
      spec.bits = bits;
      spec.group_size = 32;
      const Layer l = make_layer(spec);
      const QLinear q = QLinear::create(l.view(), "layer");
      std::vector<float> y(static_cast<size_t>(spec.n));
      const std::string what = std::string(isa_name(isa)) + " bits=" + std::to_string(bits);
      for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
        std::vector<float> x = random_x(1, spec.k, 5);
        x[40] = bad;
        q.forward(x.data(), 1, y.data());
        int64_t finite = 0;
        for (float v : y) finite += std::isfinite(v);
        EXPECT_EQ(finite, 0) << what << " x[40] = " << bad;
      }
      std::vector<float> tiny(static_cast<size_t>(spec.k), 0.0f);
      tiny[3] = 1e-35f;
      tiny[100] = -2e-38f;
      q.forward(tiny.data(), 1, y.data());
      for (float v : y) {
        ASSERT_TRUE(std::isfinite(v)) << what;
        EXPECT_LE(std::fabs(v), 1e-30f) << what;
      }
    }
  }
}

// Layers that share their input (q/k/v, gate/up) run together in forward_shared_input: each
// output must equal that layer's own forward() bit for bit, on every ISA and row count, including
// a 3-bit layer (which takes the fp32 decode kernel on its own) and layers with a bias.
TEST(QLinear, SharedInputEqualsSeparateForwards) {
  std::vector<Layer> specs_layers;
  std::vector<QLinear> qs;
  const int bits_of[] = {4, 4, 3, 8};
  const int64_t n_of[] = {256, 32, 64, 96};
  for (int i = 0; i < 4; ++i) {
    LayerSpec spec;
    spec.k = 384;
    spec.n = n_of[i];
    spec.bits = bits_of[i];
    spec.group_size = 128;
    spec.act_order = i == 1;
    spec.sym = i != 3;
    spec.bias = i == 3;
    spec.seed = static_cast<uint32_t>(100 + i);
    specs_layers.push_back(make_layer(spec));
    qs.push_back(QLinear::create(specs_layers.back().view(), "layer" + std::to_string(i)));
  }
  const std::vector<const QLinear*> layers = {&qs[0], &qs[1], &qs[2], &qs[3]};
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAmx}) {
    if (skip_isa(isa)) continue;
    IsaScope scope(isa);
    for (int64_t m : {1, 3, 4, 9}) {
      const std::vector<float> x = random_x(m, 384, static_cast<uint32_t>(m));
      std::vector<std::vector<float>> sep(4), shared(4);
      std::vector<float*> ys;
      for (int i = 0; i < 4; ++i) {
        sep[i].resize(static_cast<size_t>(m * n_of[i]));
        shared[i].resize(sep[i].size(), std::nanf(""));
        qs[i].forward(x.data(), m, sep[i].data());
        ys.push_back(shared[i].data());
      }
      QLinear::forward_shared_input(layers, x.data(), m, ys);
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(0, std::memcmp(sep[i].data(), shared[i].data(), sep[i].size() * sizeof(float)))
            << isa_name(isa) << " m=" << m << " layer " << i;
      }
    }
  }
  std::vector<float> x(384), y(256);
  std::vector<float*> one = {y.data()};
  EXPECT_THROW(QLinear::forward_shared_input(layers, x.data(), 1, one), Error);
  LayerSpec other;
  other.k = 96;
  const Layer lo = make_layer(other);
  const QLinear qo = QLinear::create(lo.view(), "other");
  const std::vector<const QLinear*> mixed = {&qs[0], &qo};
  std::vector<float> y2(32);
  std::vector<float*> two = {y.data(), y2.data()};
  EXPECT_THROW(QLinear::forward_shared_input(mixed, x.data(), 1, two), Error);
}

// Tensors inside an mmap'd file need not be aligned; create() must read them bytewise.
TEST(QLinear, UnalignedViewPointers) {
  LayerSpec spec;
  spec.k = 128;
  spec.n = 64;
  spec.bits = 3;
  spec.group_size = 64;
  spec.bias = true;
  const Layer l = make_layer(spec);
  auto misalign = [](const void* p, size_t bytes, std::vector<char>& buf) {
    buf.assign(bytes + 3, 0);
    std::memcpy(buf.data() + 1, p, bytes);
    return static_cast<const void*>(buf.data() + 1);
  };
  std::vector<char> bq, bz, bs, bg, bb;
  QuantizedLinearView v = l.view();
  v.qweight = static_cast<const int32_t*>(misalign(l.qweight.data(), l.qweight.size() * 4, bq));
  v.qzeros = static_cast<const int32_t*>(misalign(l.qzeros.data(), l.qzeros.size() * 4, bz));
  v.scales =
      static_cast<const uint16_t*>(misalign(l.scales_fp16.data(), l.scales_fp16.size() * 2, bs));
  v.g_idx = static_cast<const int32_t*>(misalign(l.g_idx.data(), l.g_idx.size() * 4, bg));
  v.bias_fp16 =
      static_cast<const uint16_t*>(misalign(l.bias_fp16.data(), l.bias_fp16.size() * 2, bb));
  const QLinear q = QLinear::create(v, "layer");
  const std::vector<float> x = random_x(1, spec.k, 11);
  std::vector<float> y(static_cast<size_t>(spec.n));
  q.forward(x.data(), 1, y.data());
  expect_matches_reference(l, x, 1, y, tolerance(active_isa(), 1), "unaligned",
                           x_rounding(active_isa(), spec.bits, 1));
}

TEST(QLinear, WeightBytesCountsCodesScalesAndZeros) {
  LayerSpec spec;
  spec.k = 256;
  spec.n = 64;
  spec.bits = 4;
  spec.group_size = 128;
  const Layer l = make_layer(spec);
  const QLinear q = QLinear::create(l.view(), "layer");
  // 4-bit codes + one fp16 scale and one u8 zero per group and column.
  EXPECT_EQ(q.weight_bytes(), size_t{256 * 64 / 2 + 2 * 64 * 2 + 2 * 64});
  EXPECT_FALSE(q.permuted());
}

// ---- the packers against the constants SPEC §1 lists for symmetric v1 zeros, and each other ----
TEST(QLinearTestPacker, SymmetricV1ZeroWordsMatchSpec) {
  for (bool ours : {true, false}) {
    auto words = [&](int bits) {
      std::vector<int32_t> stored(32, (1 << (bits - 1)) - 1);
      std::vector<int32_t> q =
          ours ? pack_qzeros(stored, 1, 32, bits) : quant::pack_qzeros(stored.data(), 1, 32, bits);
      std::vector<uint32_t> u(q.size());
      std::memcpy(u.data(), q.data(), q.size() * 4);
      return u;
    };
    EXPECT_EQ(words(2), (std::vector<uint32_t>{0x55555555u, 0x55555555u})) << ours;
    EXPECT_EQ(words(4)[0], 0x77777777u) << ours;
    EXPECT_EQ(words(8)[0], 0x7F7F7F7Fu) << ours;
    EXPECT_EQ(words(3), (std::vector<uint32_t>{0xDB6DB6DBu, 0xB6DB6DB6u, 0x6DB6DB6Du})) << ours;
  }
}

TEST(QLinearTestPacker, AgreesWithQuantPacker) {
  for (int bits : {2, 3, 4, 8}) {
    LayerSpec spec;
    spec.k = 192;
    spec.n = 96;
    spec.bits = bits;
    spec.group_size = 64;
    spec.sym = false;
    spec.v2 = true;
    const Layer l = make_layer(spec);
    EXPECT_EQ(l.qweight, pack_qweight(l.codes, spec.n, spec.k, bits)) << bits;
    EXPECT_EQ(l.qzeros, pack_qzeros(l.zeros, l.n_groups, spec.n, bits)) << bits;
  }
}

// ---- validation: the right error kind, naming the layer and what was found ----
template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no gptq::Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    for (const auto& s : needles)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what() << " lacks " << s;
  }
}

TEST(QLinearValidation, FiveBitsIsUnsupported) {
  LayerSpec spec;
  const Layer l = make_layer(spec);
  QuantizedLinearView v = l.view();
  v.bits = 5;
  expect_error([&] { QLinear::create(v, "model.layers.3.self_attn.q_proj"); },
               ErrorKind::kUnsupported, {"model.layers.3.self_attn.q_proj", "5-bit"});
}

// K may be any positive size (KNotAMultipleOf32AsGptqModelPacksIt); N must be a multiple of 32.
TEST(QLinearValidation, KNotPositiveOrNNotMultipleOf32) {
  LayerSpec spec;
  const Layer l = make_layer(spec);
  QuantizedLinearView v = l.view();
  v.k = 0;
  expect_error([&] { QLinear::create(v, "blk.o_proj"); }, ErrorKind::kShape,
               {"blk.o_proj", "K = 0", "N = 32"});
  v = l.view();
  v.n = 40;
  expect_error([&] { QLinear::create(v, "blk.o_proj"); }, ErrorKind::kShape,
               {"blk.o_proj", "N = 40"});
}

TEST(QLinearValidation, GIdxOutOfRange) {
  LayerSpec spec;
  spec.k = 256;
  spec.group_size = 64;
  Layer l = make_layer(spec);
  l.g_idx[77] = 4;  // G = 4
  expect_error([&] { QLinear::create(l.view(), "layers.1.mlp.down_proj"); }, ErrorKind::kShape,
               {"layers.1.mlp.down_proj", "g_idx[77] = 4", "G = 4"});
  l.g_idx[77] = -1;
  expect_error([&] { QLinear::create(l.view(), "layers.1.mlp.down_proj"); }, ErrorKind::kShape,
               {"g_idx[77] = -1"});
}

TEST(QLinearValidation, BadGroupSizeAndNullTensors) {
  LayerSpec spec;
  const Layer l = make_layer(spec);
  QuantizedLinearView v = l.view();
  v.group_size = 0;
  expect_error([&] { QLinear::create(v, "x.proj"); }, ErrorKind::kShape,
               {"x.proj", "group size 0"});
  v = l.view();
  v.qzeros = nullptr;
  expect_error([&] { QLinear::create(v, "x.proj"); }, ErrorKind::kArgument, {"x.proj"});
}

// ---- ISA selection ----
constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2,       Isa::kAvxVnni,
                            Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx};

TEST(Isa, EnvironmentValues) {
  EXPECT_EQ(isa_from_env_value("scalar"), Isa::kScalar);
  expect_error([] { isa_from_env_value("avx1024"); }, ErrorKind::kArgument,
               {"GPTQ_FORCE_ISA", "avx1024"});
  expect_error([] { isa_from_env_value("AVX2"); }, ErrorKind::kArgument, {"GPTQ_FORCE_ISA"});
  for (Isa isa : kAllIsas) {
    const std::string name(isa_name(isa));
    if (cpu_supports(isa)) {
      EXPECT_EQ(isa_from_env_value(name), isa) << name;
    } else {
      skip_isa(isa);
      expect_error([&] { isa_from_env_value(name); }, ErrorKind::kUnsupported,
                   {"GPTQ_FORCE_ISA=" + name, "lacks"});
    }
  }
}

// The levels nest (each one's kernels use the level below it), except that AVX-VNNI and AVX-512
// are independent (Zen 4 has AVX-512 VNNI without AVX-VNNI).
TEST(Isa, LevelsNest) {
  EXPECT_TRUE(!cpu_supports(Isa::kAmx) || cpu_supports(Isa::kAvx512Bf16));
  EXPECT_TRUE(!cpu_supports(Isa::kAvx512Bf16) || cpu_supports(Isa::kAvx512));
  EXPECT_TRUE(!cpu_supports(Isa::kAvx512) || cpu_supports(Isa::kAvx2));
  EXPECT_TRUE(!cpu_supports(Isa::kAvxVnni) || cpu_supports(Isa::kAvx2));
  // Without GPTQ_FORCE_ISA, detection picks the highest level the CPU has, AVX-512 before
  // AVX-VNNI (every test restores the ISA it switched).
  if (std::getenv("GPTQ_FORCE_ISA") == nullptr) {
    Isa best = Isa::kScalar;
    for (Isa isa : {Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx})
      if (cpu_supports(isa)) best = isa;
    EXPECT_EQ(active_isa(), best);
  }
}

// Detection against the kernel's own account of the CPU: the flags of /proc/cpuinfo (Linux
// reports a flag only when the OS also enables its register state).
TEST(Isa, DetectionAgreesWithProcCpuinfo) {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string flags;
  char line[8192];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "flags", 5) == 0) {
      flags = std::string(" ") + (std::strchr(line, ':') + 1);
      for (char& c : flags)
        if (c == '\n' || c == '\t') c = ' ';
      break;
    }
  }
  std::fclose(f);
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  auto has = [&](const char* flag) { return flags.find(std::string(" ") + flag + " ") != std::string::npos; };
  const bool avx2 = has("avx2") && has("fma") && has("f16c");
  const bool avx512 = avx2 && has("avx512f") && has("avx512bw") && has("avx512vl") &&
                      has("avx512dq") && has("avx512_vnni");
  const bool bf16 = avx512 && has("avx512_bf16");
  EXPECT_EQ(cpu_supports(Isa::kAvx2), avx2);
  EXPECT_EQ(cpu_supports(Isa::kAvxVnni), avx2 && has("avx_vnni"));
  EXPECT_EQ(cpu_supports(Isa::kAvx512), avx512);
  EXPECT_EQ(cpu_supports(Isa::kAvx512Bf16), bf16);
  const bool amx = bf16 && has("amx_tile") && has("amx_bf16") && has("amx_int8");
  if (!amx) {
    EXPECT_FALSE(cpu_supports(Isa::kAmx));
    EXPECT_FALSE(request_amx_tile_permission());
    std::printf("note: amx not tested: this CPU lacks AMX\n");
  } else {
    // Linux lists the amx flags only when it manages the tile state (5.16 and later), and then
    // grants the permission unless a policy forbids it.
    EXPECT_TRUE(cpu_supports(Isa::kAmx));
    EXPECT_TRUE(request_amx_tile_permission());
  }
}

TEST(Isa, SetForTestingSwitchesPaths) {
  const Isa saved = active_isa();
  set_isa_for_testing(Isa::kScalar);
  EXPECT_EQ(active_isa(), Isa::kScalar);
  if (cpu_supports(Isa::kAvx2)) {
    set_isa_for_testing(Isa::kAvx2);
    EXPECT_EQ(active_isa(), Isa::kAvx2);
  }
  set_isa_for_testing(saved);
}

}  // namespace
}  // namespace gptq::backend
