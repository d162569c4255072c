"""Cost of a multi-task step against the number of branches (1, 2, 8, 32) sharing one
se_e2_a descriptor, on synthetic data: seconds per step, start-up time and peak memory.

Only the drawn branch runs forward and backward, and every branch's data is served by one
in-process sampler, so seconds per step should stay flat and memory should grow by a fitting
net (plus its Adam state) and a data index per branch.

    python benchmarks/multitask_scaling.py [--branches 1 2 8 32] [--steps 200]
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

from dpx.data.synthetic import make_dataset  # noqa: E402


def make_input(nbranch: int, data: Path, steps: int, disp: int) -> dict:
    desc = {"type": "se_e2_a", "sel": [40, 80], "rcut_smth": 0.5, "rcut": 6.0,
            "neuron": [25, 50, 100], "axis_neuron": 16, "type_one_side": True, "seed": 1}
    keys = [f"task_{i:02d}" for i in range(nbranch)]
    loss = {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
            "limit_pref_f": 1}
    return {
        "model": {"shared_dict": {"tm": ["O", "H"], "desc": desc},
                  "model_dict": {k: {"type_map": "tm", "descriptor": "desc",
                                     "fitting_net": {"neuron": [240, 240, 240], "seed": i}}
                                 for i, k in enumerate(keys)}},
        "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 100},
        "loss_dict": {k: loss for k in keys},
        "training": {"data_dict": {k: {"training_data": {"systems": [str(data / "train")],
                                                         "batch_size": 1},
                                       "stat_file": str(data / "stat.h5")} for k in keys},
                     "numb_steps": steps, "disp_freq": disp, "save_freq": steps, "seed": 1},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--branches", type=int, nargs="+", default=[1, 2, 8, 32])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--disp", type=int, default=20)
    p.add_argument("--dpx", default=shutil.which("dpx") or str(Path(sys.executable).parent / "dpx"))
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dpx-mt-"))
    make_dataset(base / "data", nsystems=2, nframes=20, nvalid=1, calculator="morse")
    rows = []
    for n in args.branches:
        folder = base / f"b{n}"
        folder.mkdir()
        (folder / "input.json").write_text(json.dumps(make_input(n, base / "data", args.steps,
                                                                 args.disp)))
        r = run_training([args.dpx, "train", "input.json"], folder, folder / "log.txt")
        rows.append((n, r))
        print(f"{n:3d} branches: {r['s_per_step']:.4f} s/step, start-up {r['startup']:.1f} s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print(f"# {args.steps} steps, synthetic water (24 and 36 atoms), se_e2_a 25-50-100 / "
          f"fitting 240x3, {os.cpu_count()} cpus, {time.strftime('%Y-%m-%d')}")
    print(f"{'branches':>8s} {'s/step':>8s} {'vs 1':>6s} {'start-up s':>11s} {'peak MB':>8s} "
          f"{'MB/branch':>9s}")
    s1, m1 = rows[0][1]["s_per_step"], rows[0][1]["peak_rss_mb"]
    for n, r in rows:
        extra = (r["peak_rss_mb"] - m1) / (n - rows[0][0]) if n > rows[0][0] else 0.0
        print(f"{n:8d} {r['s_per_step']:8.4f} {r['s_per_step'] / s1:6.2f} {r['startup']:11.1f} "
              f"{r['peak_rss_mb']:8.0f} {extra:9.1f}")
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
