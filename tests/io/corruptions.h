// Corrupt safetensors files and model folders, generated from a list of corruption kinds (as
// llama.cpp's test-gguf does). The unit tests check that each one is refused with a typed error
// naming the file; the fuzzer (tests/fuzz/fuzz_safetensors.cpp) uses the same images as seeds.
//
// Everything here builds bytes by hand, without the library's writer, so a writer bug cannot hide
// a reader bug. Header-only, depends on nothing but the standard library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gptq::testing {

// ---------------------------------------------------------------------------------------------
// Single files

// The valid starting point: three tensors laid end to end, with metadata.
//   a: F32 [2, 2] at [0, 16), b: I8 [4] at [16, 20), c: F16 [2] at [20, 24).
inline const std::string& base_header() {
  static const std::string h = R"({"__metadata__":{"format":"pt"},)"
                               R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                               R"("b":{"dtype":"I8","shape":[4],"data_offsets":[16,20]},)"
                               R"("c":{"dtype":"F16","shape":[2],"data_offsets":[20,24]}})";
  return h;
}

inline std::string base_data() {
  std::string d(24, '\0');
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<char>(i * 7 + 1);
  return d;
}

inline std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file image: 8-byte little-endian header length, header, data.
inline std::string make_safetensors(std::string_view header, std::string_view data) {
  return le64(header.size()) + std::string(header) + std::string(data);
}

inline std::string base_file() { return make_safetensors(base_header(), base_data()); }

// Replaces the first `from` in s; aborts when absent, so a stale corruption cannot pass silently.
inline std::string replace_once(std::string s, std::string_view from, std::string_view to) {
  const size_t at = s.find(from);
  if (at == std::string::npos) {
    std::fprintf(stderr, "corruptions.h: \"%.*s\" not found\n", static_cast<int>(from.size()),
                 from.data());
    std::abort();
  }
  return s.replace(at, from.size(), to);
}

enum class FileCorruption {
  kEmptyFile,
  kTruncatedHeaderLength,
  kHeaderLengthPastEnd,
  kHeaderLengthHuge,
  kHeaderLengthZero,
  kHeaderNotJson,
  kHeaderInvalidUtf8,
  kHeaderNotObject,
  kHeaderDeepNesting,
  kEntryNotObject,
  kMissingDtype,
  kDtypeNotString,
  kUnknownDtype,
  kMissingShape,
  kShapeNotArray,
  kNegativeDim,
  kFractionalDim,
  kDimTooLarge,
  kShapeProductOverflow,
  kShapeSizeMismatch,
  kMissingOffsets,
  kOffsetsWrongType,
  kOffsetsWrongLength,
  kOffsetsNotIntegers,
  kBeginAfterEnd,
  kOffsetsPastEnd,
  kOverlappingRanges,
  kGapBetweenRanges,
  kFirstRangeNotAtZero,
  kTrailingBytes,
  kDuplicateNames,
  kDuplicateField,
  kMetadataNotObject,
  kMetadataNotStringMap,
  kTruncatedData,
};

struct FileCorruptionCase {
  FileCorruption kind;
  const char* name;     // a test name: letters, digits, underscores
  const char* message;  // a piece the error message must contain (besides the file name)
};

// Every kind; each yields Error(kFormat).
inline const std::vector<FileCorruptionCase>& file_corruptions() {
  static const std::vector<FileCorruptionCase> cases = {
      {FileCorruption::kEmptyFile, "EmptyFile", "at least 8 bytes"},
      {FileCorruption::kTruncatedHeaderLength, "TruncatedHeaderLength", "at least 8 bytes"},
      {FileCorruption::kHeaderLengthPastEnd, "HeaderLengthPastEnd", "larger than the file"},
      {FileCorruption::kHeaderLengthHuge, "HeaderLengthHuge", "exceeds the limit"},
      {FileCorruption::kHeaderLengthZero, "HeaderLengthZero", "not valid JSON"},
      {FileCorruption::kHeaderNotJson, "HeaderNotJson", "not valid JSON"},
      {FileCorruption::kHeaderInvalidUtf8, "HeaderInvalidUtf8", "not valid JSON"},
      {FileCorruption::kHeaderNotObject, "HeaderNotObject", "expected a JSON object"},
      {FileCorruption::kHeaderDeepNesting, "HeaderDeepNesting", "deeper than expected"},
      {FileCorruption::kEntryNotObject, "EntryNotObject", "\"b\": expected an object"},
      {FileCorruption::kMissingDtype, "MissingDtype", "\"dtype\" key"},
      {FileCorruption::kDtypeNotString, "DtypeNotString", "\"dtype\" to be a string"},
      {FileCorruption::kUnknownDtype, "UnknownDtype", "found \"F33\""},
      {FileCorruption::kMissingShape, "MissingShape", "\"shape\" key"},
      {FileCorruption::kShapeNotArray, "ShapeNotArray", "\"shape\" to be an array"},
      {FileCorruption::kNegativeDim, "NegativeDim", "negative"},
      {FileCorruption::kFractionalDim, "FractionalDim", "not an integer"},
      {FileCorruption::kDimTooLarge, "DimTooLarge", "too large"},
      {FileCorruption::kShapeProductOverflow, "ShapeProductOverflow", "overflows"},
      {FileCorruption::kShapeSizeMismatch, "ShapeSizeMismatch", "size mismatch"},
      {FileCorruption::kMissingOffsets, "MissingOffsets", "\"data_offsets\" key"},
      {FileCorruption::kOffsetsWrongType, "OffsetsWrongType", "\"data_offsets\" to be"},
      {FileCorruption::kOffsetsWrongLength, "OffsetsWrongLength", "\"data_offsets\" to be"},
      {FileCorruption::kOffsetsNotIntegers, "OffsetsNotIntegers", "\"data_offsets\" to be"},
      {FileCorruption::kBeginAfterEnd, "BeginAfterEnd", "begin <= end"},
      {FileCorruption::kOffsetsPastEnd, "OffsetsPastEnd", "past the end"},
      {FileCorruption::kOverlappingRanges, "OverlappingRanges", "overlap"},
      {FileCorruption::kGapBetweenRanges, "GapBetweenRanges", "gap"},
      {FileCorruption::kFirstRangeNotAtZero, "FirstRangeNotAtZero", "gap"},
      {FileCorruption::kTrailingBytes, "TrailingBytes", "trailing bytes"},
      {FileCorruption::kDuplicateNames, "DuplicateNames", "duplicate"},
      {FileCorruption::kDuplicateField, "DuplicateField", "duplicate"},
      {FileCorruption::kMetadataNotObject, "MetadataNotObject", "__metadata__"},
      {FileCorruption::kMetadataNotStringMap, "MetadataNotStringMap", "__metadata__"},
      {FileCorruption::kTruncatedData, "TruncatedData", "past the end"},
  };
  return cases;
}

// The bytes of the base file with one corruption applied.
inline std::string corrupt_file(FileCorruption kind) {
  const std::string& h = base_header();
  const std::string d = base_data();
  const std::string valid = make_safetensors(h, d);
  auto edit = [&](std::string_view from, std::string_view to) {
    return make_safetensors(replace_once(h, from, to), d);
  };
  switch (kind) {
    case FileCorruption::kEmptyFile:
      return "";
    case FileCorruption::kTruncatedHeaderLength:
      return valid.substr(0, 5);
    case FileCorruption::kHeaderLengthPastEnd:
      return le64(h.size() + d.size() + 1) + h + d;
    case FileCorruption::kHeaderLengthHuge:
      return le64(uint64_t{1} << 62) + h + d;
    case FileCorruption::kHeaderLengthZero:
      return le64(0) + h + d;
    case FileCorruption::kHeaderNotJson:
      return edit(R"("a":{)", R"("a":nope{)");
    case FileCorruption::kHeaderInvalidUtf8:
      return edit(R"("a":{)", "\"\xff\xfe\":{");
    case FileCorruption::kHeaderNotObject:
      return make_safetensors("[1,2,3]", "");
    case FileCorruption::kHeaderDeepNesting:
      return make_safetensors("{\"x\":" + std::string(1000, '[') + std::string(1000, ']') + "}",
                              "");
    case FileCorruption::kEntryNotObject:
      return edit(R"("b":{"dtype":"I8","shape":[4],"data_offsets":[16,20]})", R"("b":[16,20])");
    case FileCorruption::kMissingDtype:
      return edit(R"("dtype":"I8",)", "");
    case FileCorruption::kDtypeNotString:
      return edit(R"("dtype":"I8")", R"("dtype":8)");
    case FileCorruption::kUnknownDtype:
      return edit(R"("dtype":"F32")", R"("dtype":"F33")");
    case FileCorruption::kMissingShape:
      return edit(R"("shape":[4],)", "");
    case FileCorruption::kShapeNotArray:
      return edit(R"("shape":[4])", R"("shape":4)");
    case FileCorruption::kNegativeDim:
      return edit(R"("shape":[4])", R"("shape":[-4])");
    case FileCorruption::kFractionalDim:
      return edit(R"("shape":[4])", R"("shape":[4.0])");
    case FileCorruption::kDimTooLarge:
      return edit(R"("shape":[4])", R"("shape":[9223372036854775808,0])");
    case FileCorruption::kShapeProductOverflow:
      return edit(R"("shape":[2,2])", R"("shape":[4294967296,4294967296,16])");
    case FileCorruption::kShapeSizeMismatch:
      return edit(R"("shape":[2,2])", R"("shape":[2,3])");
    case FileCorruption::kMissingOffsets:
      return edit(R"(,"data_offsets":[16,20])", "");
    case FileCorruption::kOffsetsWrongType:
      return edit(R"("data_offsets":[16,20])", R"("data_offsets":"16-20")");
    case FileCorruption::kOffsetsWrongLength:
      return edit(R"("data_offsets":[16,20])", R"("data_offsets":[16,20,20])");
    case FileCorruption::kOffsetsNotIntegers:
      return edit(R"("data_offsets":[16,20])", R"("data_offsets":["16","20"])");
    case FileCorruption::kBeginAfterEnd:
      return edit(R"("data_offsets":[16,20])", R"("data_offsets":[20,16])");
    case FileCorruption::kOffsetsPastEnd:
      return edit(R"("shape":[2],"data_offsets":[20,24])", R"("shape":[4],"data_offsets":[20,28])");
    case FileCorruption::kOverlappingRanges:
      return edit(R"("data_offsets":[16,20])", R"("data_offsets":[12,16])");
    case FileCorruption::kGapBetweenRanges:
      return make_safetensors(replace_once(h, "[20,24]", "[24,28]"), d + std::string(4, 'x'));
    case FileCorruption::kFirstRangeNotAtZero: {
      std::string hh = replace_once(h, "[0,16]", "[4,20]");
      hh = replace_once(hh, "[16,20]", "[20,24]");
      hh = replace_once(hh, "[20,24]}}", "[24,28]}}");
      return make_safetensors(hh, d + std::string(4, 'x'));
    }
    case FileCorruption::kTrailingBytes:
      return valid + std::string(8, '\0');
    case FileCorruption::kDuplicateNames:
      return edit(R"("c":{)", R"("b":{)");
    case FileCorruption::kDuplicateField:
      return edit(R"("dtype":"F32",)", R"("dtype":"F32","dtype":"F32",)");
    case FileCorruption::kMetadataNotObject:
      return edit(R"("__metadata__":{"format":"pt"})", R"("__metadata__":"pt")");
    case FileCorruption::kMetadataNotStringMap:
      return edit(R"({"format":"pt"})", R"({"format":1})");
    case FileCorruption::kTruncatedData:
      return valid.substr(0, valid.size() - 3);
  }
  std::abort();
}

// ---------------------------------------------------------------------------------------------
// Sharded folders

// The valid starting point: shard 1 holds a and b, shard 2 holds c, as in the base file.
inline constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
inline constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
inline constexpr const char* kIndexFile = "model.safetensors.index.json";

inline std::string shard1_file() {
  return make_safetensors(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                          R"("b":{"dtype":"I8","shape":[4],"data_offsets":[16,20]}})",
                          base_data().substr(0, 20));
}

inline std::string shard2_file() {
  return make_safetensors(R"({"c":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                          base_data().substr(20, 4));
}

// An index from (tensor, file) pairs, written by hand so that duplicate keys can be expressed.
inline std::string make_index(const std::vector<std::pair<std::string, std::string>>& map) {
  std::string s = R"({"metadata":{"total_size":24},"weight_map":{)";
  for (size_t i = 0; i < map.size(); ++i) {
    s += (i ? "," : "") + ("\"" + map[i].first + "\":\"" + map[i].second + "\"");
  }
  return s + "}}";
}

inline std::string base_index() {
  return make_index({{"a", kShard1}, {"b", kShard1}, {"c", kShard2}});
}

enum class FolderCorruption {
  kMissingShard,
  kTensorNotInMappedShard,
  kShardTensorNotInIndex,
  kTensorInTwoShards,
  kPathEscapeDotDot,
  kPathEscapeSlash,
  kPathAbsolute,
  kIndexNotJson,
  kIndexNotObject,
  kWeightMapMissing,
  kWeightMapNotObject,
  kWeightMapEmpty,
  kWeightMapValueNotString,
  kDuplicateIndexKey,
  kCorruptShard,
};

enum class ExpectedKind { kFormat, kIo };

struct FolderCorruptionCase {
  FolderCorruption kind;
  const char* name;
  ExpectedKind error;
  const char* file;     // the file name the message must contain
  const char* message;  // and this piece
};

inline const std::vector<FolderCorruptionCase>& folder_corruptions() {
  static const std::vector<FolderCorruptionCase> cases = {
      {FolderCorruption::kMissingShard, "MissingShard", ExpectedKind::kIo,
       "model-00003-of-00003.safetensors", "does not exist"},
      {FolderCorruption::kTensorNotInMappedShard, "TensorNotInMappedShard", ExpectedKind::kFormat,
       kIndexFile, "does not hold it"},
      {FolderCorruption::kShardTensorNotInIndex, "ShardTensorNotInIndex", ExpectedKind::kFormat,
       kShard1, "not in the index"},
      {FolderCorruption::kTensorInTwoShards, "TensorInTwoShards", ExpectedKind::kFormat, kIndexFile,
       "maps it to"},
      {FolderCorruption::kPathEscapeDotDot, "PathEscapeDotDot", ExpectedKind::kFormat, kIndexFile,
       "inside the folder"},
      {FolderCorruption::kPathEscapeSlash, "PathEscapeSlash", ExpectedKind::kFormat, kIndexFile,
       "inside the folder"},
      {FolderCorruption::kPathAbsolute, "PathAbsolute", ExpectedKind::kFormat, kIndexFile,
       "inside the folder"},
      {FolderCorruption::kIndexNotJson, "IndexNotJson", ExpectedKind::kFormat, kIndexFile,
       "not valid JSON"},
      {FolderCorruption::kIndexNotObject, "IndexNotObject", ExpectedKind::kFormat, kIndexFile,
       "expected a JSON object"},
      {FolderCorruption::kWeightMapMissing, "WeightMapMissing", ExpectedKind::kFormat, kIndexFile,
       "\"weight_map\""},
      {FolderCorruption::kWeightMapNotObject, "WeightMapNotObject", ExpectedKind::kFormat,
       kIndexFile, "\"weight_map\""},
      {FolderCorruption::kWeightMapEmpty, "WeightMapEmpty", ExpectedKind::kFormat, kIndexFile,
       "at least one tensor"},
      {FolderCorruption::kWeightMapValueNotString, "WeightMapValueNotString", ExpectedKind::kFormat,
       kIndexFile, "expected a file name"},
      {FolderCorruption::kDuplicateIndexKey, "DuplicateIndexKey", ExpectedKind::kFormat, kIndexFile,
       "duplicate"},
      {FolderCorruption::kCorruptShard, "CorruptShard", ExpectedKind::kFormat, kShard2,
       "past the end"},
  };
  return cases;
}

inline void write_bytes(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "corruptions.h: cannot write %s\n", p.c_str());
    std::abort();
  }
}

// Writes the valid folder into dir (which must exist and be empty).
inline void write_base_folder(const std::filesystem::path& dir) {
  write_bytes(dir / kShard1, shard1_file());
  write_bytes(dir / kShard2, shard2_file());
  write_bytes(dir / kIndexFile, base_index());
}

// Writes the valid folder with one corruption applied into dir (which must exist and be empty).
inline void write_corrupt_folder(FolderCorruption kind, const std::filesystem::path& dir) {
  write_base_folder(dir);
  auto index = [&](std::string_view text) { write_bytes(dir / kIndexFile, text); };
  switch (kind) {
    case FolderCorruption::kMissingShard:
      index(
          make_index({{"a", kShard1}, {"b", kShard1}, {"c", "model-00003-of-00003.safetensors"}}));
      return;
    case FolderCorruption::kTensorNotInMappedShard:
      index(make_index({{"a", kShard1}, {"b", kShard1}, {"c", kShard1}}));
      return;
    case FolderCorruption::kShardTensorNotInIndex:
      index(make_index({{"a", kShard1}, {"c", kShard2}}));
      return;
    case FolderCorruption::kTensorInTwoShards:
      write_bytes(dir / kShard2,
                  make_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                   R"("c":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}})",
                                   std::string(8, '\0')));
      return;
    case FolderCorruption::kPathEscapeDotDot:
      index(make_index({{"a", kShard1}, {"b", kShard1}, {"c", "../x.safetensors"}}));
      return;
    case FolderCorruption::kPathEscapeSlash:
      index(make_index({{"a", kShard1}, {"b", kShard1}, {"c", "sub/x.safetensors"}}));
      return;
    case FolderCorruption::kPathAbsolute:
      index(make_index({{"a", kShard1}, {"b", kShard1}, {"c", "/etc/passwd"}}));
      return;
    case FolderCorruption::kIndexNotJson:
      index(R"({"weight_map": {"a": )");
      return;
    case FolderCorruption::kIndexNotObject:
      index(R"(["a", "b"])");
      return;
    case FolderCorruption::kWeightMapMissing:
      index(R"({"metadata": {"total_size": 24}})");
      return;
    case FolderCorruption::kWeightMapNotObject:
      index(R"({"weight_map": ["a", "b", "c"]})");
      return;
    case FolderCorruption::kWeightMapEmpty:
      index(R"({"weight_map": {}})");
      return;
    case FolderCorruption::kWeightMapValueNotString:
      index(R"({"weight_map": {"a": 1}})");
      return;
    case FolderCorruption::kDuplicateIndexKey:
      index(make_index({{"a", kShard1}, {"b", kShard1}, {"c", kShard2}, {"a", kShard1}}));
      return;
    case FolderCorruption::kCorruptShard: {
      const std::string s = shard2_file();
      write_bytes(dir / kShard2, s.substr(0, s.size() - 1));
      return;
    }
  }
  std::abort();
}

}  // namespace gptq::testing
