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
# Environment: GPTQ_INTEROP_VENV (default /tmp/gptq-interop-venv; created with torch and
# transformers when missing; in any venv given, the packages of scripts/interop-requirements.txt
# that are missing are installed with --no-deps), GPTQ_SMOLLM2_DIR, GPTQ_INTEROP_OUT (default: a
# temp folder), GPTQ_INTEROP_FAMILIES=0 (skip the families' tiny models, tests/data/families;
# =only: check just them, without the other models and the reverse direction),
# GPTQ_INTEROP_SMOLLM2_REVERSE=1 (also let GPTQModel quantize SmolLM2: slow on CPU).
set -euo pipefail
set -f  # the settings below hold regexes: no globbing

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
gptq=$build/bin/gptq
venv=${GPTQ_INTEROP_VENV:-/tmp/gptq-interop-venv}
out=${GPTQ_INTEROP_OUT:-$(mktemp -d /tmp/gptq-interop-XXXXXX)}
smol=${GPTQ_SMOLLM2_DIR:-$HOME/.cache/gptq-models/smollm2-135m-instruct}

# Pinned versions (the README's interop table names them); the rest in interop-requirements.txt.
TORCH=2.15.0
TRANSFORMERS=5.24.0

[ -x "$gptq" ] || { echo "interop-check: $gptq not found; build first (cmake --preset release && cmake --build build)" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$TORCH" --index-url https://download.pytorch.org/whl/cpu
  "$venv/bin/pip" install -q "transformers==$TRANSFORMERS" numpy safetensors tokenizers
fi
py=$venv/bin/python
# GPTQModel and vLLM without their GPU dependencies: only their CPU kernels, config classes and
# kernel rules run. Packages already there at the pinned version are left alone.
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/scripts/interop-requirements.txt"
versions=$("$py" -c 'import importlib.metadata as m; print(" ".join(f"{p}={m.version(p)}" for p in ("torch", "transformers", "gptqmodel", "vllm")))')

mkdir -p "$out"
calib=$here/tests/data/text/tinystories-calib.txt
families=${GPTQ_INTEROP_FAMILIES:-1}
models=()
if [ "$families" != only ]; then
  "$gptq" synth -o "$out/synth" --shape tiny --dtype fp32 --force >/dev/null
  models+=("stories260k:$here/tests/data/stories260k" "synth:$out/synth")
  [ -f "$smol/config.json" ] && models+=("smollm2:$smol")
fi
# Every architecture family's tiny transformers-made model (tests/data/families), at 4-bit g32:
# transformers must measure our folder's perplexity as we do (GPTQ_INTEROP_FAMILIES=0 skips them).
if [ "$families" != 0 ]; then
  for d in $(cd "$here/tests/data/families" && ls); do
    [ -f "$here/tests/data/families/$d/config.json" ] && models+=("family-$d:$here/tests/data/families/$d")
  done
fi

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
# SmolLM2 (30 layers) only where its shapes add something: K = 576 is not a multiple of 128.
smol_settings=(
  "b4g64|--bits 4 --group-size 64"
  "b4g64asym|--bits 4 --group-size 64 --asym"
)

family_settings=(
  "b4g32|--bits 4 --group-size 32"
)

# The synthetic model (every linear quantizable, shapes multiples of 64) with the settings whose
# loader verdicts differ.
synth_settings=(
  "b4g128|--bits 4 --group-size 128"
  "b8row|--bits 8 --group-size -1"
  "b3g32asym|--bits 3 --group-size 32 --asym"
  "b4g64asymv2|--bits 4 --group-size 64 --asym --format gptq_v2"
  "b4g32act|--bits 4 --group-size 32 --desc-act"
  "b4g32static|--bits 4 --group-size 32 --desc-act --static-groups"
  "b4mixed|--bits 4 --group-size 32 --dynamic .*self_attn\\.o_proj=bits:8,group_size:64"
)

folders=()
quantize() {  # NAME DIR SETTING...
  local name=$1 dir=$2
  shift 2
  for s in "$@"; do
    local sname=${s%%|*} flags=${s#*|}
    local dst=$out/$name-$sname
    # shellcheck disable=SC2086
    "$gptq" quantize -m "$dir" -o "$dst" $flags --calib "$calib" --nsamples 16 --seqlen 256 --force --json \
      >"$dst.json" 2>"$dst.err" || { echo "interop-check: quantize $name $sname failed: $(tail -1 "$dst.err")" >&2; exit 1; }
    folders+=("$dst")
  done
}
for m in "${models[@]}"; do
  name=${m%%:*} dir=${m#*:}
  case $name in
    smollm2) quantize "$name" "$dir" "${smol_settings[@]}" ;;
    synth) quantize "$name" "$dir" "${synth_settings[@]}" ;;
    family-*) quantize "$name" "$dir" "${family_settings[@]}" ;;
    *) quantize "$name" "$dir" "${settings[@]}" ;;
  esac
done

# The other way: GPTQModel quantizes (NAME:DIR:BITS:GROUP:sym|asym), we load its folders.
reverse=(--reverse "stories260k:$here/tests/data/stories260k:4:32:sym" --reverse "stories260k:$here/tests/data/stories260k:4:32:asym"
         --reverse "synth:$out/synth:4:32:sym" --reverse "synth:$out/synth:4:64:asym")
[ -f "$smol/config.json" ] && [ "${GPTQ_INTEROP_SMOLLM2_REVERSE:-0}" = 1 ] && reverse+=(--reverse "smollm2:$smol:4:64:sym")
[ "$families" = only ] && reverse=()
# GPTQModel's own folders of two families whose layout it changes or whose loading differs:
# Phi-3 (it quantizes gate_proj and up_proj apart) and GPT-2 (Conv1D). (GPTQModel 7.7 cannot
# quantize GPT-NeoX under transformers 5: its offloaded lm_head goes missing.)
if [ "$families" != 0 ]; then
  reverse+=(--reverse "phi3:$here/tests/data/families/phi3:4:32:sym" --reverse "gpt2:$here/tests/data/families/gpt2:4:32:sym")
fi

header="interop check ($versions, CPU); $(date -u +%Y-%m-%d); \`scripts/interop-check.sh\`"
echo "interop-check: ${#folders[@]} folders in $out; the packages' logs go to $out/interop.log" >&2
exec "$py" "$here/scripts/interop_check.py" --gptq "$gptq" --out "$out" --text "$here/tests/data/text/wikitext2-test.txt" \
  --calib "$calib" --header "$header" "${reverse[@]}" "${folders[@]}" 2>"$out/interop.log"
