"""Data-parallel scaling: steps per second and frames per second of `dpx train` with 1 and
N processes under torchrun, same input, same machine, same run.

Each process keeps batch_size frames, so N processes train N times the frames per step. The
machine's cores are split between the processes (cores/N threads each), so on one machine
the figure is the throughput ratio (frames/s with N processes) / (frames/s with 1 process
on all cores): 1.0 means data parallelism costs nothing over threading; across machines the
same run measures scaling efficiency.

    python benchmarks/ddp.py [--nproc 2] [--steps 100]     # ../shared single-task water input
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_training  # noqa: E402
from train_step import prepare  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--disp", type=int, default=10)
    args = p.parse_args()
    dpx = shutil.which("dpx") or str(Path(sys.executable).parent / "dpx")
    cores = os.cpu_count() or 1
    base = Path(tempfile.mkdtemp(prefix="dpx-ddp-"))
    rows = []
    for n in (1, args.nproc):
        folder = base / f"n{n}"
        folder.mkdir()
        cfg_path = prepare("single", args.steps, args.disp, folder)
        cfg = json.loads(cfg_path.read_text())
        cfg["training"].pop("validation_data", None)  # time the training alone
        cfg_path.write_text(json.dumps(cfg))
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // n)))
        cmd = [dpx, "train", "input.json"] if n == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={n}", "--no-python", dpx, "train", "input.json"]
        r = run_training(cmd, folder, folder / "log.txt", env=env)
        rows.append((n, r))
    print(f"# single-task water (192 atoms, batch 1 per process), {args.steps} steps, "
          f"{cores} cpus, {time.strftime('%Y-%m-%d')}")
    print(f"{'procs':>5s} {'threads':>7s} {'s/step':>8s} {'steps/s':>8s} {'frames/s':>9s} "
          f"{'vs 1 proc':>10s}")
    base_fps = 1.0 / rows[0][1]["s_per_step"]
    for n, r in rows:
        fps = n / r["s_per_step"]
        print(f"{n:5d} {max(1, cores // n):7d} {r['s_per_step']:8.4f} {1 / r['s_per_step']:8.2f} "
              f"{fps:9.2f} {fps / base_fps:10.2f}")
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
