"""The CUDA neighbor search's host planning and index arithmetic, checked on CPU.

csrc/kernels/cuda/nlist_plan.h holds everything of the CUDA search that is not a CUDA
construct: the per-frame plans, each atom's image ranges, the ghost scan's order, the bin
grid, the columns a center scans and the (r^2, index) order. cuda_plan_check.cpp replays the
kernels' use of them sequentially on random frames and requires the CPU search's output bit
for bit; it is compiled here with the host compiler (no CUDA needed).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")


def test_cuda_plan_matches_cpu_search(tmp_path):
    exe = tmp_path / "cuda_plan_check"
    build = subprocess.run(
        ["g++", "-std=c++17", "-O1", "-ffp-contract=off", f"-I{ROOT / 'csrc'}", "-o", str(exe),
         str(Path(__file__).parent / "cuda_plan_check.cpp"),
         str(ROOT / "csrc" / "kernels" / "cpu" / "nlist.cpp")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().startswith("ok"), run.stdout + run.stderr
