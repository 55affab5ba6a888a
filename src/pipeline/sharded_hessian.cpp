#include "pipeline/sharded_hessian.h"

#include <fmt/format.h>

#include <algorithm>

#include "gptq/error.h"

namespace gptq::pipeline {

int64_t shard_samples(int64_t nsamples) { return std::max<int64_t>(8, (nsamples + 63) / 64); }

ShardedHessian::ShardedHessian(int64_t k, const dist::Group& group, quant::CalibDtype dtype)
    : k_(k), group_(group), dtype_(dtype) {
  if (k < 1) throw Error(ErrorKind::kArgument, fmt::format("ShardedHessian: K = {} must be >= 1", k));
}

void ShardedHessian::add(int64_t shard, const float* x, int64_t rows) {
  if (shard < shard_) {
    throw Error(ErrorKind::kArgument, fmt::format("ShardedHessian: shard {} after shard {}", shard, shard_));
  }
  if (shard != shard_) {
    end_shard();
    shard_ = shard;
    cur_.emplace(k_, dtype_);
  }
  cur_->add(x, rows);
}

namespace {
void add_into(std::vector<double>& total, const std::vector<double>& part) {
  for (size_t i = 0; i < total.size(); ++i) total[i] += part[i];
}
}  // namespace

void ShardedHessian::end_shard() {
  if (!cur_) return;
  std::vector<double> s = cur_->raw_sum();
  cur_.reset();
  if (group_.size() == 1) {
    if (total_.empty()) total_.assign(s.size(), 0.0);
    add_into(total_, s);
  } else {
    mine_[shard_] = std::move(s);
  }
}

std::vector<double> ShardedHessian::reduce(int64_t nshards, int64_t tokens, int to) {
  end_shard();
  const size_t kk = static_cast<size_t>(k_ * k_);
  if (group_.size() == 1) {
    if (total_.empty()) total_.assign(kk, 0.0);
    return quant::HessianAccumulator::hessian_from_sum(std::move(total_), k_, tokens);
  }
  const int n = group_.size();
  if (to < 0 || to >= n) {
    throw Error(ErrorKind::kArgument, fmt::format("ShardedHessian: reduce to rank {} in a group of {}", to, n));
  }
  if (group_.rank() != to) {
    for (int64_t s = group_.rank(); s < nshards; s += n) {
      auto it = mine_.find(s);
      if (it == mine_.end()) it = mine_.emplace(s, std::vector<double>(kk, 0.0)).first;  // no tokens
      group_.send(it->second.data(), kk * sizeof(double), to, static_cast<int>(s));
      it->second = {};
    }
    mine_.clear();
    return {};
  }
  std::vector<double> total(kk, 0.0), buf;
  for (int64_t s = 0; s < nshards; ++s) {
    const int owner = static_cast<int>(s % n);
    if (owner == to) {
      auto it = mine_.find(s);
      if (it != mine_.end()) add_into(total, it->second);
      mine_.erase(s);
    } else {
      buf.resize(kk);
      group_.recv(buf.data(), kk * sizeof(double), owner, static_cast<int>(s));
      add_into(total, buf);
    }
  }
  return quant::HessianAccumulator::hessian_from_sum(std::move(total), k_, tokens);
}

}  // namespace gptq::pipeline
