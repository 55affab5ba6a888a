#!/usr/bin/env python3
"""The Python half of scripts/interop-check.sh (run with its venv's interpreter).

For each folder given: our perplexity (the `gptq perplexity` CLI) against transformers' and
GPTQModel's on CPU, over the same windows of the same token ids; vLLM's GPTQ and GPTQ-Marlin
config classes fed the folder's quantization_config (the kernel vLLM would pick; when Marlin
refuses, the reason `gptq inspect` gives from vLLM's rules); then one GPTQModel-quantized folder
loaded here. Prints one table; exit status 1 on any refusal or perplexity difference above 1e-4
relative.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import traceback

CTX = 256
CHUNKS = 4
TOL = 1e-4


def ours(gptq, folder, text):
    r = subprocess.run([gptq, "perplexity", "-m", folder, "-f", text, "-c", str(CTX), "--chunks", str(CHUNKS),
                        "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
    return json.loads(r.stdout)["ppl"]


def ppl_of(model, ids):
    import torch
    nll, n = 0.0, 0
    with torch.no_grad():
        for i in range(CHUNKS):
            w = ids[i * CTX:(i + 1) * CTX]
            if len(w) < CTX:
                break
            x = torch.tensor([w])
            logits = model(x).logits[0].float()
            lp = torch.log_softmax(logits[:-1], dim=-1)
            tgt = torch.tensor(w[1:])
            nll -= float(lp[torch.arange(len(tgt)), tgt].sum())
            n += len(tgt)
    return math.exp(nll / n)


def token_ids(folder, text):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    with open(text, encoding="utf-8") as f:
        body = f.read()[: 40 * CTX * CHUNKS]
    return tok(body).input_ids


def transformers_ppl(folder, ids):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", torch_dtype="float32")
    return ppl_of(m, ids)


def gptqmodel_ppl(folder, ids):
    from gptqmodel import GPTQModel
    m = GPTQModel.load(folder, device="cpu")
    return ppl_of(m.model if hasattr(m, "model") else m, ids)


def vllm_kernels(qc):
    """-> (gptq_ok, marlin_ok, note)"""
    try:
        from vllm.model_executor.layers.quantization.gptq import GPTQConfig
        from vllm.model_executor.layers.quantization.gptq_marlin import GPTQMarlinConfig
    except ImportError:  # vLLM >= 0.33: one config class, Marlin kernels
        from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig
        try:
            AutoGPTQConfig.from_config(dict(qc))
            return False, True, ""
        except Exception as e:  # noqa: BLE001 - the refusal is the result
            return False, False, f"auto_gptq: {e}"
    note = ""
    try:
        GPTQConfig.from_config(dict(qc))
        g_ok = True
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        g_ok, note = False, f"gptq: {e}"
    m_ok = bool(GPTQMarlinConfig.is_gptq_marlin_compatible(dict(qc)))
    if m_ok:
        try:
            GPTQMarlinConfig.from_config(dict(qc))
        except Exception as e:  # noqa: BLE001
            m_ok, note = False, (note + "; " if note else "") + f"marlin: {e}"
    return g_ok, m_ok, note


def marlin_reason(gptq, folder):
    r = subprocess.run([gptq, "inspect", "-m", folder, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        return "?"
    for v in json.loads(r.stdout).get("loaders", []):
        if v["loader"] == "vLLM gptq_marlin" and v["reasons"]:
            return v["reasons"][0]
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gptq", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--versions", default="")
    ap.add_argument("--smollm2", default=None)
    ap.add_argument("folders", nargs="*")
    a = ap.parse_args()

    rows, failures = [], 0
    for folder in a.folders:
        name = os.path.basename(folder)
        with open(os.path.join(folder, "config.json")) as f:
            qc = json.load(f)["quantization_config"]
        row = {"folder": name}
        try:
            row["ours"] = ours(a.gptq, folder, a.text)
        except Exception as e:  # noqa: BLE001
            row["ours"], failures = f"refused: {e}", failures + 1
        ids = token_ids(folder, a.text)
        for key, fn in (("transformers", transformers_ppl), ("gptqmodel", gptqmodel_ppl)):
            try:
                v = fn(folder, ids)
                row[key] = v
                if isinstance(row["ours"], float) and abs(v - row["ours"]) > TOL * row["ours"]:
                    failures += 1
                    row[key + "_note"] = "differs"
            except Exception as e:  # noqa: BLE001
                row[key] = "refused: " + str(e).splitlines()[0][:80] if str(e) else type(e).__name__
                failures += 1
        try:
            g_ok, m_ok, note = vllm_kernels(qc)
            row["vllm"] = "gptq_marlin" if m_ok else ("gptq" if g_ok else "refused")
            if not m_ok:
                row["vllm"] += " (Marlin: " + (marlin_reason(a.gptq, folder) or note or "refused") + ")"
            if not g_ok and not m_ok:
                failures += 1
        except Exception as e:  # noqa: BLE001
            row["vllm"] = "not importable: " + type(e).__name__
            failures += 1
        rows.append(row)

    # The other direction: GPTQModel quantizes stories260k, we load it.
    back = {"folder": "gptqmodel->ours"}
    try:
        from gptqmodel import GPTQModel, QuantizeConfig
        src = os.path.join(os.path.dirname(a.gptq), "..", "..", "tests", "data", "stories260k")
        with open(a.calib, encoding="utf-8") as f:
            lines = [ln for ln in f.read().split("\n") if ln.strip()][:64]
        for sym in (True, False):
            dst = os.path.join(a.out, f"gptqmodel-b4g32-{'sym' if sym else 'asym'}")
            m = GPTQModel.load(src, QuantizeConfig(bits=4, group_size=32, sym=sym), device="cpu")
            m.quantize(lines)
            m.save(dst)
            ids = token_ids(dst, a.text)
            theirs, mine = gptqmodel_ppl(dst, ids), ours(a.gptq, dst, a.text)
            back["sym" if sym else "asym"] = f"{mine:.6g} vs {theirs:.6g}"
            if abs(mine - theirs) > TOL * theirs:
                failures += 1
    except Exception as e:  # noqa: BLE001
        back["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()[:120]
        failures += 1
    rows.append(back)

    print(f"interop check ({a.versions}); perplexity over {CHUNKS} windows of {CTX} tokens")
    print("| folder | ours | transformers | GPTQModel | vLLM kernel |")
    print("|---|---:|---:|---:|---|")
    fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)  # noqa: E731
    for r in rows:
        if r["folder"] == "gptqmodel->ours":
            print(f"| {r['folder']} | {r.get('sym', '')} {r.get('asym', '')} {r.get('error', '')} | | | |")
            continue
        print(f"| {r['folder']} | {fmt(r['ours'])} | {fmt(r['transformers'])} | {fmt(r['gptqmodel'])} | {r['vllm']} |")
    print(f"{failures} refusal(s) or difference(s) above {TOL:g} relative")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
