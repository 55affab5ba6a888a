"""A script written for AutoGPTQ runs unchanged except for its import line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gptq_cpp
from conftest import STORIES

SCRIPT = Path(__file__).with_name("autogptq_script.py")
IMPORT = "from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig"


def test_autogptq_script_runs_with_only_the_import_changed(tmp_path):
    pytest.importorskip("transformers")  # the script tokenizes with Hugging Face's tokenizer
    src = SCRIPT.read_text(encoding="utf-8")
    assert src.count(IMPORT) == 1
    ported = tmp_path / "script.py"
    ported.write_text(src.replace(IMPORT, IMPORT.replace("auto_gptq", "gptq_cpp")), encoding="utf-8")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ported), str(STORIES), str(out)], capture_output=True, text=True,
                       env={**os.environ, "GPTQ_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "gptq.cpp runs on the CPU" in r.stderr  # device="cuda:0" is reported, not obeyed
    text = r.stdout.strip().splitlines()[-1]
    assert text.startswith("<s> Once upon a time") or text.startswith("Once upon a time"), text

    # The script's output folder is a GPTQ checkpoint with its settings, and the text it printed
    # is the greedy continuation of that checkpoint.
    m = gptq_cpp.AutoGPTQForCausalLM.from_quantized(out)
    info = m.info()
    assert (info.quantized, info.bits, info.group_size, info.desc_act) == (True, 4, 32, False)
    ids = m.generate("Once upon a time", max_new_tokens=32)
    assert m.tokenizer.decode(ids) in text
