#!/usr/bin/env bash
# Interop check against the real packages (not part of CI; CPU only, no GPU needed).
#
# For a matrix of settings it quantizes the bundled stories260k, a synthetic model whose every
# linear is quantizable, and SmolLM2-135M-Instruct when present ($GPTQ_SMOLLM2_DIR, default
# ~/.cache/gptq-models/smollm2-135m-instruct); loads each folder in transformers and GPTQModel on
# CPU and compares perplexity and last-token logits with ours; feeds each quantization_config to
# vLLM's GPTQ and GPTQ-Marlin config classes (reporting the kernel it would pick, and why not
# Marlin); and, the other way, loads GPTQModel-written folders here. Prints one table and exits
# non-zero on any refusal or a perplexity difference above 1e-4 relative.
#
#   scripts/interop-check.sh [BUILD_DIR]        (default: build)
#
# Environment: GPTQ_INTEROP_VENV (default /tmp/gptq-interop-venv; created with the pinned
# packages below when missing), GPTQ_SMOLLM2_DIR, GPTQ_INTEROP_OUT (default: a temp folder).
set -euo pipefail
set -f  # the settings below hold regexes: no globbing

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
gptq=$build/bin/gptq
venv=${GPTQ_INTEROP_VENV:-/tmp/gptq-interop-venv}
out=${GPTQ_INTEROP_OUT:-$(mktemp -d /tmp/gptq-interop-XXXXXX)}
smol=${GPTQ_SMOLLM2_DIR:-$HOME/.cache/gptq-models/smollm2-135m-instruct}

# Pinned versions (the README's interop table names them).
TORCH=2.15.0
TRANSFORMERS=5.24.0
GPTQMODEL=7.7.0
VLLM=0.33.0

[ -x "$gptq" ] || { echo "interop-check: $gptq not found; build first (cmake --preset release && cmake --build build)" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$TORCH" --index-url https://download.pytorch.org/whl/cpu
  "$venv/bin/pip" install -q "transformers==$TRANSFORMERS" numpy safetensors
  # GPTQModel and vLLM without their GPU dependencies: only their CPU kernels and config classes run.
  "$venv/bin/pip" install -q --no-deps "gptqmodel==$GPTQMODEL" "vllm==$VLLM"
fi
py=$venv/bin/python

mkdir -p "$out"
calib=$here/tests/data/text/tinystories-calib.txt
models=("stories260k:$here/tests/data/stories260k")
"$gptq" synth --help >/dev/null 2>&1 && {
  "$gptq" synth -o "$out/synth" --shape tiny --dtype fp32 --force >/dev/null 2>&1 \
    && models+=("synth:$out/synth")
}
[ -f "$smol/config.json" ] && models+=("smollm2:$smol")

# name|flags
settings=(
  "b4g32|--bits 4 --group-size 32"
  "b4g128|--bits 4 --group-size 128"
  "b8row|--bits 8 --group-size -1"
  "b3g32asym|--bits 3 --group-size 32 --asym"
  "b4g32asym|--bits 4 --group-size 32 --asym"
  "b4g64asymv2|--bits 4 --group-size 64 --asym --format gptq_v2"
  "b4g32act|--bits 4 --group-size 32 --desc-act"
  "b4g32static|--bits 4 --group-size 32 --desc-act --static-groups"
  "b2g64|--bits 2 --group-size 64"
  "b4mixed|--bits 4 --group-size 32 --dynamic .*self_attn\\.o_proj=bits:8,group_size:64"
)

folders=()
for m in "${models[@]}"; do
  name=${m%%:*} dir=${m#*:}
  for s in "${settings[@]}"; do
    sname=${s%%|*} flags=${s#*|}
    dst=$out/$name-$sname
    # shellcheck disable=SC2086
    "$gptq" quantize -m "$dir" -o "$dst" $flags --calib "$calib" --nsamples 16 --seqlen 256 --force --json \
      >"$dst.json" 2>"$dst.err" || { echo "interop-check: quantize $name $sname failed: $(tail -1 "$dst.err")" >&2; exit 1; }
    folders+=("$dst")
  done
done

exec "$py" "$here/scripts/interop_check.py" --gptq "$gptq" --out "$out" --text "$here/tests/data/text/wikitext2-test.txt" \
  --versions "torch=$TORCH transformers=$TRANSFORMERS gptqmodel=$GPTQMODEL vllm=$VLLM" \
  --calib "$calib" ${smol:+--smollm2 "$smol"} "${folders[@]}"
