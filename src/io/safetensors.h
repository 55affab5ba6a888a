// safetensors files: read through mmap (no copy of the file), validated before anything is
// allocated; written atomically (temporary name, fsync, rename).
//
// Format: 8-byte little-endian header length L, then L bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"format": "pt"}}, then the data; offsets are relative to the data start.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gptq/tensor.h"

namespace gptq::io {

// A read-only memory map of a whole file. Movable, not copyable.
class MappedFile {
 public:
  MappedFile() = default;
  // Throws Error(kIo) naming the path if the file cannot be opened or mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }
  // Drops the pages of [p, p + n) from this process's resident set (they stay in the page
  // cache and are read again on the next access). Streaming code calls this after it has copied
  // a tensor, so that reading a model larger than RAM does not grow the RSS. Ranges outside the
  // mapping are ignored.
  void release(const uint8_t* p, uint64_t n) const;

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;                    // as in the header; {} is a scalar
  uint64_t begin = 0;             // byte offset of the data, relative to the data section
  uint64_t nbytes = 0;            // product(shape) * dtype_size(dtype)
  const uint8_t* data = nullptr;  // points into the mapping; valid while the file is open
  const std::filesystem::path* file = nullptr;  // the file it lives in

  int64_t numel() const;
};

// The largest header we accept. Real headers are tens of kilobytes to a few megabytes; the cap
// keeps a hostile length field from making us parse (or allocate for) gigabytes of JSON.
inline constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

// The validated contents of a safetensors image.
struct ParsedSafetensors {
  std::vector<TensorInfo> tensors;  // in order of data offset (ties: by name)
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length: where offset 0 of data_offsets lies
};

// Validates the bytes of a whole safetensors file already in memory (the checks of
// SafetensorsFile::open, which calls this on its mapping). `file` names the file in messages; each
// TensorInfo's data points into `bytes` and its `file` at `file`, so both must outlive the result.
// Throws Error(kFormat) naming the file, the tensor, what was expected and what was found.
ParsedSafetensors parse_safetensors(const uint8_t* bytes, uint64_t size,
                                    const std::filesystem::path& file);

// One .safetensors file. Opening validates the whole header (size cap, JSON, dtypes, shapes,
// offsets inside the file, no overlap, no gap, no duplicates) and throws Error(kFormat) with the
// file, the tensor, what was expected and what was found.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  // A safetensors image held in memory (one received from another process), validated as open
  // validates a file; `name` stands for the file in messages and in path().
  static std::unique_ptr<SafetensorsFile> from_bytes(std::vector<uint8_t> bytes, const std::filesystem::path& name);

  const std::filesystem::path& path() const { return name_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // See MappedFile::release.
  void release(const TensorInfo& t) const { map_.release(t.data, t.nbytes); }

 private:
  SafetensorsFile() = default;
  MappedFile map_;             // a file's mapping, or empty
  std::vector<uint8_t> owned_;  // from_bytes: the image
  std::filesystem::path name_;
  std::vector<TensorInfo> tensors_;  // in order of data offset
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model folder: model.safetensors, or the shards listed in
// model.safetensors.index.json (every shard it names must exist and hold exactly the tensors the
// index maps to it). Files stay mapped while the store lives.
class TensorStore {
 public:
  // Throws Error(kIo) if the folder has neither file, Error(kFormat) for a bad index or shard.
  static TensorStore open_dir(const std::filesystem::path& dir);
  // A store over explicit files (used for part files and tests).
  static TensorStore open_files(const std::vector<std::filesystem::path>& files);
  // A store over safetensors images in memory (safetensors_bytes), e.g. weights received from
  // another rank; `dir` names the folder they came from in messages.
  static TensorStore from_images(std::vector<std::vector<uint8_t>> images, const std::filesystem::path& dir);

  const TensorInfo* find(std::string_view name) const;
  // Throws Error(kShape) naming the folder and the tensor when it is missing.
  const TensorInfo& get(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted
  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

  // The tensor as fp32 (from F32, F16, BF16 or F64), checked against an expected shape when one
  // is given (Error(kShape): tensor, expected, found).
  std::vector<float> read_f32(std::string_view name, const Shape& expect = {}) const;
  // The raw elements of a BF16 or F16 tensor (2 bytes each, little-endian as stored), copied out
  // of the mapping (whose data may be unaligned) into an owned buffer, then released as read_f32
  // does. Checked against an expected shape when one is given (Error(kShape): tensor, expected,
  // found); Error(kShape) naming the tensor for any other dtype.
  std::vector<uint16_t> read_16bit(std::string_view name, const Shape& expect = {}) const;
  // Drops a tensor's pages from the resident set (see MappedFile::release); read_f32 does this
  // itself after converting.
  void release(const TensorInfo& t) const;

 private:
  void add_file(std::unique_ptr<SafetensorsFile> file);  // indexes its tensors (duplicates refused)
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*, std::less<>> by_name_;
};

// A tensor to be written: data must stay valid until write_safetensors returns.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const void* data = nullptr;
  uint64_t nbytes = 0;  // must equal product(shape) * dtype_size(dtype)
  // Called once the tensor's bytes are written; mapped sources pass a release of their pages.
  std::function<void()> after_write = nullptr;
};

// Writes a safetensors file atomically: to "<path>.tmp.<pid>", fsync, rename over path. The
// metadata always carries {"format": "pt"} (added if absent). Tensors are written sorted by name,
// the header padded with spaces to a multiple of 8 bytes. Throws Error(kArgument) for duplicate
// names or a size mismatch, Error(kIo) for write failures (the temporary file is removed).
void write_safetensors(const std::filesystem::path& path, std::vector<TensorToWrite> tensors,
                       std::map<std::string, std::string> metadata = {});

// The bytes write_safetensors would write, in memory (for sending tensors to another process).
std::vector<uint8_t> safetensors_bytes(std::vector<TensorToWrite> tensors,
                                       std::map<std::string, std::string> metadata = {});

// Writes a small file (JSON, text) atomically, as above.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

// fsyncs a directory so that a rename inside it is durable.
void fsync_dir(const std::filesystem::path& dir);

// Reads a whole small file into a string; Error(kIo) naming the path if it cannot.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace gptq::io
