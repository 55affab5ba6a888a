#!/usr/bin/env python3
"""The Python half of scripts/interop-check.sh (run with its venv's interpreter).

For each folder given (written by `gptq quantize`): our perplexity (the `gptq perplexity` CLI)
against transformers' and GPTQModel's on CPU, over the same windows of the same text, and the
last-position logits of one window (`gptq logits`) against both; vLLM's AutoGPTQ config class
fed the folder's quantization_config, and for each quantized linear the kernel vLLM's own
selection code picks on a CUDA device of capability 8.0 (vLLM needs no GPU for this; the
platform checks are answered as such a device would); and `gptq inspect`'s verdict for each
loader against what the loader did. Then the other way: GPTQModel quantizes models on CPU and
we load its folders, with the same comparisons.

A refusal counts as a failure unless `gptq inspect` predicted it from the loader's stated rules
(then the table names it as that loader's own limit); a verdict of inspect that the loader
contradicts is a failure too. Exit status 1 on any failure, or a perplexity difference above 1e-4
relative, or last-position logits further apart than LOGIT_TOL.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import traceback

# GPTQModel compiles its dequantize_weight with torch.compile; a graph traced in fp16 at load then
# refuses the fp32 copies this check makes ("torch.float16 != torch.float32"). Eager mode only.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

CTX = 256
CHUNKS = 4
TOL = 1e-4         # our perplexity against GPTQModel's reading in fp32 (exact arithmetic on both sides)
KERNEL_TOL = 1e-3  # against transformers' GPTQ path: GPTQModel's CPU kernel (TorchCpuAvx512Linear
                   # here) computes in reduced precision (1.5e-4 on stories260k 4-bit g32, where the
                   # same weights dequantized in fp32 give 2e-8)
LOGIT_IDS = 64     # length of the sequence whose last-position logits are compared
LOGIT_TOL = 1e-3   # max |difference| of those logits, relative to max(1, max |logit|)
VLLM_CAPABILITY = (8, 0)


def short(e):
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:150]


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        raise RuntimeError(err[-1] if err else f"exit {r.returncode}")
    return json.loads(r.stdout)


def ours_ppl(gptq, folder, text):
    return run_json([gptq, "perplexity", "-m", folder, "-f", text, "-c", str(CTX), "--chunks", str(CHUNKS), "--json"])


def ours_logits(gptq, folder, ids):
    import torch
    j = run_json([gptq, "logits", "-m", folder, "--ids", ",".join(map(str, ids))])
    return torch.tensor(j["logits"], dtype=torch.float64)


def windows(ids):
    return [ids[i * CTX:(i + 1) * CTX] for i in range(CHUNKS) if len(ids) >= (i + 1) * CTX]


def ppl_of(model, ids):
    import torch
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in windows(ids):
            logits = model(torch.tensor([w])).logits[0].double()
            lp = torch.log_softmax(logits[:-1], dim=-1)
            tgt = torch.tensor(w[1:])
            nll -= float(lp[torch.arange(len(tgt)), tgt].sum())
            n += len(tgt)
    return math.exp(nll / n), n


def last_logits(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double()


def token_ids(folder, text):
    """The text's ids as the folder's tokenizer.json defines them (the `tokenizers` library).
    Not AutoTokenizer: transformers 5 rebuilds a LlamaTokenizer's pipeline in Python (a Metaspace
    pre-tokenizer instead of the file's Prepend/Replace normalizers), which drops one "▁" before
    a text that starts with a space (wikitext2 does), so its ids differ from the file's."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    with open(text, encoding="utf-8") as f:
        return tok.encode(f.read()).ids


def load_transformers(folder):
    import torch
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", dtype=torch.float32).eval()


def _gptqmodel():
    """GPTQModel, with its CPU worker pool sized for hosts of 1-2 cores: 7.7 gives the CPU pool
    (cores + 1) // 2 workers and then asks for a 2-worker loader pool inside it, which fails
    ("requests 2 workers but parent 'cpu' only has 1") on such hosts."""
    import gptqmodel
    if not getattr(gptqmodel, "_interop_patched", False):
        orig = gptqmodel._default_cpu_workers
        gptqmodel._default_cpu_workers = lambda: max(2, orig())
        gptqmodel._interop_patched = True
    return gptqmodel


def load_gptqmodel_dequantized(folder):
    """GPTQModel's reading of the folder in fp32: its torch kernel's own dequantize_weight() (its
    unpacking, v1/v2 zero conversion and g_idx) on fp32 copies of the stored fp16 scales, each
    quantized linear replaced by a dense fp32 one. Differences here are differences of reading."""
    import torch
    gm = _gptqmodel()
    from gptqmodel.utils.backend import BACKEND
    m = gm.GPTQModel.load(folder, device="cpu", dtype=torch.float16, backend=BACKEND.TORCH)
    model = (m.model if hasattr(m, "model") else m).eval()
    # The dense head as GPTQModel loaded it must be the folder's (7.7 leaves GPT-NeoX's embed_out
    # unloaded under transformers 5, which calls it lm_head): a head it did not load is a refusal,
    # not something the restore below may repair.
    from safetensors import safe_open
    head = model.get_output_embeddings()
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".safetensors") or head is None:
            continue
        with safe_open(os.path.join(folder, fn), "pt") as f:
            for key in ("lm_head.weight", "embed_out.weight"):
                if key in f.keys():
                    stored = f.get_tensor(key).float()
                    if stored.shape != head.weight.shape or not torch.allclose(
                            head.weight.float(), stored, rtol=1e-3, atol=1e-3):
                        raise RuntimeError(f"GPTQModel did not load the output head {key} (its head differs from the file's)")
    n = 0
    for name, mod in list(model.named_modules()):
        if not hasattr(mod, "dequantize_weight") or not hasattr(mod, "qweight"):
            continue
        for _, buf in mod.named_buffers(recurse=False):
            if buf.is_floating_point():
                buf.data = buf.data.float()
        w = mod.dequantize_weight().float()  # [in, out]
        dense = torch.nn.Linear(w.shape[0], w.shape[1], bias=getattr(mod, "bias", None) is not None)
        dense.weight.data = w.t().contiguous()
        if dense.bias is not None:
            dense.bias.data = mod.bias.data.float()
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, dense)
        n += 1
    if n == 0:
        raise RuntimeError("no GPTQModel quantized linear found")
    model = model.float()
    # GPTQModel loads in fp16; put back the folder's other tensors (embeddings, norms, dense
    # linears) in their stored precision, so that only its reading of the GPTQ tensors is tested.
    from safetensors.torch import load_file
    sd = model.state_dict()
    stored = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            stored.update({k: v for k, v in load_file(os.path.join(folder, fn)).items() if k in sd})
    if "lm_head.weight" not in stored and "model.embed_tokens.weight" in stored and "lm_head.weight" in sd:
        stored["lm_head.weight"] = stored["model.embed_tokens.weight"]
    model.load_state_dict({k: v.float() for k, v in stored.items()}, strict=False)
    return model


def inspect(gptq, folder):
    """-> {loader: (loads, [reasons])} from `gptq inspect --json`."""
    j = run_json([gptq, "inspect", "-m", folder, "--json"])
    return {v["loader"]: (v["loads"], v["reasons"]) for v in j.get("loaders", [])}


def quantized_linears(folder):
    """-> {module: (K, N, has_qzeros_cols)} from the folder's safetensors headers."""
    import struct
    out = {}
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        for name, t in hdr.items():
            if name.endswith(".qweight"):
                out.setdefault(name[:-len(".qweight")], {})["qweight"] = t["shape"]
            elif name.endswith(".scales"):
                out.setdefault(name[:-len(".scales")], {})["scales"] = t["shape"]
            elif name.endswith(".qzeros"):
                out.setdefault(name[:-len(".qzeros")], {})["qzeros"] = t["shape"]
    return {m: (s["qweight"][0] * 32 // 1, s["scales"][1], s.get("qzeros")) for m, s in out.items() if "qweight" in s}


class _AsCuda:
    """Answers vLLM's platform questions as a CUDA device of capability VLLM_CAPABILITY would."""

    def __enter__(self):
        from vllm.platforms import current_platform
        from vllm.platforms.interface import DeviceCapability
        cap = DeviceCapability(*VLLM_CAPABILITY)
        self.p, self.saved = current_platform, {}
        over = {
            "is_cuda": lambda *a: True,
            "is_cuda_alike": lambda *a: True,
            "is_rocm": lambda *a: False,
            "get_device_capability": lambda *a, **k: cap,
            "has_device_capability": lambda c, *a, **k: (cap.to_int() >= (c if isinstance(c, int) else c[0] * 10 + c[1])),
            "is_device_capability": lambda c, *a, **k: cap.to_int() == (c if isinstance(c, int) else c[0] * 10 + c[1]),
        }
        for k, f in over.items():
            self.saved[k] = self.p.__dict__.get(k, None)
            setattr(self.p, k, f)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                delattr(self.p, k)
            else:
                setattr(self.p, k, v)


def vllm_check(folder, qc):
    """-> (loads, summary): vLLM 0.33's AutoGPTQ config and, per quantized linear, its kernel."""
    import copy
    import torch
    from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig
    from vllm.model_executor.layers.quantization.utils.gptq_utils import get_dynamic_override, override_config
    from vllm.model_executor.layers.quantization.utils import marlin_utils
    from vllm.model_executor.kernels.linear import _POSSIBLE_KERNELS, MPLinearLayerConfig
    from vllm.platforms import PlatformEnum
    try:
        cfg = AutoGPTQConfig.from_config(dict(qc))
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        return False, "config refused: " + short(e)
    picked, refused = {}, []
    cc = VLLM_CAPABILITY[0] * 10 + VLLM_CAPABILITY[1]
    with _AsCuda():
        for module, (k32, n, qz) in sorted(quantized_linears(folder).items()):
            c = copy.deepcopy(cfg)
            if get_dynamic_override(c, layer_name=module) is False:
                continue
            try:
                override_config(c, prefix=module)
                c.quant_type = AutoGPTQConfig.TYPE_MAP[(c.weight_bits, c.is_sym)]
            except Exception as e:  # noqa: BLE001
                refused.append(f"{module}: {short(e)}")
                continue
            k = k32 // c.weight_bits
            ok, why = marlin_utils._check_marlin_supported(c.quant_type, c.group_size, False, cc)
            if not ok:
                refused.append(f"{module}: {why}")
                continue
            pack = 32 // c.weight_bits
            if qz is not None and qz[1] != n // pack:
                refused.append(f"{module}: qzeros has {qz[1]} words per group, vLLM allocates N/{pack} = {n // pack}")
                continue
            lc = MPLinearLayerConfig(full_weight_shape=(k, n), partition_weight_shape=(k, n), weight_type=c.quant_type,
                                     act_type=torch.float16, group_size=c.group_size, zero_points=False)
            why = []
            for kern in _POSSIBLE_KERNELS[PlatformEnum.CUDA]:
                if kern.get_min_capability() > cc:
                    why.append(f"{kern.__name__} needs capability {kern.get_min_capability()}")
                    continue
                try:
                    can, reason = kern.can_implement(lc)
                except Exception as e:  # noqa: BLE001
                    can, reason = False, short(e)
                if can:
                    picked[kern.__name__] = picked.get(kern.__name__, 0) + 1
                    break
                why.append(f"{kern.__name__}: {reason}")
            else:
                refused.append(f"{module}: no kernel ({'; '.join(why)})")
    if refused:
        return False, f"{len(refused)} linear(s) refused, e.g. {refused[0]}"
    return True, ", ".join(f"{k} x{v}" for k, v in sorted(picked.items()))


def compare(row, key, theirs, ours, tol):
    """Records a relative difference; -> 1 when above tol."""
    d = abs(theirs - ours) / abs(theirs)
    row[key] = d
    return 1 if d > tol else 0


def logit_diff(a, b):
    import torch
    return float(torch.max(torch.abs(a - b))) / max(1.0, float(torch.max(torch.abs(b))))


def check_folder(a, folder, name, text, notes):
    """One folder through every loader. -> (row, failures)."""
    with open(os.path.join(folder, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    row, fails = {"folder": name}, 0
    try:
        pred = inspect(a.gptq, folder)
    except Exception as e:  # noqa: BLE001
        pred, fails = {}, fails + 1
        notes.append(f"{name}: gptq inspect failed: {short(e)}")
    ids = token_ids(folder, text)
    try:
        with open(text, encoding="utf-8") as f:
            head = f.read(200)
        mine = run_json([a.gptq, "logits", "-m", folder, "-p", head])["ids"]
        from tokenizers import Tokenizer
        if mine != Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).encode(head).ids:
            fails += 1
            notes.append(f"{name}: our tokenization of the text differs from the tokenizers library's")
        o = ours_ppl(a.gptq, folder, text)
        row["ours"] = o["ppl"]
        lo = ours_logits(a.gptq, folder, ids[:LOGIT_IDS])
    except Exception as e:  # noqa: BLE001
        row["ours"], lo, fails = "refused", None, fails + 1
        notes.append(f"{name}: gptq refused it: {short(e)}")
    for key, loader, fn in (("transformers", "transformers", load_transformers),
                            ("gptqmodel", "GPTQModel", load_gptqmodel_dequantized)):
        predicted = pred.get(loader, (True, []))
        tol, ltol = (KERNEL_TOL, 10 * LOGIT_TOL) if key == "transformers" else (TOL, LOGIT_TOL)
        try:
            m = fn(folder)
            if key == "transformers":
                kern = {type(x).__name__ for x in m.modules() if hasattr(x, "qweight")}
                row["kernel"] = ",".join(sorted(kern))
            ppl, n = ppl_of(m, ids)
            row[key] = ppl
            if isinstance(row["ours"], float):
                if n != o["tokens"]:
                    fails += 1
                    notes.append(f"{name}: {loader} scored {n} tokens, gptq {o['tokens']}")
                if compare(row, key + "_rel", ppl, row["ours"], tol):
                    fails += 1
                    notes.append(f"{name}: {loader} perplexity differs by {row[key + '_rel']:.2e} relative")
                d = logit_diff(lo, last_logits(m, ids[:LOGIT_IDS]))
                row[key + "_logits"] = d
                if d > ltol:
                    fails += 1
                    notes.append(f"{name}: {loader} last-position logits differ by {d:.2e}")
            if not predicted[0]:
                fails += 1
                notes.append(f"{name}: {loader} loads it but gptq inspect says no ({'; '.join(predicted[1])})")
            del m
        except Exception as e:  # noqa: BLE001
            row[key] = "refused"
            if predicted[0]:
                fails += 1
                notes.append(f"{name}: {loader} refused it: {short(e)}")
            else:
                row[key] = "refused (predicted)"
                notes.append(f"{name}: {loader} refused it as gptq inspect predicted ({predicted[1][0]}): {short(e)}")
    try:
        v_ok, v_note = vllm_check(folder, qc)
        predicted = pred.get("vLLM gptq_marlin", (True, []))
        row["vllm"] = v_note if v_ok else "refused"
        if v_ok != predicted[0]:
            fails += 1
            notes.append(f"{name}: vLLM {'takes' if v_ok else 'refuses'} it ({v_note}) but gptq inspect says "
                         f"{'yes' if predicted[0] else 'no: ' + '; '.join(predicted[1])}")
        elif not v_ok:
            row["vllm"] = "refused (predicted)"
            notes.append(f"{name}: vLLM 0.33 refuses it, as gptq inspect predicted ({predicted[1][0]}): {v_note}")
    except Exception as e:  # noqa: BLE001
        row["vllm"], fails = "error", fails + 1
        notes.append(f"{name}: vLLM check failed: {''.join(traceback.format_exception_only(type(e), e)).strip()[:200]}")
    return row, fails


def gptqmodel_quantize(src, dst, calib, bits, group, sym, nsamples, seqlen):
    import torch
    gm = _gptqmodel()
    GPTQModel, QuantizeConfig = gm.GPTQModel, gm.QuantizeConfig
    ids = token_ids(src, calib)
    rows = [ids[i * seqlen:(i + 1) * seqlen] for i in range(nsamples)]
    data = [{"input_ids": torch.tensor([r]), "attention_mask": torch.ones(1, len(r), dtype=torch.long)} for r in rows]
    m = GPTQModel.load(src, QuantizeConfig(bits=bits, group_size=group, sym=sym, desc_act=False), device="cpu",
                       dtype=torch.float32)
    m.quantize(data, batch_size=1)
    m.save(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptq", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", required=True, help="evaluation text (its first CTX*CHUNKS tokens are used)")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--header", default="")
    ap.add_argument("--reverse", action="append", default=[],
                    help="NAME:DIR:BITS:GROUP:sym|asym - GPTQModel quantizes DIR, we load it")
    ap.add_argument("folders", nargs="*")
    a = ap.parse_args()

    # The evaluation text, cut so that every tool reads the same characters.
    body = open(a.text, encoding="utf-8").read()[: 40 * CTX * CHUNKS]
    text = os.path.join(a.out, "eval.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write(body)

    rows, fails, notes = [], 0, []
    for folder in a.folders:
        row, f = check_folder(a, folder, os.path.basename(folder), text, notes)
        rows.append(row)
        fails += f
        print(f"[{len(rows)}/{len(a.folders) + len(a.reverse)}] {row['folder']}: {f} failure(s)", flush=True)

    for spec in a.reverse:
        name, src, bits, group, sym = spec.split(":")
        dst = os.path.join(a.out, f"gptqmodel-{name}-b{bits}g{group}{'' if sym == 'sym' else 'asym'}")
        try:
            gptqmodel_quantize(src, dst, a.calib, int(bits), int(group), sym == "sym", 16, min(CTX, 256))
        except Exception as e:  # noqa: BLE001
            rows.append({"folder": os.path.basename(dst), "ours": "", "transformers": "", "gptqmodel": "quantize failed",
                         "vllm": ""})
            notes.append(f"{os.path.basename(dst)}: GPTQModel could not quantize {name}: {short(e)}")
            fails += 1
            continue
        row, f = check_folder(a, dst, os.path.basename(dst), text, notes)
        rows.append(row)
        fails += f
        print(f"[{len(rows)}/{len(a.folders) + len(a.reverse)}] {row['folder']}: {f} failure(s)", flush=True)

    fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)  # noqa: E731
    rel = lambda r, k: f" ({r[k + '_rel']:.1e})" if k + "_rel" in r else ""  # noqa: E731
    lg = lambda r, k: f"{r[k + '_logits']:.1e}" if k + "_logits" in r else ""  # noqa: E731
    print(a.header)
    print(f"perplexity over {CHUNKS} windows of {CTX} tokens (relative difference to ours); logits: max |difference| "
          f"of the last position after {LOGIT_IDS} tokens over max(1, max |logit|); vLLM: kernel per linear "
          f"on capability {VLLM_CAPABILITY[0]}.{VLLM_CAPABILITY[1]}")
    print()
    print("| folder | ours | transformers (kernel) | GPTQModel (fp32 dequantized) | logits Δ tf / GM | vLLM 0.33 |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['folder']} | {fmt(r['ours'])} | {fmt(r['transformers'])}{rel(r, 'transformers')} | "
              f"{fmt(r['gptqmodel'])}{rel(r, 'gptqmodel')} | {lg(r, 'transformers')} / {lg(r, 'gptqmodel')} | {r['vllm']} |")
    print()
    for n in notes:
        print("- " + n)
    kernels = sorted({r["kernel"] for r in rows if r.get("kernel")})
    print(f"- transformers ran GPTQModel's kernel(s) {', '.join(kernels)} (fp16 scales; tolerance {KERNEL_TOL:g} "
          f"in perplexity, {10 * LOGIT_TOL:g} in logits); GPTQModel: its TorchLinear's dequantize_weight() in fp32 "
          f"(tolerance {TOL:g} and {LOGIT_TOL:g})")
    print(f"{fails} refusal(s) or difference(s) above those tolerances")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
