// libFuzzer entry point for the safetensors header parser: any input must either parse into
// tensors that lie inside the input, or raise gptq::Error. Any other exception, crash, sanitizer
// report or out-of-bounds tensor is a bug.
//
// Not part of the default build. With clang (libFuzzer ships with it):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DGPTQ_BUILD_FUZZ=ON \
//       -DGPTQ_SANITIZE=ON -DGPTQ_BUILD_BENCH=OFF
//   ninja -C build-fuzz fuzz_safetensors
//   mkdir -p corpus && GPTQ_FUZZ_SEED_DIR=corpus ./build-fuzz/tests/fuzz_safetensors -runs=0
//   ./build-fuzz/tests/fuzz_safetensors corpus -max_len=4096
// The seeds are the valid base file and every kind of tests/io/corruptions.h, so the fuzzer
// starts from the same places the unit tests check.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/dtype.h"
#include "gptq/error.h"
#include "io/corruptions.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (const char* dir = std::getenv("GPTQ_FUZZ_SEED_DIR")) {
    const std::filesystem::path d(dir);
    std::filesystem::create_directories(d);
    gptq::testing::write_bytes(d / "base.safetensors", gptq::testing::base_file());
    for (const auto& c : gptq::testing::file_corruptions()) {
      gptq::testing::write_bytes(d / (std::string(c.name) + ".safetensors"),
                                 gptq::testing::corrupt_file(c.kind));
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path kName = "fuzz.safetensors";
  try {
    const gptq::io::ParsedSafetensors p = gptq::io::parse_safetensors(data, size, kName);
    for (const gptq::io::TensorInfo& t : p.tensors) {
      if (t.data < data || t.data + t.nbytes > data + size) std::abort();
      // Touch the data the way a loader would: convert small float tensors.
      const bool is_float = t.dtype == gptq::DType::kF32 || t.dtype == gptq::DType::kF16 ||
                            t.dtype == gptq::DType::kBF16 || t.dtype == gptq::DType::kF64;
      if (is_float && t.nbytes <= 4096) {
        std::vector<float> out(static_cast<size_t>(t.numel()));
        gptq::core::to_fp32(t.dtype, t.data, out.size(), out.data());
      }
    }
  } catch (const gptq::Error&) {
    // Refusing the input is the expected outcome for most of them.
  }
  return 0;
}
