"""Start-up time and peak memory of `dpx train` against the data set's size, side by side with
DeePMD-kit's `dp --pt train` in one run (issue 28); and the steady step time on the small
shared examples against another checkout.

    # the data (outside the repo; nothing committed): N frames as 4 branches of ~200-frame
    # systems made from ../shared/water/data; skipped when DIR is already complete
    python benchmarks/data_scale.py make --frames 20000 100000 400000 [--root /work/scale]

    # 50 steps of each tool per size; dp is stopped when it has no step after --dp-timeout s
    python benchmarks/data_scale.py run --frames 20000 [--tools dpx,dp] [--steps 50]
    python benchmarks/data_scale.py run --frames 400000 --tools dpx --ranks 2
    python benchmarks/data_scale.py run --frames 20000 --stat-file      # + dpx cold/warm cache

    # steady s/step on ../shared/examples, this checkout against another one (or a git ref,
    # unpacked with git archive and given this checkout's compiled ops: same csrc only)
    python benchmarks/data_scale.py steady --baseline-ref 6374de6 [--steps 200]
    python benchmarks/data_scale.py steady --baseline ../main --read-data /work/scale/20000

Run from a checkout: `PYTHONPATH=$PWD/python:$PWD python benchmarks/data_scale.py ...`; dpx is
run from source (`python -m dpx.cli.main`, this interpreter, PYTHONPATH = the checkout's
python/), DeePMD-kit from --dp (default as in train_step.py: DPX_DP or .venv-lammps/bin/dp).

The data: frame i of a system is a frame of one source system (data_0..3, 192 atoms, drawn
with replacement) with Gaussian noise of --noise A on each coordinate (seeded per system);
box, energy and forces kept as they are. Written as float64 (what both tools train in):
400 000 frames are ~3.7 GB of npy.

The input (the same file for both tools): the shared multi_task example's model (a shared
se_e2_a descriptor, fitting 240x3) with 4 branches, branch k training on DIR/branch_k (every
system below it), equal model_prob, batch_size 1, no validation data, no stat_file (so both
start cold), data_stat_nbatch at its default (10). sel is the example's fixed [46, 92] for
both, and neither tool is given --skip-neighbor-stat: each computes its neighbor statistics
over all the training frames (DeePMD-kit does this for a fixed sel too) and trains the same
model.

What is measured, the same way for both tools (benchmarks/_runner.watch): time to the first
step = launch to the first data row of lcurve.out (both write it after step 1, with the
display's losses of every branch); peak RSS of the process tree (sum of VmRSS over the
process and its children, polled every 0.1 s: DeePMD-kit's data loader workers, torchrun's
ranks), the same with PSS (shared pages counted once), the largest single process (VmHWM);
wall and exit code. DeePMD-kit forks data loader workers (NUM_WORKERS, per branch): their
VmRSS counts the parent's pages again, so compare its PSS. Under torchrun the tree is the
agent and one torch runtime per rank. dpx's start-up stages (and DeePMD-kit's, coarser) are
read from the log, each line stamped when it appeared: imports, reading the data index,
neighbor statistics, data statistics, building the model and optimizer, the first step.

steady: the step of the shared examples is short (~0.1 s on 2 cores) and a shared machine
moves it by more than 5 %: use --repeats 3 or more (rounds interleaved, medians compared).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_training, watch  # noqa: E402
from train_step import DEFAULT_DP, EXAMPLES, ROOT, SHARED, prepare  # noqa: E402

WATER = SHARED / "water" / "data"
DEFAULT_ROOT = Path(os.environ.get("DPX_SCALE_ROOT", ROOT.parent / "scale"))
NBRANCH = 4
LABELS = ("box", "energy", "force", "virial")

# Start-up stages as each tool's log tells them: (stage, end) with end ("at", pattern): the
# stage ends at the first line matching pattern, or ("before", pattern): at the line before
# it (a stage without a closing line of its own, e.g. dpx's data index: each branch logs its
# systems, then the neighbor statistics follow). A stage's time is the gap between the
# stamps of its end and the previous stage's (launch for the first).
# the neighbor statistics end at their summary line; their progress lines come every 5 s, so
# where the scan began is the summary's stamp less the seconds it reports (split_logged)
DPX_STAGES = [("imports, config", ("at", r"\] dpx INFO ")),
              ("reading the data index", ("before", r"neighbor statistics of ")),
              ("neighbor statistics", ("at", r"max neighbors per type")),
              ("data statistics", ("at", r"data statistics in ")),
              ("model, optimizer", ("at", r"training \d+ steps from step"))]
DP_STAGES = [("imports, config, reading the data", ("at", r"Calculate neighbor statistics")),
             ("neighbor statistics", ("before", r"Constructing DataLoaders")),
             ("data loaders", ("before", r"Packing data for statistics")),
             ("data statistics, model", ("at", r"Start to train"))]


# ---------------------------------------------------------------- make

def layout(nframes: int) -> list[list[int]]:
    """Frames of each system of each branch: ~200-frame systems, 4 branches of equal size."""
    nsys = NBRANCH * max(1, round(nframes / (200 * NBRANCH)))
    sizes = [nframes // nsys + (i < nframes % nsys) for i in range(nsys)]
    return [sizes[k::NBRANCH] for k in range(NBRANCH)]


def sources() -> list[dict]:
    """The shared water systems, their sets concatenated (float64)."""
    out = []
    for d in sorted(WATER.glob("data_*")):
        sets = sorted(d.glob("set.*"))
        arrays = {n: np.concatenate([np.load(s / f"{n}.npy") for s in sets]).astype(np.float64)
                  for n in ("coord",) + LABELS if (sets[0] / f"{n}.npy").exists()}
        out.append({"path": d, "arrays": arrays, "nframes": len(arrays["coord"])})
    return out


def make(nframes: int, out: Path, noise: float, seed: int) -> Path:
    """Write nframes frames under out/branch_k/sys_XXXX (set.000); skipped when out/make.json
    records the same recipe (it is written last)."""
    recipe = {"frames": nframes, "noise": noise, "seed": seed, "source": str(WATER),
              "systems": [len(b) for b in layout(nframes)]}
    done = out / "make.json"
    if done.exists() and json.loads(done.read_text()) == recipe:
        print(f"{out}: complete ({nframes} frames), skipped")
        return out
    done.unlink(missing_ok=True)  # an interrupted rewrite is not complete
    for old in out.glob("branch_*"):  # another recipe's systems would be read too
        shutil.rmtree(old)
    t0 = time.perf_counter()
    src = sources()
    gsys, nbytes = 0, 0
    for k, branch in enumerate(layout(nframes)):
        for j, nf in enumerate(branch):
            s = src[gsys % len(src)]
            rng = np.random.default_rng([seed, gsys])
            pick = rng.integers(0, s["nframes"], nf)
            sysdir = out / f"branch_{k}" / f"sys_{j:04d}"
            setdir = sysdir / "set.000"
            setdir.mkdir(parents=True, exist_ok=True)
            for name in ("type.raw", "type_map.raw"):
                shutil.copy(s["path"] / name, sysdir / name)
            coord = s["arrays"]["coord"][pick]
            coord += rng.normal(0.0, noise, coord.shape)
            np.save(setdir / "coord.npy", coord)
            nbytes += coord.nbytes
            for name in LABELS:
                if name in s["arrays"]:
                    a = s["arrays"][name][pick]
                    np.save(setdir / f"{name}.npy", a)
                    nbytes += a.nbytes
            gsys += 1
        print(f"  {out}/branch_{k}: {len(branch)} systems, {sum(branch)} frames", flush=True)
    done.write_text(json.dumps(recipe))
    print(f"{out}: {nframes} frames in {gsys} systems, {nbytes / 2**30:.2f} GiB of npy, "
          f"{time.perf_counter() - t0:.0f} s")
    return out


# ---------------------------------------------------------------- run

def scale_input(data: Path, steps: int, disp: int, stat_dir: Path | None = None) -> dict:
    """The shared multi_task example's model with NBRANCH branches on data/branch_k."""
    example = json.loads(EXAMPLES["multi"].read_text())
    shared = example["model"]["shared_dict"]
    fitting = example["model"]["model_dict"]["water_1"]["fitting_net"]
    loss = example["loss_dict"]["water_1"]
    keys = [f"branch_{k}" for k in range(NBRANCH)]
    data_dict = {}
    for k in keys:
        data_dict[k] = {"training_data": {"systems": str(data / k), "batch_size": 1}}
        if stat_dir is not None:
            data_dict[k]["stat_file"] = str(stat_dir / f"{k}.h5")
    return {
        "model": {"shared_dict": shared,
                  "model_dict": {k: {"type_map": "type_map_all",
                                     "descriptor": "sea_descriptor_1",
                                     "fitting_net": dict(fitting, seed=i + 1)}
                                 for i, k in enumerate(keys)}},
        "learning_rate": example["learning_rate"],
        "loss_dict": {k: dict(loss) for k in keys},
        "training": {"model_prob": {k: 1.0 for k in keys}, "data_dict": data_dict,
                     "numb_steps": steps, "disp_freq": disp, "save_freq": steps, "seed": 10,
                     "disp_file": "lcurve.out"},
    }


def dpx_cmd(checkout: Path = ROOT) -> tuple[list[str], dict]:
    """dpx from source: this interpreter, the checkout's python/ first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(checkout / "python"), str(checkout)]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    return [sys.executable, "-m", "dpx.cli.main", "train", "input.json"], env


def torchrun_cmd(nproc: int) -> tuple[list[str], dict]:
    cmd, env = dpx_cmd()
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))  # as benchmarks/ddp.py
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "dpx.cli.main", "train", "input.json"], env


def stages(lines: list[tuple[float, str]], table) -> list[tuple[str, float | None]]:
    """Seconds of each stage of table (DPX_STAGES, DP_STAGES), from the log's stamps; None
    for a stage whose end is not in the log (e.g. a run stopped before it)."""
    out, prev, i = [], 0.0, 0
    for name, (how, pattern) in table:
        j = next((j for j in range(i, len(lines)) if re.search(pattern, lines[j][1])), None)
        if j is not None and how == "before":
            j = j - 1 if j > i else None
        if j is None:
            out.append((name, None))
            continue
        out.append((name, lines[j][0] - prev))
        prev, i = lines[j][0], j + 1
    return out


def split_logged(times, logged: dict) -> list[tuple[str, float | None]]:
    """dpx's stages with the neighbor statistics as long as dpx logs them and the time before
    their first progress line given back to reading the data index."""
    out = dict(times)
    scan = logged.get("neighbor statistics (logged)")
    if scan is not None and None not in (out["reading the data index"],
                                         out["neighbor statistics"]):
        total = out["reading the data index"] + out["neighbor statistics"]
        out["reading the data index"], out["neighbor statistics"] = total - scan, scan
    return list(out.items())


def logged_seconds(lines: list[tuple[float, str]]) -> dict:
    """The times dpx itself logs for its stages."""
    out = {}
    for _, s in lines:
        m = re.search(r"neighbor statistics of .*\(([\d.]+) s\)", s)
        if m:
            out["neighbor statistics (logged)"] = float(m.group(1))
        m = re.search(r"data statistics in ([\d.]+) s", s)
        if m:
            out["data statistics (logged)"] = float(m.group(1))
        m = re.search(r"systems: ([\d.]+) MB of frames, (.*)$", s)
        if m:
            out["frames"] = f"{m.group(1)} MB per branch, {m.group(2)}"
        if "statistics read from" in s:
            out.setdefault("stat file", []).append(s.split("INFO ", 1)[-1].strip())
    return out


def one_run(name: str, cmd: list[str], env: dict, folder: Path, cfg: dict,
            timeout: float | None) -> dict:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "input.json").write_text(json.dumps(cfg, indent=1))
    print(f"  {name}: {' '.join(cmd)}  (in {folder})", flush=True)
    w = watch(cmd, folder, folder / "log.txt", env, poll=0.1, first_row_timeout=timeout)
    w["first_step"] = w["rows"][0][1] if w["rows"] else None
    w["name"], w["folder"] = name, folder
    first = f"{w['first_step']:.1f} s" if w["rows"] else (
        f"not within {timeout / 60:.0f} min" if w["timed_out"] else "none")
    print(f"  {name}: rc {w['rc']}, first step {first}, tree {w['peak_tree_mb']:.0f} MB "
          f"(PSS {w['peak_pss_mb']:.0f}), single {w['peak_single_mb']:.0f} MB, "
          f"wall {w['wall']:.1f} s", flush=True)
    return w


def run(args) -> None:
    tools = [t for t in args.tools.split(",") if t]  # "" with --ranks: torchrun alone
    results: dict[int, list[dict]] = {}
    for n in args.frames:
        data = args.root / str(n)
        if not (data / "make.json").exists():
            sys.exit(f"{data} is not complete: run `data_scale.py make --frames {n}` first")
        base = args.root / "runs" / str(n)
        cfg = scale_input(data, args.steps, args.disp)
        print(f"{n} frames ({data}):", flush=True)
        rows = results[n] = []
        for tool in tools:
            if tool == "dpx":
                cmd, env = dpx_cmd()
                rows.append(one_run("dpx", cmd, env, base / "dpx", cfg, None))
            elif tool == "dp":
                env = dict(os.environ)
                rows.append(one_run("dp", [args.dp, "--pt", "train", "input.json"], env,
                                    base / "dp", cfg, args.dp_timeout))
            else:
                sys.exit(f"--tools: {tool!r} is not dpx or dp")
        if args.ranks > 1:
            cmd, env = torchrun_cmd(args.ranks)
            rows.append(one_run(f"dpx x{args.ranks}", cmd, env, base / f"dpx-{args.ranks}ranks",
                                cfg, None))
        if args.stat_file:
            stat_dir = base / "stat"
            shutil.rmtree(stat_dir, ignore_errors=True)
            stat_dir.mkdir(parents=True)
            scfg = scale_input(data, args.steps, args.disp, stat_dir)
            cmd, env = dpx_cmd()
            for which in ("cold", "warm"):
                rows.append(one_run(f"dpx stat {which}", cmd, env, base / f"dpx-stat-{which}",
                                    scfg, None))
    report(args, results)


def report(args, results: dict[int, list[dict]]) -> None:
    print()
    print(f"# data_scale: {args.steps} steps, 4 branches of 192-atom water systems, shared "
          f"se_e2_a sel [46, 92] (neighbor statistics on for both); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("# first step: launch to the first lcurve.out row (after step 1); RSS: peak over the "
          "process tree (sum of VmRSS; PSS), largest single process (VmHWM)")
    print(f"{'frames':>7s} {'tool':14s} {'rc':>3s} {'first step s':>13s} {'tree MB':>8s} "
          f"{'PSS MB':>7s} {'single MB':>9s} {'wall s':>7s}")
    for n, rows in results.items():
        for r in rows:
            first = (f"{r['first_step']:.1f}" if r["first_step"] is not None else
                     (f">{args.dp_timeout:.0f} (killed)" if r["timed_out"] else "-"))
            print(f"{n:7d} {r['name']:14s} {r['rc']:3d} {first:>13s} {r['peak_tree_mb']:8.0f} "
                  f"{r['peak_pss_mb']:7.0f} {r['peak_single_mb']:9.0f} {r['wall']:7.1f}")
    print()
    for n, rows in results.items():
        by = {r["name"]: r for r in rows}
        x, d = by.get("dpx"), by.get("dp")
        if x and d:
            if x["first_step"] is not None and d["first_step"] is not None:
                print(f"{n:7d} dpx/dp: first step {x['first_step'] / d['first_step']:.2f} "
                      f"(target <= 0.5), tree RSS {x['peak_tree_mb'] / d['peak_tree_mb']:.2f}, "
                      f"PSS {x['peak_pss_mb'] / max(d['peak_pss_mb'], 1):.2f}")
            elif d["timed_out"]:
                print(f"{n:7d} dp: no first step within {args.dp_timeout / 60:.0f} min")
        ranked = [r for r in rows if r["name"].startswith("dpx x")]
        if x and ranked:
            r = ranked[0]
            # the target read per rank: each rank holds what one process holds (the data is
            # not copied per rank); the tree adds a torch runtime per rank and torchrun's agent
            rank = r['peak_single_mb'] / x['peak_single_mb']
            print(f"{n:7d} {r['name']}/dpx: largest rank {rank:.2f} (target <= 1.2); tree RSS "
                  f"{r['peak_tree_mb'] / x['peak_tree_mb']:.2f}, "
                  f"PSS {r['peak_pss_mb'] / max(x['peak_pss_mb'], 1):.2f}")
    sizes = [n for n, rows in results.items() if any(r["name"] == "dpx" for r in rows)]
    if len(sizes) > 1:
        first = {n: next(r for r in results[n] if r["name"] == "dpx") for n in sizes}
        lo, hi = first[min(sizes)], first[max(sizes)]
        print(f"dpx {max(sizes)} vs {min(sizes)} frames: tree RSS "
              f"{hi['peak_tree_mb'] - lo['peak_tree_mb']:+.0f} MB (target <= +1024), first "
              f"step {hi['first_step'] or float('nan'):.1f} s (target <= 60)")
    print()
    for n, rows in results.items():
        for r in rows:
            dpx = r["name"].startswith("dpx")
            table = DPX_STAGES if dpx else DP_STAGES
            times = stages(r["lines"], table)
            if dpx:
                times = split_logged(times, logged_seconds(r["lines"]))
            parts = [f"{name} {t:.1f}" if t is not None else f"{name} -" for name, t in times]
            end = [t for t, s in r["lines"] if re.search(table[-1][1][1], s)]
            if r["first_step"] is not None and end:
                parts.append(f"first step {r['first_step'] - end[0]:.1f}")
            print(f"{n:7d} {r['name']} start-up (s, from its log): " + ", ".join(parts))
            if r["timed_out"] and r["lines"]:
                print(f"{'':7s} stopped at {r['wall']:.0f} s; its last log line: "
                      f"{r['lines'][-1][1].strip()[:160]}")
            logged = logged_seconds(r["lines"]) if dpx else {}
            if logged:
                print(f"{'':7s} logged: " + "; ".join(f"{k} {v}" for k, v in logged.items()))


# ---------------------------------------------------------------- steady

def baseline_from_ref(ref: str, into: Path) -> Path:
    """The python package at ref (git archive), with this checkout's compiled ops: only when
    csrc/ and CMakeLists.txt are the same at ref as in HEAD (the ops' ABI is then the same)."""
    same = subprocess.run(["git", "diff", "--quiet", ref, "HEAD", "--", "csrc", "CMakeLists.txt"],
                          cwd=ROOT).returncode == 0
    if not same:
        sys.exit(f"--baseline-ref {ref}: csrc/ differs from HEAD, so this checkout's compiled "
                 f"ops do not fit it; build a checkout of {ref} and pass --baseline PATH")
    archive = subprocess.run(["git", "archive", ref, "python"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copytree(ROOT / "python" / "dpx" / "lib", into / "python" / "dpx" / "lib")
    shutil.copy(ROOT / "python" / "dpx" / "_build_info.py", into / "python" / "dpx")
    return into


def read_cost(systems, draws: int = 2000) -> list[str]:
    """What one training step reads (one batch of batch_size 1) and the time to draw it: as
    dpx chooses (in memory when the section is small), and read from the files."""
    import torch

    from dpx.data.formats import load_systems
    from dpx.data.sampler import DataSampler
    out = []
    for in_memory in (None, False):
        t0 = time.perf_counter()
        loaded = load_systems(systems, type_map=["O", "H"], in_memory=in_memory)
        index = time.perf_counter() - t0
        held = all(s.in_memory for s in loaded)
        if in_memory is False and held:
            break
        sampler = DataSampler(loaded, 1, seed=1)
        batch = sampler.next_batch()
        arrays = {k: v for k, v in batch.items() if torch.is_tensor(v)}
        t0 = time.perf_counter()
        for _ in range(draws):
            sampler.next_batch()
        per = (time.perf_counter() - t0) / draws
        out.append(f"{len(loaded)} systems, {sum(s.nframes for s in loaded)} frames, "
                   f"{'held in memory' if held else 'read from the files (pread)'}"
                   f"{' (as dpx chooses)' if in_memory is None else ''}: index in "
                   f"{index:.2f} s; a step draws 1 frame of {loaded[0].natoms} atoms, "
                   f"{sum(v.nbytes for v in arrays.values()) / 1024:.0f} KiB "
                   f"({', '.join(arrays)}) in {per * 1e6:.0f} us")
        if not held:
            break
    return out


def steady(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dpx-steady-"))
    base = args.baseline or baseline_from_ref(args.baseline_ref, tmp / "baseline")
    label = args.baseline_ref or str(base)
    checkouts = [("this", ROOT), ("baseline", Path(base))]
    runs = {(ex, who): [] for ex in args.examples for who, _ in checkouts}
    for k in range(args.repeats):
        for ex in args.examples:
            for who, path in checkouts:  # interleaved: drift of a shared machine hits both
                folder = tmp / f"{ex}-{who}-{k}"
                folder.mkdir()
                prepare(ex, args.steps, args.disp, folder)
                cmd, env = dpx_cmd(path)
                runs[(ex, who)].append(run_training(cmd, folder, folder / "log.txt", env))
    print(f"# steady step: dpx train on ../shared/examples, {args.steps} steps, disp_freq "
          f"{args.disp} (s/step: median over display intervals after the first); this "
          f"checkout {ROOT} vs {label}; {os.cpu_count()} cpus, {time.strftime('%Y-%m-%d')}")
    print(f"{'example':8s} {'this s/step':>12s} {'base s/step':>12s} {'this/base':>10s}   rounds")
    for ex in args.examples:
        this = sorted(r["s_per_step"] for r in runs[(ex, "this")])
        ref = sorted(r["s_per_step"] for r in runs[(ex, "baseline")])
        a, b = this[len(this) // 2], ref[len(ref) // 2]
        print(f"{ex:8s} {a:12.4f} {b:12.4f} {a / b:10.3f}   "
              f"{' '.join(f'{x:.4f}' for x in this)} | {' '.join(f'{x:.4f}' for x in ref)}")
    print("(target: this/base within 1.05)")
    cfg = json.loads(prepare("single", 1, 1, tmp).read_text())
    reads = [("the single example", cfg["training"]["training_data"]["systems"])]
    for where, systems in reads + [(str(d), str(d)) for d in args.read_data or []]:
        for line in read_cost(systems):
            print(f"a step on {where}: {line}")
    shutil.rmtree(tmp)


# ---------------------------------------------------------------- main

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write the data sets")
    m.add_argument("--frames", type=int, nargs="+", required=True)
    m.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data under ROOT/<frames>")
    m.add_argument("--out", type=Path, default=None, help="the folder (one --frames only)")
    m.add_argument("--noise", type=float, default=0.005, help="coordinate noise, A")
    m.add_argument("--seed", type=int, default=28)
    r = sub.add_parser("run", help="time dpx and dp on the data sets")
    r.add_argument("--frames", type=int, nargs="+", required=True)
    r.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    r.add_argument("--tools", default="dpx,dp")
    r.add_argument("--ranks", type=int, default=1, help="also dpx under torchrun, N ranks")
    r.add_argument("--stat-file", action="store_true",
                   help="also dpx with a stat_file per branch, twice (cold, then warm)")
    r.add_argument("--steps", type=int, default=50)
    r.add_argument("--disp", type=int, default=10)
    r.add_argument("--dp", default=DEFAULT_DP, help="DeePMD-kit's dp executable")
    r.add_argument("--dp-timeout", type=float, default=900,
                   help="seconds for dp to reach its first step before it is stopped")
    s = sub.add_parser("steady", help="s/step on the shared examples vs another checkout")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--baseline", type=Path, help="a checkout with its ops built")
    g.add_argument("--baseline-ref", help="a git ref of this repository (same csrc/)")
    s.add_argument("--examples", nargs="+", default=["single", "multi"],
                   choices=["single", "multi"])
    s.add_argument("--steps", type=int, default=200)
    s.add_argument("--disp", type=int, default=10)
    s.add_argument("--repeats", type=int, default=1)
    s.add_argument("--read-data", type=Path, nargs="*",
                   help="also time a step's read on these (e.g. /work/scale/20000/branch_0)")
    args = p.parse_args()
    if args.command == "make":
        if args.out and len(args.frames) > 1:
            sys.exit("--out takes one --frames")
        for n in args.frames:
            make(n, args.out or args.root / str(n), args.noise, args.seed)
    elif args.command == "run":
        if "dp" in args.tools.split(",") and not Path(args.dp).exists():
            sys.exit(f"--dp {args.dp} not found (DeePMD-kit's dp; or set DPX_DP)")
        run(args)
    else:
        steady(args)


if __name__ == "__main__":
    main()
