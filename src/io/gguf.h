// GGUF files (the container llama.cpp and ggml read): written atomically (temporary name, fsync,
// rename) and read through mmap, validated before anything is allocated.
//
// Layout (version 3, little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count;
// key/values (string key, u32 value type, value; strings are u64 length + bytes; arrays are u32
// element type + u64 count + elements); tensor infos (string name, u32 n_dims, u64 ne[n_dims]
// innermost first, u32 ggml type, u64 offset relative to the data section); padding to the
// alignment (the u32 key "general.alignment", 32 when absent); the data section, each tensor at an
// offset that is a multiple of the alignment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"

namespace gptq::io {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value: a scalar (one element) or an array of scalars or strings (arrays of
// arrays are refused, as ggml refuses them). Integers and bools are held in `ints` (unsigned
// values by their bit pattern), floats in `floats` (float32 widened exactly), strings in
// `strings`.
struct GgufValue {
  GgufType type = GgufType::kUint32;
  GgufType elem = GgufType::kUint8;  // the element type when type == kArray
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f32(float v);
  static GgufValue f64(double v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  // Arrays of integers/bools (elem one of the integer types or kBool; values must fit it, Error
  // (kArgument) otherwise), of floats (kFloat32/kFloat64), of strings.
  static GgufValue int_array(GgufType elem, std::vector<int64_t> v);
  static GgufValue float_array(GgufType elem, std::vector<double> v);
  static GgufValue string_array(std::vector<std::string> v);

  bool is_array() const { return type == GgufType::kArray; }
  // The element type of a scalar (its type) or of an array (elem).
  GgufType element_type() const { return is_array() ? elem : type; }
  size_t size() const;  // 1 for a scalar
  bool operator==(const GgufValue&) const = default;
};

// The ggml tensor types this project knows (type id, name, elements per block, bytes per block).
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  uint32_t block;
  uint32_t block_bytes;
};
inline constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ4_1 = 3, kGgmlQ8_0 = 8,
                          kGgmlBF16 = 30;
// nullptr for an id not in the table.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
// Looks a type up by name ("Q4_0", "F16", case-insensitive); nullptr if unknown.
const GgmlTypeInfo* ggml_type_by_name(std::string_view name);
// Bytes of a tensor of `type` with dims ne (innermost first); nullopt when ne[0] is not a multiple
// of the block size or the size overflows 64 bits.
std::optional<uint64_t> ggml_nbytes(const GgmlTypeInfo& type, const std::vector<uint64_t>& ne);

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr size_t kGgufMaxDims = 4;        // GGML_MAX_DIMS
inline constexpr size_t kGgufMaxNameBytes = 63;  // GGML_MAX_NAME is 64 with the terminator

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // innermost (contiguous) dimension first, as ggml orders them
  uint32_t type = kGgmlF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping (or the parsed buffer)
};

// The validated contents of a GGUF image.
struct ParsedGguf {
  uint32_t version = 3;
  std::vector<std::pair<std::string, GgufValue>> kv;  // in file order
  std::vector<GgufTensorInfo> tensors;                // in file order
  uint32_t alignment = kGgufDefaultAlignment;
  uint64_t data_start = 0;

  const GgufValue* find(std::string_view key) const;          // nullptr if absent
  const GgufTensorInfo* tensor(std::string_view name) const;  // nullptr if absent
};

// Validates a whole GGUF image in memory. Throws Error(kFormat) naming `file`, the field, what
// was expected and what was found: bad magic, a version other than 2 or 3, counts or lengths
// beyond the end of the file, unknown value or tensor types, nested arrays, duplicate keys or
// tensor names, a general.alignment that is not a u32 power of two, more than 4 dims, a first
// dim that is not a multiple of the type's block, offsets that are not aligned, outside the
// data section or overlapping another tensor. Data pointers point into `bytes`.
ParsedGguf parse_gguf(const uint8_t* bytes, uint64_t size, const std::filesystem::path& file);

// A GGUF file opened through mmap and validated by parse_gguf.
class GgufFile {
 public:
  static std::unique_ptr<GgufFile> open(const std::filesystem::path& path);
  const ParsedGguf& contents() const { return parsed_; }
  const std::filesystem::path& path() const { return map_.path(); }

 private:
  GgufFile() = default;
  MappedFile map_;
  ParsedGguf parsed_;
};

struct GgufTensorToWrite {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first
  uint32_t type = kGgmlF32;
  const void* data = nullptr;  // must stay valid until write_gguf returns
  uint64_t nbytes = 0;         // must equal ggml_nbytes(type, ne)
};

// Writes a GGUF v3 file atomically ("<path>.tmp.<pid>", fsync, rename). Key/values and tensors
// are written in the given order; the alignment is general.alignment when kv holds it (a u32
// power of two), else 32. Throws Error(kArgument) naming the file for duplicate keys or tensor
// names, names longer than 63 bytes, more than 4 dims, an unknown type, a size mismatch;
// Error(kIo) for write failures (the temporary file is removed).
void write_gguf(const std::filesystem::path& path,
                const std::vector<std::pair<std::string, GgufValue>>& kv,
                const std::vector<GgufTensorToWrite>& tensors);

}  // namespace gptq::io
