// pipeline::ShardedHessian in a group of one: the Hessian that every rank count must reproduce.
#include "pipeline/sharded_hessian.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "gptq/error.h"
#include "pipeline/quantize_pipeline.h"

namespace gptq::pipeline {
namespace {

std::vector<float> random_rows(int64_t rows, int64_t k, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(rows * k));
  for (auto& v : x) v = d(g);
  return x;
}

TEST(ShardedHessian, ShardSizeDependsOnSampleCountOnly) {
  EXPECT_EQ(shard_samples(1), 8);
  EXPECT_EQ(shard_samples(128), 8);
  EXPECT_EQ(shard_samples(512), 8);
  EXPECT_EQ(shard_samples(513), 9);
  EXPECT_EQ(shard_samples(1024), 16);
}

// One shard is one accumulator: H must be bitwise HessianAccumulator::hessian() (the scaling and
// mirroring of hessian_from_sum are the accumulator's), tail chunk included.
TEST(ShardedHessian, OneShardIsBitwiseTheAccumulator) {
  const int64_t k = 96, rows = 700;  // one full 512-row chunk and a buffered tail
  const auto x = random_rows(rows, k, 1);
  quant::HessianAccumulator a(k);
  ShardedHessian s(k, dist::Group::single());
  for (int64_t r0 = 0; r0 < rows; r0 += 100) {
    a.add(x.data() + r0 * k, 100);
    s.add(0, x.data() + r0 * k, 100);
  }
  const auto ha = a.hessian(), hs = s.reduce(1, rows);
  ASSERT_EQ(ha.size(), hs.size());
  for (size_t i = 0; i < ha.size(); ++i) ASSERT_EQ(ha[i], hs[i]) << i;
}

// Several shards against a naive double sum of x x^T (fp32 chunk products: ~1e-6 relative),
// symmetric exactly, and the same bits as adding the shards' own sums in order by hand.
TEST(ShardedHessian, ShardsSumInOrderToTheNaiveHessian) {
  const int64_t k = 64;
  const std::vector<int64_t> shard_rows = {130, 7, 600, 45};
  std::vector<std::vector<float>> xs;
  int64_t n = 0;
  for (size_t s = 0; s < shard_rows.size(); ++s) {
    xs.push_back(random_rows(shard_rows[s], k, 10 + static_cast<uint32_t>(s)));
    n += shard_rows[s];
  }
  ShardedHessian sh(k, dist::Group::single());
  std::vector<double> naive(static_cast<size_t>(k * k), 0.0), by_hand(static_cast<size_t>(k * k), 0.0);
  for (size_t s = 0; s < xs.size(); ++s) {
    sh.add(static_cast<int64_t>(s), xs[s].data(), shard_rows[s]);
    quant::HessianAccumulator a(k);
    a.add(xs[s].data(), shard_rows[s]);
    const auto raw = a.raw_sum();
    for (size_t i = 0; i < raw.size(); ++i) by_hand[i] += raw[i];
    for (int64_t r = 0; r < shard_rows[s]; ++r) {
      const float* row = xs[s].data() + r * k;
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j < k; ++j) naive[static_cast<size_t>(i * k + j)] += double(row[i]) * double(row[j]);
      }
    }
  }
  const auto h = sh.reduce(static_cast<int64_t>(xs.size()), n);
  const auto expect = quant::HessianAccumulator::hessian_from_sum(by_hand, k, n);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const size_t ij = static_cast<size_t>(i * k + j), ji = static_cast<size_t>(j * k + i);
      ASSERT_EQ(h[ij], h[ji]);
      ASSERT_EQ(h[ij], expect[ij]);
      const double want = 2.0 * naive[ij] / static_cast<double>(n);
      ASSERT_NEAR(h[ij], want, 1e-5 * (1.0 + std::fabs(want))) << i << "," << j;
    }
  }
}

TEST(ShardedHessian, NoTokensGivesZeros) {
  ShardedHessian s(32, dist::Group::single());
  for (double v : s.reduce(3, 0)) ASSERT_EQ(v, 0.0);
}

TEST(DistWire, LayerResultsRoundTrip) {
  ModuleReport r;
  r.module = "model.layers.1.mlp.down_proj";
  r.bits = 3, r.group_size = 64, r.n = 32, r.k = 64, r.loss = 1.25, r.damp = 0.02, r.seconds = 0.5;
  r.note.push_back('x');  // not r.note = "x": GCC 12 -Wrestrict misfires on that assignment
  checkpoint::PackedLinear p;
  p.module = r.module, p.n = 32, p.k = 64, p.groups = 1, p.bits = 3;
  p.qweight = {1, -2, 3}, p.qzeros = {4}, p.scales = {0x3c00, 0x4000}, p.g_idx = {0, 0}, p.bias = {};
  const auto bytes = encode_results({r}, {p});
  std::vector<ModuleReport> rs;
  std::vector<checkpoint::PackedLinear> ps;
  decode_results(bytes, rs, ps);
  ASSERT_EQ(rs.size(), 1u);
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(rs[0].module, r.module);
  EXPECT_EQ(rs[0].loss, 1.25);
  EXPECT_EQ(rs[0].note, "x");
  EXPECT_EQ(ps[0].qweight, p.qweight);
  EXPECT_EQ(ps[0].scales, p.scales);
  EXPECT_EQ(ps[0].bits, 3);
  auto cut = bytes;
  cut.pop_back();
  EXPECT_THROW(decode_results(cut, rs, ps), Error);
}

}  // namespace
}  // namespace gptq::pipeline
