// GGUF reading and writing; see gguf.h for the layout.
#include "io/gguf.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include "core/checked.h"
#include "gptq/error.h"
#include "io/json_strict.h"
#include "io/temp_file.h"

namespace gptq::io {

namespace fs = std::filesystem;
using detail::clip;

namespace {

// Type ids, names and block sizes as ggml defines them (ggml.h, ggml.c's type traits).
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},    {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292}, {20, "IQ4_NL", 32, 18},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},      {28, "F64", 1, 8},
    {30, "BF16", 1, 2},
};

constexpr uint64_t kScalarSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }
bool is_int_type(GgufType t) {
  return t != GgufType::kFloat32 && t != GgufType::kFloat64 && t != GgufType::kString &&
         t != GgufType::kArray;
}
bool is_float_type(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

// Range of an integer element type (bool: 0..1).
std::pair<int64_t, uint64_t> int_range(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
      return {0, 0xff};
    case GgufType::kInt8:
      return {-128, 127};
    case GgufType::kUint16:
      return {0, 0xffff};
    case GgufType::kInt16:
      return {-32768, 32767};
    case GgufType::kUint32:
      return {0, 0xffffffffu};
    case GgufType::kInt32:
      return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    case GgufType::kBool:
      return {0, 1};
    case GgufType::kInt64:
      return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
    default:
      return {0, std::numeric_limits<uint64_t>::max()};  // kUint64: any bit pattern
  }
}

GgufValue scalar_int(GgufType t, int64_t v) {
  GgufValue g;
  g.type = t;
  g.ints = {v};
  return g;
}

// Reads little-endian fields with bounds checks; every failure names the file and the field.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t size, const fs::path& file) : p_(p), size_(size), file_(file) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::kFormat, fmt::format("{}: GGUF {}", file_.string(), what));
  }
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left()) {
      fail(fmt::format("{}: expected {} more bytes at offset {}, the file ends after {}", what, n,
                       pos_, left()));
    }
  }
  template <typename T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = get<uint64_t>(what + " (string length)");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t size_;
  const fs::path& file_;
  uint64_t pos_ = 0;
};

void read_element(Cursor& c, GgufType t, GgufValue& v, const std::string& what) {
  switch (t) {
    case GgufType::kUint8:
      v.ints.push_back(c.get<uint8_t>(what));
      break;
    case GgufType::kInt8:
      v.ints.push_back(c.get<int8_t>(what));
      break;
    case GgufType::kUint16:
      v.ints.push_back(c.get<uint16_t>(what));
      break;
    case GgufType::kInt16:
      v.ints.push_back(c.get<int16_t>(what));
      break;
    case GgufType::kUint32:
      v.ints.push_back(c.get<uint32_t>(what));
      break;
    case GgufType::kInt32:
      v.ints.push_back(c.get<int32_t>(what));
      break;
    case GgufType::kUint64:
      v.ints.push_back(static_cast<int64_t>(c.get<uint64_t>(what)));
      break;
    case GgufType::kInt64:
      v.ints.push_back(c.get<int64_t>(what));
      break;
    case GgufType::kFloat32:
      v.floats.push_back(c.get<float>(what));
      break;
    case GgufType::kFloat64:
      v.floats.push_back(c.get<double>(what));
      break;
    case GgufType::kBool: {
      const uint8_t b = c.get<uint8_t>(what);
      if (b > 1) c.fail(fmt::format("{}: expected a bool (0 or 1), found {}", what, b));
      v.ints.push_back(b);
      break;
    }
    case GgufType::kString:
      v.strings.push_back(c.str(what));
      break;
    case GgufType::kArray:
      c.fail(what + ": arrays of arrays are not supported");
  }
}

GgufValue read_value(Cursor& c, uint32_t raw_type, const std::string& what) {
  if (!valid_type(raw_type)) c.fail(fmt::format("{}: unknown value type {}", what, raw_type));
  GgufValue v;
  v.type = static_cast<GgufType>(raw_type);
  if (v.type != GgufType::kArray) {
    read_element(c, v.type, v, what);
    return v;
  }
  const uint32_t et = c.get<uint32_t>(what + " (array element type)");
  if (!valid_type(et)) c.fail(fmt::format("{}: unknown array element type {}", what, et));
  v.elem = static_cast<GgufType>(et);
  if (v.elem == GgufType::kArray) c.fail(what + ": arrays of arrays are not supported");
  const uint64_t n = c.get<uint64_t>(what + " (array length)");
  // Check the count against the bytes left before reserving anything: every element takes at
  // least its scalar size (a string at least its 8-byte length).
  const uint64_t min_size = v.elem == GgufType::kString ? 8 : kScalarSize[et];
  if (n > c.left() / min_size) {
    c.fail(fmt::format("{}: array of {} {} elements needs at least {} bytes, {} are left", what, n,
                       gguf_type_name(v.elem), core::checked_mul(n, min_size).value_or(~0ull),
                       c.left()));
  }
  if (v.elem == GgufType::kString)
    v.strings.reserve(static_cast<size_t>(n));
  else if (is_float_type(v.elem))
    v.floats.reserve(static_cast<size_t>(n));
  else
    v.ints.reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) read_element(c, v.elem, v, what);
  return v;
}

// Appends little-endian bytes to a header buffer.
class Out {
 public:
  template <typename T>
  void put(T v) {
    const auto* b = reinterpret_cast<const char*>(&v);
    buf_.append(b, sizeof(T));
  }
  void str(std::string_view s) {
    put<uint64_t>(s.size());
    buf_.append(s);
  }
  std::string& buf() { return buf_; }

 private:
  std::string buf_;
};

void write_element(Out& o, GgufType t, const GgufValue& v, size_t i) {
  switch (t) {
    case GgufType::kUint8:
      o.put<uint8_t>(static_cast<uint8_t>(v.ints[i]));
      break;
    case GgufType::kInt8:
      o.put<int8_t>(static_cast<int8_t>(v.ints[i]));
      break;
    case GgufType::kUint16:
      o.put<uint16_t>(static_cast<uint16_t>(v.ints[i]));
      break;
    case GgufType::kInt16:
      o.put<int16_t>(static_cast<int16_t>(v.ints[i]));
      break;
    case GgufType::kUint32:
      o.put<uint32_t>(static_cast<uint32_t>(v.ints[i]));
      break;
    case GgufType::kInt32:
      o.put<int32_t>(static_cast<int32_t>(v.ints[i]));
      break;
    case GgufType::kUint64:
      o.put<uint64_t>(static_cast<uint64_t>(v.ints[i]));
      break;
    case GgufType::kInt64:
      o.put<int64_t>(v.ints[i]);
      break;
    case GgufType::kBool:
      o.put<uint8_t>(v.ints[i] != 0 ? 1 : 0);
      break;
    case GgufType::kFloat32:
      o.put<float>(static_cast<float>(v.floats[i]));
      break;
    case GgufType::kFloat64:
      o.put<double>(v.floats[i]);
      break;
    case GgufType::kString:
      o.str(v.strings[i]);
      break;
    case GgufType::kArray:
      break;  // refused by check_value
  }
}

// The vector that holds a value's elements must match its type and size.
void check_value(const GgufValue& v, const std::string& key, const std::string& file) {
  auto bad = [&](const std::string& what) {
    throw Error(ErrorKind::kArgument,
                fmt::format("writing {}: key \"{}\": {}", file, clip(key), what));
  };
  const GgufType t = v.element_type();
  if (!valid_type(static_cast<uint32_t>(v.type)) || !valid_type(static_cast<uint32_t>(t)) ||
      t == GgufType::kArray) {
    bad("invalid value type (arrays of arrays are not supported)");
  }
  const size_t n = t == GgufType::kString ? v.strings.size()
                   : is_float_type(t)     ? v.floats.size()
                                          : v.ints.size();
  if (!v.is_array() && n != 1)
    bad(fmt::format("a scalar {} holds {} values", gguf_type_name(t), n));
  if (v.ints.size() + v.floats.size() + v.strings.size() != n)
    bad("values stored under another type");
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* const kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                       "int32",  "float32", "bool",   "string", "array",
                                       "uint64", "int64",   "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

GgufValue GgufValue::u8(uint8_t v) { return scalar_int(GgufType::kUint8, v); }
GgufValue GgufValue::i8(int8_t v) { return scalar_int(GgufType::kInt8, v); }
GgufValue GgufValue::u16(uint16_t v) { return scalar_int(GgufType::kUint16, v); }
GgufValue GgufValue::i16(int16_t v) { return scalar_int(GgufType::kInt16, v); }
GgufValue GgufValue::u32(uint32_t v) { return scalar_int(GgufType::kUint32, v); }
GgufValue GgufValue::i32(int32_t v) { return scalar_int(GgufType::kInt32, v); }
GgufValue GgufValue::u64(uint64_t v) {
  return scalar_int(GgufType::kUint64, static_cast<int64_t>(v));
}
GgufValue GgufValue::i64(int64_t v) { return scalar_int(GgufType::kInt64, v); }
GgufValue GgufValue::boolean(bool v) { return scalar_int(GgufType::kBool, v ? 1 : 0); }
GgufValue GgufValue::f32(float v) {
  GgufValue g;
  g.type = GgufType::kFloat32;
  g.floats = {v};
  return g;
}
GgufValue GgufValue::f64(double v) {
  GgufValue g;
  g.type = GgufType::kFloat64;
  g.floats = {v};
  return g;
}
GgufValue GgufValue::str(std::string v) {
  GgufValue g;
  g.type = GgufType::kString;
  g.strings = {std::move(v)};
  return g;
}
GgufValue GgufValue::int_array(GgufType elem, std::vector<int64_t> v) {
  if (!is_int_type(elem)) {
    throw Error(ErrorKind::kArgument,
                fmt::format("GGUF int_array: {} is not an integer type", gguf_type_name(elem)));
  }
  const auto [lo, hi] = int_range(elem);
  if (elem != GgufType::kUint64) {
    for (int64_t x : v) {
      if (x < lo || (x >= 0 && static_cast<uint64_t>(x) > hi)) {
        throw Error(ErrorKind::kArgument, fmt::format("GGUF int_array: value {} does not fit {}", x,
                                                      gguf_type_name(elem)));
      }
    }
  }
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem = elem;
  g.ints = std::move(v);
  return g;
}
GgufValue GgufValue::float_array(GgufType elem, std::vector<double> v) {
  if (!is_float_type(elem)) {
    throw Error(ErrorKind::kArgument,
                fmt::format("GGUF float_array: {} is not a float type", gguf_type_name(elem)));
  }
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem = elem;
  g.floats = std::move(v);
  return g;
}
GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem = GgufType::kString;
  g.strings = std::move(v);
  return g;
}
size_t GgufValue::size() const {
  const GgufType t = element_type();
  return t == GgufType::kString ? strings.size() : is_float_type(t) ? floats.size() : ints.size();
}

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const auto& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const GgmlTypeInfo* ggml_type_by_name(std::string_view name) {
  for (const auto& t : kGgmlTypes) {
    const std::string_view n = t.name;
    if (n.size() == name.size() && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) ==
                 std::toupper(static_cast<unsigned char>(b));
        })) {
      return &t;
    }
  }
  return nullptr;
}

std::optional<uint64_t> ggml_nbytes(const GgmlTypeInfo& type, const std::vector<uint64_t>& ne) {
  if (ne.empty() || ne[0] % type.block != 0) return std::nullopt;
  std::optional<uint64_t> n = ne[0] / type.block * type.block_bytes;
  for (size_t i = 1; i < ne.size() && n; ++i) n = core::checked_mul(*n, ne[i]);
  return n;
}

const GgufValue* ParsedGguf::find(std::string_view key) const {
  for (const auto& [k, v] : kv) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufTensorInfo* ParsedGguf::tensor(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

ParsedGguf parse_gguf(const uint8_t* bytes, uint64_t size, const fs::path& file) {
  Cursor c(bytes, size, file);
  ParsedGguf out;
  c.need(4, "magic");
  if (std::memcmp(bytes, "GGUF", 4) != 0) {
    c.fail(fmt::format("magic: expected \"GGUF\", found bytes {:02x} {:02x} {:02x} {:02x}",
                       bytes[0], bytes[1], bytes[2], bytes[3]));
  }
  c.get<uint32_t>("magic");
  out.version = c.get<uint32_t>("version");
  // Version 1 used 32-bit counts and lengths; 2 and 3 share this layout (3 adds big-endian
  // files, which announce themselves by a byte-swapped version and are refused here).
  if (out.version != 2 && out.version != 3) {
    c.fail(fmt::format("version: expected 2 or 3 (little-endian), found {}", out.version));
  }
  const uint64_t n_tensors = c.get<uint64_t>("tensor count");
  const uint64_t n_kv = c.get<uint64_t>("key/value count");
  // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at least
  // 8 + 4 + 8 + 4 + 8: refuse counts the file cannot hold before reserving anything.
  if (n_kv > c.left() / 13)
    c.fail(fmt::format("key/value count {} is more than the file can hold", n_kv));
  if (n_tensors > c.left() / 32)
    c.fail(fmt::format("tensor count {} is more than the file can hold", n_tensors));
  std::set<std::string, std::less<>> keys;
  out.kv.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str(fmt::format("key {}", i));
    const std::string what = fmt::format("key \"{}\"", clip(key));
    if (!keys.insert(key).second) c.fail(what + ": given twice (expected unique keys)");
    const uint32_t t = c.get<uint32_t>(what + " (value type)");
    GgufValue v = read_value(c, t, what);
    out.kv.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = out.find("general.alignment")) {
    if (a->type != GgufType::kUint32) {
      c.fail(fmt::format("key \"general.alignment\": expected a uint32, found {}",
                         gguf_type_name(a->element_type())));
    }
    const auto al = static_cast<uint64_t>(a->ints[0]);
    if (al == 0 || !std::has_single_bit(al)) {
      c.fail(fmt::format("key \"general.alignment\": expected a power of two, found {}", al));
    }
    out.alignment = static_cast<uint32_t>(al);
  }
  std::set<std::string, std::less<>> names;
  out.tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.str(fmt::format("tensor {} name", i));
    const std::string what = fmt::format("tensor \"{}\"", clip(t.name));
    if (t.name.size() > kGgufMaxNameBytes) {
      c.fail(fmt::format("{}: name of {} bytes, expected at most {}", what, t.name.size(),
                         kGgufMaxNameBytes));
    }
    if (!names.insert(t.name).second) c.fail(what + ": given twice (expected unique tensor names)");
    const uint32_t nd = c.get<uint32_t>(what + " (n_dims)");
    if (nd == 0 || nd > kGgufMaxDims)
      c.fail(fmt::format("{}: expected 1 to {} dims, found {}", what, kGgufMaxDims, nd));
    for (uint32_t d = 0; d < nd; ++d) t.ne.push_back(c.get<uint64_t>(what + " (dims)"));
    t.type = c.get<uint32_t>(what + " (type)");
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti) c.fail(fmt::format("{}: unknown ggml type {}", what, t.type));
    const auto nbytes = ggml_nbytes(*ti, t.ne);
    if (!nbytes) {
      c.fail(fmt::format(
          "{}: dims [{}] of {}: expected the first dim to be a multiple of {} and the size to fit "
          "64 bits",
          what, fmt::join(t.ne, ", "), ti->name, ti->block));
    }
    t.nbytes = *nbytes;
    t.offset = c.get<uint64_t>(what + " (offset)");
    if (t.offset % out.alignment != 0) {
      c.fail(fmt::format("{}: offset {} is not a multiple of the alignment {}", what, t.offset,
                         out.alignment));
    }
    out.tensors.push_back(std::move(t));
  }
  const uint64_t pad = (out.alignment - c.pos() % out.alignment) % out.alignment;
  out.data_start = c.pos() + pad;
  // A file without tensors may end right after its key/values.
  const uint64_t data_size = out.data_start <= size ? size - out.data_start : 0;
  if (!out.tensors.empty() && out.data_start > size) {
    c.fail(fmt::format("data section: expected it at offset {}, the file has {} bytes",
                       out.data_start, size));
  }
  std::vector<const GgufTensorInfo*> by_offset;
  for (auto& t : out.tensors) {
    const auto end = core::checked_add(t.offset, t.nbytes);
    if (!end || *end > data_size) {
      c.fail(fmt::format(
          "tensor \"{}\": {} bytes at data offset {} run past the end of the data section ({} "
          "bytes): truncated file?",
          clip(t.name), t.nbytes, t.offset, data_size));
    }
    t.data = bytes + out.data_start + t.offset;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* a = by_offset[i - 1];
    const auto* b = by_offset[i];
    if (a->offset + a->nbytes > b->offset) {
      c.fail(fmt::format(
          "tensor \"{}\" (data offset {}, {} bytes) overlaps tensor \"{}\" at offset {}",
          clip(a->name), a->offset, a->nbytes, clip(b->name), b->offset));
    }
  }
  return out;
}

std::unique_ptr<GgufFile> GgufFile::open(const fs::path& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->map_ = MappedFile(path);
  f->parsed_ = parse_gguf(f->map_.data(), f->map_.size(), f->map_.path());
  return f;
}

void write_gguf(const fs::path& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                const std::vector<GgufTensorToWrite>& tensors) {
  const std::string file = path.string();
  auto bad = [&](const std::string& what) {
    throw Error(ErrorKind::kArgument, fmt::format("writing {}: {}", file, what));
  };
  uint32_t alignment = kGgufDefaultAlignment;
  std::set<std::string, std::less<>> keys;
  Out o;
  o.buf().append("GGUF", 4);
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors.size());
  o.put<uint64_t>(kv.size());
  for (const auto& [k, v] : kv) {
    if (!keys.insert(k).second)
      bad(fmt::format("key \"{}\" given twice (expected unique keys)", clip(k)));
    check_value(v, k, file);
    if (k == "general.alignment") {
      if (v.type != GgufType::kUint32 || v.ints[0] <= 0 ||
          !std::has_single_bit(static_cast<uint64_t>(v.ints[0]))) {
        bad("general.alignment: expected a uint32 power of two");
      }
      alignment = static_cast<uint32_t>(v.ints[0]);
    }
    o.str(k);
    o.put<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.is_array()) {
      o.put<uint32_t>(static_cast<uint32_t>(v.elem));
      o.put<uint64_t>(v.size());
    }
    for (size_t i = 0; i < v.size(); ++i) write_element(o, v.element_type(), v, i);
  }
  std::set<std::string, std::less<>> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::string what = fmt::format("tensor \"{}\"", clip(t.name));
    if (t.name.size() > kGgufMaxNameBytes) {
      bad(fmt::format("{}: name of {} bytes, llama.cpp takes at most {}", what, t.name.size(),
                      kGgufMaxNameBytes));
    }
    if (!names.insert(t.name).second) bad(what + " given twice (expected unique names)");
    if (t.ne.empty() || t.ne.size() > kGgufMaxDims)
      bad(fmt::format("{}: expected 1 to 4 dims, found {}", what, t.ne.size()));
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti) bad(fmt::format("{}: unknown ggml type {}", what, t.type));
    const auto n = ggml_nbytes(*ti, t.ne);
    if (!n || *n != t.nbytes) {
      bad(fmt::format(
          "{}: dims [{}] of {} need {} bytes, found nbytes = {}", what, fmt::join(t.ne, ", "),
          ti->name,
          n ? std::to_string(*n) : std::string("a first dim that is a multiple of the block"),
          t.nbytes));
    }
    if (t.nbytes > 0 && t.data == nullptr)
      bad(fmt::format("{}: {} bytes but no data", what, t.nbytes));
    o.str(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) o.put<uint64_t>(d);
    o.put<uint32_t>(t.type);
    o.put<uint64_t>(offset);
    offset += (t.nbytes + alignment - 1) / alignment * alignment;
  }
  o.buf().append((alignment - o.buf().size() % alignment) % alignment, '\0');
  static const char kZeros[256] = {};
  detail::TempFile tmp(path);
  tmp.write(o.buf().data(), o.buf().size());
  for (const auto& t : tensors) {
    tmp.write(t.data, t.nbytes);
    uint64_t pad = (alignment - t.nbytes % alignment) % alignment;
    while (pad > 0) {
      const uint64_t step = std::min<uint64_t>(pad, sizeof(kZeros));
      tmp.write(kZeros, step);
      pad -= step;
    }
  }
  tmp.commit();
}

}  // namespace gptq::io
