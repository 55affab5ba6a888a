#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job on the bundled stories260k model:
# generate a story and measure perplexity.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target gptq_cli
gptq=build/bin/gptq
model=tests/data/stories260k

echo "== gptq inspect"
$gptq inspect -m $model
echo "== gptq generate (greedy, 64 tokens)"
$gptq generate -m $model -p "Once upon a time" -n 64 --temp 0
echo "== gptq perplexity (TinyStories eval text, ctx 256)"
$gptq perplexity -m $model -f tests/data/text/tinystories-eval.txt -c 256
echo "== gptq quantize (GPTQ 4-bit, group 32, 64 windows of 256 tokens)"
out=$(mktemp -d)/stories260k-gptq-4bit
$gptq quantize -m $model -o "$out" --bits 4 --group-size 32 \
    --calib tests/data/text/tinystories-calib.txt --nsamples 64 --seqlen 256
echo "== gptq inspect / perplexity / generate on the quantized model ($out)"
$gptq inspect -m "$out"
$gptq perplexity -m "$out" -f tests/data/text/tinystories-eval.txt -c 256
$gptq generate -m "$out" -p "Once upon a time" -n 64 --temp 0
