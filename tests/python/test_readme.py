"""The Python example of README.md, run as written, so the README stays true."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import ROOT


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- python-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no ```python block after <!-- python-example -->"
    return m.group(1)


def test_readme_example_quantizes_saves_and_runs(tmp_path):
    code = readme_python_example()
    # The example reads the bundled data by relative paths and writes next to them: run it in a
    # scratch folder that sees the repository's tests/ folder.
    os.symlink(ROOT / "tests", tmp_path / "tests")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "GPTQ_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    out = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert out[0].startswith("Once upon a time"), out
    assert len(out[0]) > len("Once upon a time") + 40  # 64 new tokens of story
    ppl = float(out[-1])
    # Against the dense model on the same text: 4-bit costs a little, not a lot.
    import gptq_cpp

    dense = gptq_cpp.AutoGPTQForCausalLM.from_pretrained(ROOT / "tests/data/stories260k", gptq_cpp.BaseQuantizeConfig())
    fp32 = dense.perplexity((ROOT / "tests/data/text/tinystories-eval.txt").read_text()[:50000], ctx=256).ppl
    assert fp32 < ppl < 1.15 * fp32, (fp32, ppl)
    cfg = json.loads((tmp_path / "stories260k-gptq" / "config.json").read_text())
    q = cfg["quantization_config"]
    assert (q["quant_method"], q["bits"], q["group_size"], q["desc_act"]) == ("gptq", 4, 128, True)  # AutoGPTQ's default act-order
