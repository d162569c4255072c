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
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dpx.data.synthetic import labeler, make_frames, write_system
from dpx.nlist import all_within, extend

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


def time_calls(models: dict, inputs, repeats: int) -> dict:
    times = {name: [] for name in models}
    for _ in range(3):
        for m in models.values():
            m.forward_lower(*inputs)
    names = list(models)
    for r in range(repeats):
        # who goes first rotates, so that no model always follows the same one
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            models[name].forward_lower(*inputs)
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dp", required=True, help="DeePMD-kit's `dp` executable")
    p.add_argument("--work", default="freeze_bench", help="folder for data and models")
    p.add_argument("--nmol", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--dpx-ref-python", default=None, help="python of another dpx build (e.g. "
                   "before a change): its freeze of the same checkpoint is timed as dpx-ref")
    args = p.parse_args()
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
    from dpx.io import deepmd_ops
    deepmd_ops.ensure()  # DeePMD-kit's file names its op library's ops (unused uncompressed)
    models = {name: torch.jit.load(str(work / f"{name}.pth")) for name in names}
    inputs = lammps_like_input(work, models["dpx"].get_rcut())
    out = {name: m.forward_lower(*inputs) for name, m in models.items()}
    de = float((out["dpx"]["energy"] - out["deepmd"]["energy"]).detach().abs().max())
    df = float((out["dpx"]["extended_force"] - out["deepmd"]["extended_force"]).abs().max())
    t = time_calls(models, inputs, args.repeats)
    nloc, width = inputs[2].shape[1:]
    print(f"{nloc} atoms, nall {inputs[0].shape[1]}, raw nlist width {width}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    for k, stat in enumerate(("median", "min")):
        dp_t, dpx_t = t["deepmd"][k], t["dpx"][k]
        ref = ""
        if "dpx-ref" in t:
            ref_t = t["dpx-ref"][k]
            ref = f"   dpx-ref {ref_t * 1e3:8.2f} ms (ratio {dp_t / ref_t:.2f}x)"
        print(f"forward_lower {stat:6s}  DeePMD-kit {dp_t * 1e3:8.2f} ms   "
              f"dpx {dpx_t * 1e3:8.2f} ms   ratio {dp_t / dpx_t:.2f}x{ref}")
    print(f"max |dE| {de:.1e}  max |dF| {df:.1e}")


if __name__ == "__main__":
    main()
