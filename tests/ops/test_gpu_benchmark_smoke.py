"""benchmarks/gpu.py runs end to end (on CPU, tiny settings): a smoke test, nothing is timed
or compared. On a GPU machine scripts/gpu_check.sh runs it for real."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
EXAMPLE = ROOT.parent / "shared" / "examples" / "single_task" / "input.json"
pytestmark = pytest.mark.slow


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_ops_and_floor():
    text = _run("--skip", "train", "infer")
    for line in ("## 1. ops on cpu", "neighbor_list", "env_mat+descriptor force loss"):
        assert line in text
    if EXAMPLE.exists():
        assert "## 3. floor" in text and "x the floor" not in text   # no step measured


@pytest.mark.skipif(not EXAMPLE.exists(), reason=f"{EXAMPLE} not found (../shared)")
def test_training_step():
    text = _run("--skip", "ops", "--dp", "none")
    assert "single   dpx" in text and "x the floor" in text
    assert "## 4. inference" in text and "dpx " in text.split("## 4. inference")[1]
