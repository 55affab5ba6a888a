#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: once in Release, once under
# AddressSanitizer + UBSan. Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
# Tests run side by side (ctest -j), so each gets one thread: two test processes that each
# run two threads each on two cores slow each other down. Tests of
# thread-count independence set their thread counts explicitly.
export GPTQ_NUM_THREADS=1

cmake --preset release -DGPTQ_BUILD_TESTS=ON >/dev/null
cmake --build --preset release -j "$jobs"
ctest --test-dir build --output-on-failure --no-tests=error -j "$jobs"

# The Python package, as a user installs it: `pip install .` into a venv (Debian's system Python
# refuses pip installs, PEP 668), then its pytest suite against the installed package and the
# CLI built above. The venv and the package's build folder (build-python/) persist, so a rerun
# only rebuilds what changed; delete the folder to start over.
venv=build-python/venv
py=/usr/bin/python3
[ -x "$py" ] || py=python3
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r python/requirements-test.txt
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation .
rc=0
GPTQ_CLI="$PWD/build/bin/gptq" GPTQ_REQUIRE_CLI=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "tests/python: pytest collected no tests" >&2
fi
[ "$rc" -eq 0 ] || exit "$rc"

if [ "${1:-}" != "--no-sanitize" ]; then
  cmake --preset asan -DGPTQ_BUILD_TESTS=ON >/dev/null
  cmake --build --preset asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --no-tests=error -j "$jobs"
fi
