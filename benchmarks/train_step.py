"""dpx train against DeePMD-kit's `dp --pt train` on the same input, same machine, same run.

For each tool: seconds per training step (median over display intervals after the first,
timed by when lcurve.out gains a line, so both are measured the same way and both include
their validation passes), start-up time (launch to the first lcurve line), and peak RSS
(largest process, from getrusage). Prints the table and the ratios (dp / dpx).

    python benchmarks/train_step.py --example single   # ../shared/examples/single_task
    python benchmarks/train_step.py --example multi    # ../shared/examples/multi_task
    python benchmarks/train_step.py --steps 300 --dp /path/to/venv/bin/dp
    python benchmarks/train_step.py --dpx-ref /path/to/other/venv/bin/dpx   # + another build

The water data comes from ../shared/water (not shipped with dpx).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = {"single": SHARED / "examples" / "single_task" / "input.json",
            "multi": SHARED / "examples" / "multi_task" / "input.json"}
# DeePMD-kit as users install it (tests/oracle/install_lammps.sh); DPX_DP or --dp for another
DEFAULT_DP = os.environ.get("DPX_DP", str(ROOT / ".venv-lammps" / "bin" / "dp"))


def prepare(example: str, steps: int, disp: int, folder: Path) -> Path:
    """The example input with absolute data paths and the benchmark's step counts."""
    src = EXAMPLES[example]
    cfg = json.loads(src.read_text())

    def absolute(section):
        if section and "systems" in section:
            section["systems"] = [str((src.parent / s).resolve()) for s in section["systems"]]
    t = cfg["training"]
    for branch in (t.get("data_dict") or {"": t}).values():
        absolute(branch.get("training_data"))
        absolute(branch.get("validation_data"))
    t.update(numb_steps=steps, disp_freq=disp, save_freq=steps)
    path = folder / "input.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--example", choices=list(EXAMPLES), default="single")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--disp", type=int, default=10)
    p.add_argument("--dp", default=DEFAULT_DP, help="DeePMD-kit's dp executable")
    p.add_argument("--dpx", default=shutil.which("dpx") or str(Path(sys.executable).parent / "dpx"))
    p.add_argument("--dpx-ref", default=None, help="another dpx build's dpx (e.g. before a "
                   "change), timed in the same run as dpx-ref")
    p.add_argument("--repeats", type=int, default=1, help="rounds of all tools, interleaved")
    p.add_argument("--keep", action="store_true", help="keep the run folders")
    args = p.parse_args()
    if not EXAMPLES[args.example].exists():
        sys.exit(f"{EXAMPLES[args.example]} not found: the benchmark needs ../shared")
    base = Path(tempfile.mkdtemp(prefix="dpx-bench-"))
    tools = [("dpx", [args.dpx, "train", "input.json"]),
             ("dp", [args.dp, "--pt", "train", "input.json"])]
    if args.dpx_ref:
        tools.insert(1, ("dpx-ref", [args.dpx_ref, "train", "input.json"]))
    runs = {name: [] for name, _ in tools}
    for k in range(args.repeats):
        for name, cmd in tools:
            folder = base / f"{name}-{k}"
            folder.mkdir()
            prepare(args.example, args.steps, args.disp, folder)
            runs[name].append(run_training(cmd, folder, folder / "log.txt"))
    # per tool, the round with the median step time
    results = {name: sorted(r, key=lambda x: x["s_per_step"])[len(r) // 2]
               for name, r in runs.items()}
    print(f"# {args.example} example, {args.steps} steps, disp_freq {args.disp}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'':7s} {'s/step':>9s} {'start-up s':>11s} {'peak RSS MB':>12s} {'wall s':>8s}"
          f"   s/step of each round")
    for name, r in results.items():
        rounds = " ".join(f"{x['s_per_step']:.4f}" for x in runs[name])
        print(f"{name:7s} {r['s_per_step']:9.4f} {r['startup']:11.1f} {r['peak_rss_mb']:12.0f} "
              f"{r['wall']:8.1f}   {rounds}")
    d, x = results["dp"], results["dpx"]
    print(f"ratio dp/dpx: step {d['s_per_step'] / x['s_per_step']:.2f}x faster, "
          f"start-up {d['startup'] / x['startup']:.2f}x, "
          f"memory {x['peak_rss_mb'] / d['peak_rss_mb']:.2f} of dp's")
    if args.dpx_ref:
        ref = results["dpx-ref"]
        print(f"ratio dp/dpx-ref: step {d['s_per_step'] / ref['s_per_step']:.2f}x; "
              f"dpx-ref/dpx: step {ref['s_per_step'] / x['s_per_step']:.2f}x")
    if args.keep:
        print(f"run folders kept in {base}")
    else:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
