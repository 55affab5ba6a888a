"""Shared fixtures of the Python package's tests: bundled data, the CLI, calibration rows.

The tests run against the installed package (scripts/test.sh installs it into a venv with
`pip install .`). Tests that compare with the command-line program find it at $GPTQ_CLI or
build/bin/gptq; with $GPTQ_REQUIRE_CLI=1 (as scripts/test.sh sets) a missing program fails
instead of skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
STORIES = DATA / "stories260k"
CALIB_TXT = DATA / "text" / "tinystories-calib.txt"
EVAL_TXT = DATA / "text" / "tinystories-eval.txt"


# One thread unless told otherwise, set before the library first reads it: the CLI runs with one
# thread here, and exact comparisons with it need the same summation order (logits may differ in
# float32 rounding at another thread count). Thread-count tests set theirs per call.
os.environ.setdefault("GPTQ_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def cli() -> Path:
    p = Path(os.environ.get("GPTQ_CLI", ROOT / "build" / "bin" / "gptq"))
    if not p.exists():
        if os.environ.get("GPTQ_REQUIRE_CLI") == "1":
            pytest.fail(f"the gptq program is not at {p} (build it: cmake --build --preset release)")
        pytest.skip(f"the gptq program is not at {p}")
    return p


def run_cli(cli: Path, *args: str) -> str:
    r = subprocess.run([str(cli), *args, "-t", "1"], capture_output=True, text=True)
    assert r.returncode == 0, f"gptq {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def calib_text() -> str:
    return CALIB_TXT.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def eval_text() -> str:
    return EVAL_TXT.read_text(encoding="utf-8")[:40000]


@pytest.fixture(scope="session")
def tokenizer():
    import gptq_cpp

    return gptq_cpp.Tokenizer.from_pretrained(STORIES)


@pytest.fixture(scope="session")
def calib_rows(calib_text, tokenizer) -> list:
    """12 token-id rows of different lengths (40..250 tokens), BOS first, from the calib text."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        ids = tokenizer.encode(calib_text[i * 3000 : i * 3000 + 1000], True)
        rows.append(ids[: int(rng.integers(40, 250))])
    return rows


def write_jsonl(path: Path, rows, key: str = "input_ids") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({key: r}) + "\n")
    return path
