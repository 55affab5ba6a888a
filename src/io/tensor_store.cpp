// A model folder's tensors: one file or the shards of model.safetensors.index.json.
#include <fmt/format.h>

#include <cstring>
#include <set>
#include <system_error>

#include "core/dtype.h"
#include "gptq/error.h"
#include "io/json_strict.h"
#include "io/safetensors.h"

namespace gptq::io {

namespace fs = std::filesystem;
using detail::clip;
using detail::describe_json;
using nlohmann::json;

namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

// A shard name from an index must be a plain file name inside the folder: a hostile index must
// not reach "../secrets" or "/etc/passwd".
bool is_plain_file_name(std::string_view s) {
  if (s.empty() || s == "." || s.find("..") != std::string_view::npos) return false;
  for (char c : s) {
    if (c == '/' || c == '\\' || c == '\0') return false;
  }
  return true;
}

bool is_float_dtype(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF64;
}

}  // namespace

void TensorStore::add_file(std::unique_ptr<SafetensorsFile> file) {
  files_.push_back(std::move(file));
  const SafetensorsFile& f = *files_.back();
  for (const TensorInfo& t : f.tensors()) {
    const auto [it, inserted] = by_name_.emplace(t.name, &t);
    if (!inserted) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: tensor \"{}\" is also in {} (expected each tensor in one "
                              "file, found it twice)",
                              f.path().string(), clip(t.name), it->second->file->string()));
    }
  }
}

TensorStore TensorStore::open_files(const std::vector<fs::path>& files) {
  TensorStore store;
  if (!files.empty()) store.dir_ = files.front().parent_path();
  for (const fs::path& p : files) store.add_file(SafetensorsFile::open(p));
  return store;
}

TensorStore TensorStore::from_images(std::vector<std::vector<uint8_t>> images, const fs::path& dir) {
  TensorStore store;
  store.dir_ = dir;
  for (size_t i = 0; i < images.size(); ++i) {
    store.add_file(SafetensorsFile::from_bytes(std::move(images[i]), dir / fmt::format("(received image {})", i)));
  }
  return store;
}

TensorStore TensorStore::open_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error(ErrorKind::kIo,
                fmt::format("{}: expected a model folder, found {}", dir.string(),
                            fs::exists(dir, ec) ? "something that is not a folder" : "nothing"));
  }
  // As transformers does: a single model.safetensors wins over an index.
  const fs::path single = dir / kSingleName;
  if (fs::exists(single, ec)) {
    TensorStore store = open_files({single});
    store.dir_ = dir;
    return store;
  }
  const fs::path index_path = dir / kIndexName;
  if (!fs::exists(index_path, ec)) {
    throw Error(ErrorKind::kIo,
                fmt::format("{}: found neither {} nor {}", dir.string(), kSingleName, kIndexName));
  }

  const std::string index_file = index_path.string();
  // Real indexes are well under a megabyte; refuse a huge one before reading it into memory.
  if (const auto n = fs::file_size(index_path, ec); !ec && n > kMaxHeaderBytes) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: index is {} bytes (expected at most {})",
                                                index_file, n, kMaxHeaderBytes));
  }
  const json index =
      detail::parse_json_strict(read_text_file(index_path), index_file, "index", "top-level key");
  auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::kFormat, fmt::format("{}: {}", index_file, what));
  };
  if (!index.is_object()) {
    fail(fmt::format("expected a JSON object, found {}", describe_json(index)));
  }
  if (const auto meta = index.find("metadata"); meta != index.end()) {
    if (!meta->is_object() && !meta->is_null()) {
      fail(fmt::format("\"metadata\": expected an object, found {}", describe_json(*meta)));
    }
    if (meta->is_object()) {
      if (const auto ts = meta->find("total_size");
          ts != meta->end() && (!ts->is_number() || *ts < 0)) {
        fail(fmt::format("\"metadata.total_size\": expected a non-negative number, found {}",
                         describe_json(*ts)));
      }
    }
  }
  const auto wm = index.find("weight_map");
  if (wm == index.end()) fail("expected a \"weight_map\" key, found none");
  if (!wm->is_object()) {
    fail(fmt::format("\"weight_map\": expected an object of tensor name -> file name, found {}",
                     describe_json(*wm)));
  }
  if (wm->empty()) fail("\"weight_map\": expected at least one tensor, found none");

  // Validate every name before touching the file system.
  std::map<std::string, std::string> shard_of;  // tensor -> shard file
  std::set<std::string> shards;
  for (const auto& [tensor, file] : wm->items()) {
    if (!file.is_string()) {
      fail(fmt::format("weight_map[\"{}\"]: expected a file name, found {}", clip(tensor),
                       describe_json(file)));
    }
    const auto& name = file.get_ref<const std::string&>();
    if (!is_plain_file_name(name)) {
      fail(
          fmt::format("weight_map[\"{}\"]: expected a file name inside the folder (no '/', "
                      "'\\\\' or '..'), found \"{}\"",
                      clip(tensor), clip(name)));
    }
    shard_of.emplace(tensor, name);
    shards.insert(name);
  }
  for (const std::string& s : shards) {
    const fs::path p = dir / s;
    if (!fs::is_regular_file(p, ec)) {
      throw Error(ErrorKind::kIo,
                  fmt::format("{}: shard \"{}\" does not exist (expected the file {})", index_file,
                              s, p.string()));
    }
  }

  TensorStore store;
  store.dir_ = dir;
  for (const std::string& s : shards) {
    store.files_.push_back(SafetensorsFile::open(dir / s));
    const SafetensorsFile& f = *store.files_.back();
    for (const TensorInfo& t : f.tensors()) {
      const auto it = shard_of.find(t.name);
      if (it == shard_of.end()) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: tensor \"{}\" is not in the index {} (expected every shard "
                                "tensor in weight_map)",
                                f.path().string(), clip(t.name), index_file));
      }
      if (it->second != s) {
        throw Error(ErrorKind::kFormat,
                    fmt::format("{}: tensor \"{}\" is in shard {}, but the index maps it to {}",
                                index_file, clip(t.name), s, clip(it->second)));
      }
      store.by_name_.emplace(t.name, &t);  // unique: one shard per name, one name per shard
    }
  }
  for (const auto& [tensor, file] : shard_of) {
    if (store.by_name_.find(tensor) == store.by_name_.end()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: weight_map maps tensor \"{}\" to {}, which does not hold it "
                              "(expected the tensor in that shard, found no such tensor)",
                              index_file, clip(tensor), (dir / file).string()));
    }
  }
  return store;
}

const TensorInfo* TensorStore::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorInfo& TensorStore::get(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: expected a tensor \"{}\", found none", dir_.string(), clip(name)));
  }
  return *t;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, info] : by_name_) out.push_back(name);
  return out;  // std::map order: sorted
}

namespace {

void check_shape(const TensorInfo& t, std::string_view name, const Shape& expect) {
  if (!expect.empty() && t.shape != expect) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: tensor \"{}\": expected shape {}, found {}", t.file->string(),
                            clip(name), shape_str(expect), shape_str(t.shape)));
  }
}

}  // namespace

std::vector<uint16_t> TensorStore::read_16bit(std::string_view name, const Shape& expect) const {
  const TensorInfo& t = get(name);
  check_shape(t, name, expect);
  if (t.dtype != DType::kBF16 && t.dtype != DType::kF16) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: tensor \"{}\": expected a 16-bit float dtype (BF16, F16), found {}",
                            t.file->string(), clip(name), dtype_name(t.dtype)));
  }
  // numel * 2 was checked against the file, so this allocation is bounded by it.
  std::vector<uint16_t> out(static_cast<size_t>(t.numel()));
  std::memcpy(out.data(), t.data, out.size() * sizeof(uint16_t));
  release(t);
  return out;
}

std::vector<float> TensorStore::read_f32(std::string_view name, const Shape& expect) const {
  const TensorInfo& t = get(name);
  check_shape(t, name, expect);
  if (!is_float_dtype(t.dtype)) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: tensor \"{}\": expected a float dtype (F32, F16, BF16, F64), "
                            "found {}",
                            t.file->string(), clip(name), dtype_name(t.dtype)));
  }
  // numel * dtype size was checked against the file, so this allocation is bounded by it.
  std::vector<float> out(static_cast<size_t>(t.numel()));
  core::to_fp32(t.dtype, t.data, out.size(), out.data());
  release(t);
  return out;
}

void TensorStore::release(const TensorInfo& t) const {
  for (const auto& f : files_) {
    if (&f->path() == t.file || f->path() == *t.file) {
      f->release(t);
      return;
    }
  }
}

}  // namespace gptq::io
