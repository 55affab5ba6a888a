// Reading safetensors files: the memory map and the header validation. Every size in the header
// is checked (overflow, bounds, coverage) before a pointer into the mapping is formed, so a
// malformed file is an Error(kFormat), never an out-of-bounds read.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "core/checked.h"
#include "gptq/error.h"
#include "io/json_strict.h"
#include "io/safetensors.h"

namespace gptq::io {

namespace fs = std::filesystem;
using detail::clip;
using detail::describe_json;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// MappedFile

MappedFile::MappedFile(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw Error(ErrorKind::kIo,
                fmt::format("cannot open {}: {}", path.string(), std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorKind::kIo,
                fmt::format("cannot stat {}: {}", path.string(), std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::kIo,
                fmt::format("cannot map {}: expected a regular file, found something else "
                            "(a directory or a device)",
                            path.string()));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    // MAP_PRIVATE + PROT_READ: the pages are shared with the page cache, nothing is copied.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::kIo, fmt::format("cannot map {} ({} bytes): {}", path.string(), size_,
                                              std::strerror(err)));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(const uint8_t* p, uint64_t n) const {
  if (!data_ || n == 0 || p < data_ || p + n > data_ + size_) return;
  // madvise needs a page-aligned start; only whole pages inside the range are dropped, so a
  // neighbouring tensor sharing a page keeps it.
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  const uintptr_t ab = (b + page - 1) / page * page, ae = e / page * page;
  if (ae > ab) ::madvise(reinterpret_cast<void*>(ab), ae - ab, MADV_DONTNEED);
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at parse time: cannot overflow
  return n;
}

// ---------------------------------------------------------------------------------------------
// Header validation

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw Error(ErrorKind::kFormat, fmt::format("{}: {}", file, what));
}

[[noreturn]] void fail_tensor(const std::string& file, const std::string& name,
                              const std::string& what) {
  throw Error(ErrorKind::kFormat, fmt::format("{}: tensor \"{}\": {}", file, clip(name), what));
}

// A JSON integer that is >= 0 (floats such as 2.0 are refused: the format says integers).
bool as_unsigned(const json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

std::string supported_dtypes() { return "F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL"; }

// Validates one tensor entry (not its place among the others) and fills info.
void parse_entry(const std::string& file, const std::string& name, const json& e,
                 uint64_t data_size, TensorInfo* info) {
  if (!e.is_object()) {
    fail_tensor(file, name,
                fmt::format("expected an object with dtype, shape and data_offsets, found {}",
                            describe_json(e)));
  }
  // Unknown extra keys are ignored, as the reference (Rust) reader does.
  const auto dt = e.find("dtype");
  if (dt == e.end()) fail_tensor(file, name, "expected a \"dtype\" key, found none");
  if (!dt->is_string()) {
    fail_tensor(file, name,
                fmt::format("expected \"dtype\" to be a string, found {}", describe_json(*dt)));
  }
  const auto& dtype_str = dt->get_ref<const std::string&>();
  if (!parse_dtype(dtype_str, &info->dtype)) {
    fail_tensor(file, name,
                fmt::format("unknown dtype: expected {}, found \"{}\"", supported_dtypes(),
                            clip(dtype_str)));
  }

  const auto sh = e.find("shape");
  if (sh == e.end()) fail_tensor(file, name, "expected a \"shape\" key, found none");
  if (!sh->is_array()) {
    fail_tensor(file, name,
                fmt::format("expected \"shape\" to be an array of non-negative integers, found {}",
                            describe_json(*sh)));
  }
  info->shape.clear();
  info->shape.reserve(sh->size());  // bounded by the header size, itself capped
  uint64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < sh->size(); ++i) {
    const json& d = (*sh)[i];
    uint64_t v = 0;
    if (!as_unsigned(d, &v)) {
      const bool negative = d.is_number_integer() && d.get<int64_t>() < 0;
      fail_tensor(file, name,
                  fmt::format("shape dimension {} is {}: expected a non-negative integer, "
                              "found {}",
                              i, negative ? "negative" : "not an integer", describe_json(d)));
    }
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_tensor(file, name,
                  fmt::format("shape dimension {} is too large: expected at most {}, found {}", i,
                              std::numeric_limits<int64_t>::max(), v));
    }
    info->shape.push_back(static_cast<int64_t>(v));
    if (!overflow) {
      const auto m = core::checked_mul(numel, v);
      if (m) {
        numel = *m;
      } else {
        overflow = true;
      }
    }
  }
  // A zero dimension after an overflowing prefix would make the true product 0; recompute
  // exactly in that case instead of refusing a valid (if odd) shape.
  if (overflow && std::find(info->shape.begin(), info->shape.end(), 0) != info->shape.end()) {
    overflow = false;
    numel = 0;
  }
  std::optional<uint64_t> nbytes;
  if (!overflow) nbytes = core::checked_mul(numel, dtype_size(info->dtype));
  if (!nbytes) {
    fail_tensor(file, name,
                fmt::format("the byte size of shape {} of {} overflows 64 bits (expected a shape "
                            "whose size fits in the file)",
                            shape_str(info->shape), dtype_str));
  }

  const auto off = e.find("data_offsets");
  if (off == e.end()) fail_tensor(file, name, "expected a \"data_offsets\" key, found none");
  uint64_t begin = 0;
  uint64_t end = 0;
  if (!off->is_array() || off->size() != 2 || !as_unsigned((*off)[0], &begin) ||
      !as_unsigned((*off)[1], &end)) {
    fail_tensor(
        file, name,
        fmt::format("expected \"data_offsets\" to be [begin, end] with two non-negative "
                    "integers, found {}",
                    off->is_array() && off->size() <= 4 ? off->dump() : describe_json(*off)));
  }
  if (begin > end) {
    fail_tensor(file, name,
                fmt::format("data_offsets [{}, {}]: expected begin <= end, found begin after end",
                            begin, end));
  }
  if (end > data_size) {
    fail_tensor(file, name,
                fmt::format("data_offsets [{}, {}] run past the end of the data section (expected "
                            "end <= {} bytes, found {}; the file may be truncated)",
                            begin, end, data_size, end));
  }
  if (end - begin != *nbytes) {
    fail_tensor(file, name,
                fmt::format("size mismatch: shape {} of {} needs {} bytes, data_offsets [{}, {}] "
                            "hold {}",
                            shape_str(info->shape), dtype_str, *nbytes, begin, end, end - begin));
  }
  info->begin = begin;
  info->nbytes = *nbytes;
}

}  // namespace

ParsedSafetensors parse_safetensors(const uint8_t* bytes, uint64_t size, const fs::path& path) {
  const std::string file = path.string();
  if (size < 8) {
    fail(file, fmt::format("file too short: expected at least 8 bytes (the header length), "
                           "found {}",
                           size));
  }
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  if (header_len > kMaxHeaderBytes) {
    fail(file, fmt::format("header length {} exceeds the limit (expected at most {} bytes)",
                           header_len, kMaxHeaderBytes));
  }
  if (header_len > size - 8) {
    fail(file, fmt::format("header length {} is larger than the file allows (expected at most "
                           "{}, the file size {} minus 8)",
                           header_len, size - 8, size));
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes + 8), header_len);
  const json root = detail::parse_json_strict(text, file, "header", "tensor name");
  if (!root.is_object()) {
    fail(file, fmt::format("header: expected a JSON object, found {}", describe_json(root)));
  }

  ParsedSafetensors out;
  out.data_start = 8 + header_len;
  const uint64_t data_size = size - out.data_start;
  out.tensors.reserve(root.size());
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        fail(file, fmt::format("__metadata__: expected an object of strings, found {}",
                               describe_json(value)));
      }
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          fail(file, fmt::format("__metadata__ key \"{}\": expected a string value, found {}",
                                 clip(mk), describe_json(mv)));
        }
        out.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    TensorInfo info;
    info.name = key;
    parse_entry(file, key, value, data_size, &info);
    info.file = &path;
    out.tensors.push_back(std::move(info));
  }

  // The ranges must tile the data section: sorted by offset, each begins where the previous
  // ended, the first at 0 and the last at the end of the file. Empty tensors may share an offset.
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
    return a.name < b.name;
  });
  uint64_t covered = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : out.tensors) {
    if (t.begin < covered) {
      fail_tensor(file, t.name,
                  fmt::format("data_offsets [{}, {}] overlap tensor \"{}\" (expected it to begin "
                              "at {}, found {})",
                              t.begin, t.begin + t.nbytes, clip(prev->name), covered, t.begin));
    }
    if (t.begin > covered) {
      fail_tensor(file, t.name,
                  fmt::format("gap in the data section: bytes [{}, {}) belong to no tensor "
                              "(expected it to begin at {}, found {})",
                              covered, t.begin, covered, t.begin));
    }
    covered = t.begin + t.nbytes;
    prev = &t;
  }
  if (covered != data_size) {
    fail(file, fmt::format("trailing bytes: the data section holds {} bytes, the tensors cover "
                           "{} (expected no bytes after the last tensor, found {})",
                           data_size, covered, data_size - covered));
  }
  for (TensorInfo& t : out.tensors) t.data = bytes + out.data_start + t.begin;
  return out;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->map_ = MappedFile(path);
  f->name_ = path;
  ParsedSafetensors parsed = parse_safetensors(f->map_.data(), f->map_.size(), f->name_);
  f->tensors_ = std::move(parsed.tensors);
  f->metadata_ = std::move(parsed.metadata);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, const fs::path& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->owned_ = std::move(bytes);
  f->name_ = name;
  ParsedSafetensors parsed = parse_safetensors(f->owned_.data(), f->owned_.size(), f->name_);
  f->tensors_ = std::move(parsed.tensors);
  f->metadata_ = std::move(parsed.metadata);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace gptq::io
