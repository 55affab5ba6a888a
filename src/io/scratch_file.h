// A scratch file for data too large to keep in memory (the calibration hidden states): unnamed
// (O_TMPFILE) where the file system allows it, else created under a unique name and unlinked at
// once, so it never outlives the process, whatever way the process ends.
#pragma once

#include <cstdint>
#include <filesystem>

namespace gptq::io {

class ScratchFile {
 public:
  // Creates the file in `dir` (which must exist). Error(kIo) naming the folder otherwise.
  explicit ScratchFile(const std::filesystem::path& dir);
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  // Allocates `bytes` on disk now, so that a full disk is an error here and not hours later
  // (file systems without fallocate: a no-op). Error(kIo) naming the folder and the size.
  void reserve(uint64_t bytes);
  // Whole transfers, resumed after partial ones and signals; reading past what was written is an
  // error. Error(kIo) naming the folder.
  void write_at(uint64_t offset, const void* data, uint64_t n);
  void read_at(uint64_t offset, void* data, uint64_t n) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  int fd_ = -1;
};

}  // namespace gptq::io
