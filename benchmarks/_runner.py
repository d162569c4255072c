"""Run a training command and time it from outside: each new lcurve.out line is stamped, so
seconds per step are measured the same way for dpx and for DeePMD-kit."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a running process; 0 once it is gone."""
    return _status_mb(pid, "VmHWM:")


def _status_mb(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def process_tree(pid: int) -> list[int]:
    """pid and every process below it (from /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo.extend(int(c) for c in
                            Path(f"/proc/{p}/task/{task}/children").read_text().split())
        except OSError:
            pass
    return out


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared with another process of the tree (forked data
    loader workers, torchrun's workers) are counted once across the tree, not per process."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class _Lines:
    """New complete lines of a growing text file, each stamped when first seen."""

    def __init__(self, path: Path):
        self.path, self.pos, self.rest = path, 0, b""

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except OSError:
            return []
        self.pos += len(chunk)
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        return [s.decode(errors="replace") for s in lines]


def watch(cmd: list[str], folder: Path, log: Path, env=None, poll: float = 0.05,
          first_row_timeout: float | None = None, pss_every: float = 1.0) -> dict:
    """Run cmd in folder (stdout and stderr to log) and watch it from outside.

    Returned: rc; wall (launch to exit); rows: (step, seconds since launch) of each lcurve.out
    data row when it appeared; lines: (seconds, text) of each log line when it appeared;
    peak_tree_mb: the largest sum of VmRSS over the process and its children at a poll;
    peak_pss_mb: the same with PSS (shared pages counted once; polled every pss_every s,
    it walks page tables); peak_single_mb: the largest VmHWM of any one process of the tree;
    main_hwm_mb: VmHWM of the launched process; timed_out: no lcurve row within
    first_row_timeout seconds (the tree is then killed).
    """
    lcurve, text = _Lines(folder / "lcurve.out"), _Lines(log)
    rows, lines = [], []
    tree_mb = pss = single = main_hwm = 0.0
    timed_out, last_pss = False, -pss_every
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        while True:
            done = proc.poll() is not None
            now = time.perf_counter() - t0
            if not done:
                pids = process_tree(proc.pid)
                tree_mb = max(tree_mb, sum(_status_mb(p, "VmRSS:") for p in pids))
                single = max([single] + [vm_hwm_mb(p) for p in pids])
                main_hwm = max(main_hwm, vm_hwm_mb(proc.pid))
                if now - last_pss >= pss_every:
                    pss, last_pss = max(pss, sum(pss_mb(p) for p in pids)), now
            lines += [(now, s) for s in text.read()]
            rows += [(int(r.split()[0]), now) for r in lcurve.read()
                     if r.strip() and not r.startswith("#")]
            if done:
                break
            if first_row_timeout is not None and not rows and now > first_row_timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the session this Popen started
                proc.wait()
                break
            time.sleep(poll)
    return {"rc": proc.returncode, "wall": time.perf_counter() - t0, "rows": rows,
            "lines": lines, "peak_tree_mb": tree_mb, "peak_pss_mb": pss,
            "peak_single_mb": single, "main_hwm_mb": main_hwm, "timed_out": timed_out}


def run_training(cmd: list[str], folder: Path, log: Path, env=None) -> dict:
    """s_per_step: median over display intervals after the first; startup: launch to the
    first lcurve line; peak_rss_mb: VmHWM of the main process; wall: whole run."""
    w = watch(cmd, folder, log, env)
    if w["rc"] != 0:
        sys.exit(f"{cmd[0]} failed (rc {w['rc']}); see {log}")
    stamps = w["rows"]
    per_step = [(t1 - ta) / (s1 - s0) for (s0, ta), (s1, t1) in zip(stamps[1:], stamps[2:])]
    return {"s_per_step": statistics.median(per_step), "startup": stamps[0][1],
            "wall": w["wall"], "intervals": len(per_step), "peak_rss_mb": w["main_hwm_mb"]}
