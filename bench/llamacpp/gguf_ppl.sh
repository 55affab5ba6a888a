#!/usr/bin/env bash
# llama.cpp runs our exported GGUF: llama-perplexity on `gptq export-gguf`'s file of a GPTQ
# folder, next to `gptq perplexity --llama-cpp` on the folder itself (same windows, same scored
# tokens), and next to llama.cpp's own round-to-nearest Q4_0 of the same unquantized model, with
# and without an importance matrix from the calibration text. The unquantized GGUF that
# llama-quantize starts from is our export of the dense folder (F32 as stored). llama-quantize
# runs with --pure and keeps the token embedding (and output) in F32 as our file does, and keeps
# in F32 every tensor named in KEEP_F32 (the linears the GPTQ folder left unquantized), so that
# both files quantize the same tensors.
#
# Usage: bench/llamacpp/gguf_ppl.sh MODEL_DIR GPTQ_DIR[,GPTQ_DIR...] EVAL.txt CALIB.txt CTX CHUNKS [WORK_DIR]
#   (several GPTQ folders of the same model, comma-separated: one row each, one RTN/imatrix run)
#   env KEEP_F32="ffn_gate ffn_up ffn_down" (default: none)
# llama.cpp comes from the llama-cpp-python sdist on PyPI, as in run.sh (built niced, -j2).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$1 gptq_dirs=$2 eval_txt=$3 calib_txt=$4 ctx=$5 chunks=$6
work=${7:-/tmp/gptq-llamacpp}
version=0.3.36
gptq=build/bin/gptq
mkdir -p "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
bin="$src/build/bin"
if [ ! -x "$bin/llama-perplexity" ] || [ ! -x "$bin/llama-imatrix" ] || [ ! -x "$bin/llama-quantize" ]; then
  [ -d "$src" ] || (cd "$work" && python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" >/dev/null &&
     tar xzf "llama_cpp_python-$version.tar.gz")
  nice -n 8 cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  nice -n 8 cmake --build "$src/build" -j2 --target llama-perplexity llama-quantize llama-imatrix
fi
IFS=, read -r -a gdirs <<<"$gptq_dirs"
name=$(basename "${gdirs[0]}")
keep=()
for t in ${KEEP_F32:-}; do keep+=(--tensor-type "$t=f32"); done
$gptq export-gguf -m "$model" -o "$work/$name-f32.gguf" --force >/dev/null
"$bin/llama-quantize" --pure --token-embedding-type f32 --output-tensor-type f32 "${keep[@]}" \
  "$work/$name-f32.gguf" "$work/$name-rtn-q4_0.gguf" Q4_0 >"$work/$name-quantize.log" 2>&1
"$bin/llama-imatrix" -m "$work/$name-f32.gguf" -f "$calib_txt" -c "$ctx" --chunks "$chunks" \
  -o "$work/$name-imatrix.gguf" >"$work/$name-imatrix.log" 2>&1
"$bin/llama-quantize" --pure --imatrix "$work/$name-imatrix.gguf" --token-embedding-type f32 --output-tensor-type f32 \
  "${keep[@]}" "$work/$name-f32.gguf" "$work/$name-imat-q4_0.gguf" Q4_0 >>"$work/$name-quantize.log" 2>&1
# On AMX machines (a Sapphire Rapids VM here) this llama.cpp's AMX matrix multiply
# (ggml_backend_amx_mul_mat, used through the repacked "extra" buffer type for Q4_0) segfaults
# on the first batch; --no-repack keeps the weights in their plain Q4_0 layout and its AVX-512
# dot products, which run.
norepack=()
grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && norepack=(--no-repack)
ppl() {  # llama-perplexity's final estimate. Its logger runs on a thread that this build does
  # not always drain at exit (the last lines go missing now and then, more often into a pipe),
  # so the output goes to a file and a run without the final line is repeated.
  for _ in 1 2 3 4; do
    "$bin/llama-perplexity" -m "$1" -f "$eval_txt" -c "$ctx" --chunks "$chunks" -b "$ctx" "${norepack[@]}" >"$work/ppl.log" 2>&1
    local v
    v=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$work/ppl.log")
    if [ -n "$v" ]; then echo "$v"; return; fi
  done
  echo "llama-perplexity printed no final estimate for $1 (see $work/ppl.log)" >&2
  return 1
}
gppl() {
  $gptq perplexity -m "$1" -f "$eval_txt" -c "$ctx" --chunks "$chunks" --llama-cpp --json |
    python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'
}
rows=()
for d in "${gdirs[@]}"; do
  n=$(basename "$d")
  $gptq export-gguf -m "$d" -o "$work/$n.gguf" --force >/dev/null
  rows+=("| $n -> gptq export-gguf | $(ppl "$work/$n.gguf") | $(gppl "$d") |")
done
dense=$(ppl "$work/$name-f32.gguf")
rtn=$(ppl "$work/$name-rtn-q4_0.gguf")
imat=$(ppl "$work/$name-imat-q4_0.gguf")
g_f=$(gppl "$model")
echo "| file | llama-perplexity | gptq perplexity --llama-cpp |"
echo "|---|---:|---:|"
echo "| unquantized (F32) | $dense | $g_f |"
printf '%s\n' "${rows[@]}"
echo "| llama-quantize Q4_0 (RTN) | $rtn | |"
echo "| llama-quantize Q4_0 + imatrix | $imat | |"
