// Element types of tensors on disk, with their safetensors spellings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gptq {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element.
size_t dtype_size(DType t);
// "F32", "BF16", ... as safetensors writes them.
std::string_view dtype_name(DType t);
// Parses a safetensors dtype string; returns false for an unknown one.
bool parse_dtype(std::string_view s, DType* out);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[64, 172]"

}  // namespace gptq
