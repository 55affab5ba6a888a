#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: once in Release, once under
# AddressSanitizer + UBSan. Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
# Tests run side by side (ctest -j), so each gets one thread: two test processes that each
# spin two OpenMP/OpenBLAS threads on two cores slow each other down many times over. Tests of
# thread-count independence set their thread counts explicitly.
export GPTQ_NUM_THREADS=1 OMP_WAIT_POLICY=passive

cmake --preset release -DGPTQ_BUILD_TESTS=ON >/dev/null
cmake --build --preset release -j "$jobs"
ctest --test-dir build --output-on-failure --no-tests=error -j "$jobs"

if [ "${1:-}" != "--no-sanitize" ]; then
  cmake --preset asan -DGPTQ_BUILD_TESTS=ON >/dev/null
  cmake --build --preset asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --no-tests=error -j "$jobs"
fi
