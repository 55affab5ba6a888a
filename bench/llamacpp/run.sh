#!/usr/bin/env bash
# Times llama.cpp (llama-bench) and gptq.cpp (gptq bench) on the same model shape in one run, so
# the README's comparison is a ratio measured on the same machine at the same time (memory
# bandwidth on a shared host moves by +-30% from hour to hour).
#
# llama.cpp comes from the llama-cpp-python source distribution on PyPI (it vendors llama.cpp);
# only llama-bench and llama-quantize are built, for this CPU (GGML_NATIVE). The model is the
# TinyLlama-1.1B shape with random weights (`gptq synth`), written to GGUF by make_gguf.py, then
# quantized to Q4_0 by llama-quantize (which keeps the output matrix in Q6_K, its default).
#
# Usage: bench/llamacpp/run.sh [WORK_DIR] [THREADS...]   (needs ~10 GB of disk; the llama.cpp
# build takes ~15 minutes on two cores and is kept in WORK_DIR for later runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/gptq-llamacpp}
shift || true
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 2)
version=0.3.36
gptq=build/bin/gptq
[ -x $gptq ] || { cmake --preset release >/dev/null && cmake --build --preset release --target gptq_cli; }
mkdir -p "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
if [ ! -x "$src/build/bin/llama-bench" ]; then
  (cd "$work" && python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" >/dev/null &&
     tar xzf "llama_cpp_python-$version.tar.gz")
  cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$src/build" --target llama-bench llama-quantize
fi
[ -d "$work/tinyllama-bf16" ] || $gptq synth -o "$work/tinyllama-bf16" --shape tinyllama-1.1b --dtype bf16
[ -d "$work/tinyllama-q4g128" ] || $gptq quantize -m "$work/tinyllama-bf16" -o "$work/tinyllama-q4g128" \
    --bits 4 --group-size 128 --method rtn
py=python3
$py -c 'import numpy' 2>/dev/null || py=/usr/bin/python3
[ -f "$work/tl-f16.gguf" ] || PYTHONPATH="$src/gguf-py" $py bench/llamacpp/make_gguf.py "$work/tinyllama-bf16" "$work/tl-f16.gguf"
[ -f "$work/tl-q4_0.gguf" ] || "$src/build/bin/llama-quantize" "$work/tl-f16.gguf" "$work/tl-q4_0.gguf" Q4_0 >/dev/null 2>&1
# On AMX machines this build's (0.3.36) AMX matrix multiply, which llama.cpp reaches through its
# repacked weight buffers, segfaults in prompt processing (ggml_backend_amx_mul_mat, on F16 and
# Q4_0 files alike); --repack 0 keeps the plain Q4_0 layout and its AVX-512 dot products, and
# prompt processing runs. Decode runs with the default (repacked) buffers, its faster path, and
# prompt processing there with --repack 0 (elsewhere both with the default).
repack=()
grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && repack=(--repack 0)
llama_bench() {  # THREADS ARGS...
  local t=$1
  shift
  "$src/build/bin/llama-bench" -m "$work/tl-q4_0.gguf" -r 3 -t "$t" "$@" -o json 2>/dev/null |
    $py -c 'import json,sys
for r in json.load(sys.stdin):
    print(json.dumps({"engine": "llama.cpp Q4_0", "threads": r["n_threads"], "n_prompt": r["n_prompt"], "n_gen": r["n_gen"], "repack": r.get("repack", True), "tok_s": round(r["avg_ts"], 2)}))'
}
for t in "${threads[@]}"; do
  llama_bench "$t" -p 512 -n 0 "${repack[@]}"
  llama_bench "$t" -p 0 -n 128
  $gptq bench -m "$work/tinyllama-q4g128" -p 512 -n 128 -r 3 -t "$t" --json
  $gptq bench -m "$work/tinyllama-q4g128" -p 512 -n 128 -r 3 -t "$t" --json --lm-head-bits 8
done
