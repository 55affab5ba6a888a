#!/usr/bin/env bash
# Reproduces the README's speed tables: stories260k and the TinyLlama-1.1B shape (random weights,
# `gptq synth`), dense and GPTQ 4-bit g128, at 1 and 2 threads, all in one run.
# Usage: scripts/bench.sh [WORK_DIR]   (needs ~8 GB of disk in WORK_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/gptq-bench}
gptq=build/bin/gptq
[ -x $gptq ] || { cmake --preset release >/dev/null && cmake --build --preset release --target gptq_cli; }
mkdir -p "$work"
[ -d "$work/tinyllama-bf16" ] || $gptq synth -o "$work/tinyllama-bf16" --shape tinyllama-1.1b --dtype bf16
# Kernel speed depends on the layout, not on how the codes were chosen: RTN makes the 4-bit
# folder in seconds (GPTQ makes the same layout; see the quantization figures).
[ -d "$work/tinyllama-q4g128" ] || $gptq quantize -m "$work/tinyllama-bf16" -o "$work/tinyllama-q4g128" \
    --bits 4 --group-size 128 --method rtn
for t in 1 2; do
  $gptq bench -m tests/data/stories260k -p 256 -n 128 -t $t -r 3 --json
  $gptq bench -m "$work/tinyllama-q4g128" -p 512 -n 128 -t $t -r 2 --json
  $gptq bench -m "$work/tinyllama-q4g128" -p 512 -n 128 -t $t -r 2 --json --lm-head-bits 8
  $gptq bench -m "$work/tinyllama-bf16" -p 512 -n 32 -t $t --json
done
