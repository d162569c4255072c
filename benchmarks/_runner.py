"""Run a training command and time it from outside: each new lcurve.out line is stamped, so
seconds per step are measured the same way for dpx and for DeePMD-kit."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a running process; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_training(cmd: list[str], folder: Path, log: Path, env=None) -> dict:
    """s_per_step: median over display intervals after the first; startup: launch to the
    first lcurve line; peak_rss_mb: VmHWM of the main process; wall: whole run."""
    lcurve = folder / "lcurve.out"
    stamps, seen, hwm = [], 0, 0.0
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(0.05)
            hwm = max(hwm, vm_hwm_mb(proc.pid))
            if lcurve.exists():
                rows = [r for r in lcurve.read_text().splitlines() if r and not r.startswith("#")]
                for r in rows[seen:]:
                    stamps.append((int(r.split()[0]), time.perf_counter() - t0))
                seen = len(rows)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed (rc {proc.returncode}); see {log}")
    per_step = [(t1 - ta) / (s1 - s0) for (s0, ta), (s1, t1) in zip(stamps[1:], stamps[2:])]
    return {"s_per_step": statistics.median(per_step), "startup": stamps[0][1], "wall": wall,
            "intervals": len(per_step), "peak_rss_mb": hwm}
