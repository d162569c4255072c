"""Frozen model: dpx's `dpx freeze` output against DeePMD-kit's `dp --pt freeze` of the same
checkpoint, `forward_lower` timed from Python on what LAMMPS passes it.

The checkpoint is DeePMD-kit's water se_e2_a example model (rcut 6, sel [46, 92], embedding
[25, 50, 100], axis_neuron 16, fitting [240, 240, 240]) after one dpx training step on
synthetic water. The input is one water frame (--nmol molecules, 3 atoms each) with a
LAMMPS-like raw neighbor list: every atom within rcut + skin (2 A), ghost atoms only where
some list names them, each row shuffled and -1 padded. Both models run in this process on
the same torch; the timings are medians of --repeats calls taken in turns, after warm-up
calls (TorchScript profiles the first ones). Prints both times (median and minimum: the
machine may be shared) and the ratio DeePMD/dpx
(> 1: dpx is faster), and checks that energies and forces agree.

    python benchmarks/freeze.py --dp /path/to/deepmd-venv/bin/dp [--nmol 64] [--repeats 20]
    python benchmarks/freeze.py --dp .venv-lammps/bin/dp --compressed \
        --eval-python .venv-lammps/bin/python

--compressed also compresses both frozen files (`dpx compress`, `dp --pt compress`, their
default table step) and times them as dpx-c and deepmd-c. --eval-python runs the timing in
another interpreter (benchmarks/_time_lower.py imports only torch): with DeePMD-kit's venv
every file, compressed ones included, runs on DeePMD-kit's op library, as in its Python
evaluators; in dpx's own venv the compressed files run on dpx's PyTorch versions of those
ops (as `dpx test` does where DeePMD-kit is not installed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from dpx.data.synthetic import labeler, make_frames, write_system
from dpx.nlist import all_within, extend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _time_lower  # noqa: E402

MODEL = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                   "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16, "seed": 1},
    "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1},
}
SKIN = 2.0


def make_checkpoint(work: Path, nmol: int) -> Path:
    """One dpx training step of the water model on synthetic frames of nmol molecules."""
    rng = np.random.default_rng(0)
    atype, arrays = make_frames(nmol, 4, rng, labeler("morse")[1])
    write_system(work / "data", atype, ["O", "H"], arrays)
    cfg = {"model": MODEL,
           "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 100},
           "loss": {"type": "ener"},
           "training": {"training_data": {"systems": [str(work / "data")], "batch_size": 1},
                        "numb_steps": 1, "disp_freq": 1, "save_freq": 1, "seed": 1}}
    (work / "input.json").write_text(json.dumps(cfg))
    subprocess.run([sys.executable, "-m", "dpx.cli.main", "train", "input.json"], cwd=work,
                   check=True, capture_output=True)
    return work / "model.ckpt.pt"


def lammps_like_input(work: Path, rcut: float):
    """(ext_coord [1, nall, 3], ext_atype [1, nall], nlist [1, nloc, width]) of frame 0."""
    coord = np.load(work / "data" / "set.000" / "coord.npy")[:1].reshape(1, -1, 3)
    box = np.load(work / "data" / "set.000" / "box.npy")[:1]
    atype = torch.tensor(np.loadtxt(work / "data" / "type.raw", dtype=np.int64))[None]
    ext, ext_atype, _ = extend(torch.tensor(coord), atype, torch.tensor(box), rcut + SKIN)
    nloc = atype.shape[1]
    raw = all_within(ext, ext_atype, nloc, rcut + SKIN)
    # ghosts that no list names are dropped, as LAMMPS only has those within the cutoff
    used = torch.unique(torch.cat([torch.arange(nloc), raw[raw >= 0]]))
    renum = torch.full((ext.shape[1],), -1, dtype=torch.long)
    renum[used] = torch.arange(len(used))
    nlist = torch.where(raw >= 0, renum[raw.clamp(min=0)], -1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for row in nlist[0]:
        filled = row[row >= 0]
        filled = filled[torch.randperm(len(filled), generator=g)]
        rows.append(torch.cat([filled, row[row < 0]]))
    return ext[:, used], ext_atype[:, used], torch.stack(rows)[None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dp", required=True, help="DeePMD-kit's `dp` executable")
    p.add_argument("--work", default="freeze_bench", help="folder for data and models")
    p.add_argument("--nmol", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--dpx-ref-python", default=None, help="python of another dpx build (e.g. "
                   "before a change): its freeze of the same checkpoint is timed as dpx-ref")
    p.add_argument("--compressed", action="store_true",
                   help="also time both files compressed (dpx compress, dp --pt compress)")
    p.add_argument("--eval-python", default=None,
                   help="time the files in this interpreter (e.g. DeePMD-kit's venv)")
    args = p.parse_args()
    # the tools run with cwd = the work folder: a relative path given here must still reach them
    for key in ("dp", "dpx_ref_python", "eval_python"):
        exe = getattr(args, key)
        if exe and os.sep in exe:
            setattr(args, key, str(Path(exe).absolute()))
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "model.ckpt.pt"
    if not ckpt.exists():
        ckpt = make_checkpoint(work, args.nmol)
    subprocess.run([sys.executable, "-m", "dpx.cli.main", "freeze", "-c", str(ckpt), "-o",
                    "dpx.pth"], cwd=work, check=True, capture_output=True)
    subprocess.run([args.dp, "--pt", "freeze", "-c", str(ckpt), "-o", "deepmd.pth"], cwd=work,
                   check=True, capture_output=True)
    names = ["deepmd", "dpx"]
    if args.dpx_ref_python:
        subprocess.run([args.dpx_ref_python, "-m", "dpx.cli.main", "freeze", "-c", str(ckpt),
                        "-o", "dpx-ref.pth"], cwd=work, check=True, capture_output=True)
        names.append("dpx-ref")
    if args.compressed:
        subprocess.run([sys.executable, "-m", "dpx.cli.main", "compress", "-i", "dpx.pth", "-o",
                        "dpx-c.pth"], cwd=work, check=True, capture_output=True)
        subprocess.run([args.dp, "--pt", "compress", "-i", "deepmd.pth", "-o", "deepmd-c.pth"],
                       cwd=work, check=True, capture_output=True)
        names += ["deepmd-c", "dpx-c"]
    rcut = float(json.loads(ckpt_model_params(ckpt))["descriptor"]["rcut"])
    job = {"models": {name: str(work / f"{name}.pth") for name in names},
           "inputs": lammps_like_input(work, rcut), "repeats": args.repeats,
           "threads": args.threads}
    if args.eval_python:
        torch.save(job, work / "job.pt")
        proc = subprocess.run([args.eval_python, str(Path(_time_lower.__file__)),
                               str(work / "job.pt")], check=True, capture_output=True, text=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        res = _time_lower.run(job)
    report(job["inputs"], res)


def ckpt_model_params(ckpt: Path) -> str:
    state = torch.load(ckpt, weights_only=False)
    return json.dumps(state["model"]["_extra_state"]["model_params"])


def report(inputs, res: dict) -> None:
    """Times and ratios (DeePMD-kit's / dpx's: > 1, dpx is faster), and how far the numbers
    of each pair are apart."""
    t = m = res["models"]
    nloc, width = inputs[2].shape[1:]
    print(f"{nloc} atoms, nall {inputs[0].shape[1]}, raw nlist width {width}, threads "
          f"{res['threads']}, torch {res['torch']}, deepmd::tabulate ops: {res['deepmd_ops']}")
    pairs = [("deepmd", "dpx"), ("deepmd", "dpx-ref"), ("deepmd-c", "dpx-c"), ("deepmd", "dpx-c")]
    for stat in ("median", "min"):
        cols = "   ".join(f"{name} {t[name][stat] * 1e3:8.2f} ms" for name in t)
        ratios = "   ".join(f"{a}/{b} {t[a][stat] / t[b][stat]:.2f}x" for a, b in pairs
                           if a in t and b in t)
        print(f"forward_lower {stat:6s}  {cols}\n    ratios: {ratios}")
    for a, b in (("deepmd", "dpx"), ("deepmd-c", "dpx-c"), ("dpx", "dpx-c")):
        if a in m and b in m:
            de = max(abs(x - y) for x, y in zip(m[a]["energy"], m[b]["energy"]))
            df = max(abs(x - y) for x, y in zip(m[a]["force"], m[b]["force"]))
            print(f"{a} vs {b}: max |dE| {de:.1e}  max |dF| {df:.1e}")


if __name__ == "__main__":
    main()
