// Hessians from canonical calibration shards, summed in a fixed order, so that H is bitwise the
// same for every number of ranks (docs/distributed.md).
//
// The samples are cut into consecutive shards of shard_samples(nsamples) samples, a rule that
// depends on nsamples alone. Each shard's sum of x x^T is accumulated from zero over its samples
// in order (one quant::HessianAccumulator), and H = 2/n * (((0 + S_0) + S_1) + ...), shard by
// shard in double. One process adds each shard into a running total as it ends; in a group of
// N ranks, shard s belongs to rank s % N, which keeps its shard sums until rank 0 collects them
// in shard order and adds them the same way (or another rank
// does, for a solve on that rank: --distribute-solve).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "dist/dist.h"
#include "quant/quantizer.h"

namespace gptq::pipeline {

// Samples per shard: max(8, ceil(nsamples / 64)), so at most 64 shards.
int64_t shard_samples(int64_t nsamples);

// The Hessian of one input slot (one fold of the damp search) over the shards a rank owns.
class ShardedHessian {
 public:
  ShardedHessian(int64_t k, const dist::Group& group, quant::CalibDtype dtype = quant::CalibDtype::kFp32);
  int64_t k() const { return k_; }
  // Adds x [rows, K] to shard `shard`; shards come in increasing order.
  void add(int64_t shard, const float* x, int64_t rows);
  // Ends the current shard (call once all samples are in).
  void end_shard();
  // Collective over the group (every rank calls it for the same slots in the same order, with
  // the same `to`): H over all nshards shards, scaled by 2/tokens (the fold's tokens over every
  // rank), on rank `to`, which adds the shard sums in shard order; empty on the others.
  std::vector<double> reduce(int64_t nshards, int64_t tokens, int to = 0);

 private:
  int64_t k_;
  dist::Group group_;
  quant::CalibDtype dtype_;
  int64_t shard_ = -1;
  std::optional<quant::HessianAccumulator> cur_;
  std::vector<double> total_;                      // one process: the running sum
  std::map<int64_t, std::vector<double>> mine_;    // several: this rank's shard sums
};

}  // namespace gptq::pipeline
