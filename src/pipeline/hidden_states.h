// The calibration hidden states between decoder layers: one [T_s, D] fp32 matrix per sample this
// rank keeps, in memory or in a scratch file (io::ScratchFile), whose resident set is then one
// sample's buffer however many samples there are (128 x 2048 tokens of a 2048-wide model: 2 GiB).
// Both hold the same fp32 values, so where they live never changes the output.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "io/scratch_file.h"

namespace gptq::pipeline {

class HiddenStates {
 public:
  HiddenStates() = default;
  // rows[s]: T_s for a sample this rank keeps, 0 for the others. `spill_dir` empty: in memory;
  // else a scratch file there, its whole size allocated now (a full disk fails here).
  HiddenStates(std::vector<int64_t> rows, int64_t width, const std::filesystem::path& spill_dir);

  int64_t rows(size_t s) const { return rows_[s]; }
  int64_t width() const { return width_; }
  bool spilled() const { return file_ != nullptr; }
  uint64_t bytes() const;

  // Sample s's matrix in memory, to update in place; nullptr when spilled.
  float* in_memory(size_t s) { return file_ ? nullptr : mem_[s].data(); }
  // Copies sample s out (rows(s) x width floats) / in.
  void read(size_t s, float* dst) const;
  void write(size_t s, const float* src);

 private:
  std::vector<int64_t> rows_;
  int64_t width_ = 0;
  std::vector<uint64_t> offset_;            // spilled: byte offset of each sample in the file
  std::vector<std::vector<float>> mem_;     // in memory
  std::unique_ptr<io::ScratchFile> file_;
};

}  // namespace gptq::pipeline
