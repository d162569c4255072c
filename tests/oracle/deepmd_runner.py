#!/usr/bin/env python3
"""DeePMD-kit 3.2.0 (PyTorch backend) oracle runner.

Run this file with the *oracle* venv's python (the one prepared by
``install_lammps.sh``: a stock deepmd-kit[torch,lmp]), as a subprocess of dpx's
tests.  dpx's own venv must not import deepmd.  Only ``make-data`` works without
deepmd (numpy only).

Sub-commands
------------
make-data  --out DIR [--seed S] [--types N]
    Write two small toy systems (O/H, periodic cubic boxes, DeePMD npy format,
    float64, atoms *not* sorted by type) under DIR/sys_a and DIR/sys_b.  With
    --types N (3 or 4: O, H, C, N), three systems whose type_map.raw names all N
    elements: sys_a without the last element, sys_b without the first, sys_c
    with all of them.
eval       --model CKPT_OR_PTH [--head KEY] --system DIR [--set-prefix set]
           --out out.npz [--nlist-backend auto|native|vesin]
    DeepPot(model, head=KEY).eval on every frame of the system (all set.*
    directories, sorted), atoms in the system's original (type.raw) order.
    npz: energy [nf], force [nf,natoms,3], virial [nf,9], atom_energy
    [nf,natoms], atom_virial [nf,natoms,9], atype [natoms], coord [nf,natoms,3],
    box [nf,9] or absent.
ase        --model MODEL [--head KEY] --system DIR --out out.npz [--nlist-backend B]
    DeePMD-kit's ASE calculator on every frame: energy [nf], force [nf,natoms,3],
    stress [nf,6] (periodic systems).
loss       --params JSON --npz arrays.npz --lr LR --start-lr LR0
    DeePMD-kit's EnergyStdLoss on the npz's pred_* / label_* arrays: JSON of the loss and
    its display values.
stat       --input input.json --workdir DIR --out stat.npz [--head KEY]
    Run ``dp --pt train input.json`` with training.numb_steps forced to 0 (and
    save_freq 1) inside DIR, load DIR/model.ckpt-0.pt and dump, for every model
    branch, the statistics buffers: ``<KEY>/davg`` (= atomic_model.descriptor.
    sea.mean; se_atten.mean for DPA-1, descriptor.mean for se_e2_r), ``<KEY>/dstd``
    (= ...sea.stddev), ``<KEY>/out_bias``,
    ``<KEY>/out_std``, ``<KEY>/bias_atom_e`` (fitting_net.bias_atom_e, if
    present) and ``<KEY>/min_nbor_dist``.  Relative data paths in the input are
    resolved against the input file's directory.  ``--skip-neighbor-stat`` is
    NOT passed by default (then sel "auto" and min_nbor_dist work);
    use --skip-neighbor-stat to save time.
batch      --jobs jobs.json
    Run a JSON list of jobs in this one process, in order ({"argv": ["dp", "--pt",
    "train", ...], "cwd": DIR}: DeePMD-kit's command line; {"argv": ["eval", ...]}:
    this runner's): DeePMD-kit's start-up is paid once, not per job.
dump-ckpt  --model CKPT [--out dump.npz]
    Print the structure of a .pt checkpoint (keys, shapes, dtypes,
    _extra_state) and optionally save every tensor of the model state_dict to
    an npz (keys as in the state_dict).
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# Keep DeePMD from oversubscribing the 2-core machine and from printing the
# thread warning.  Callers may override.
for _k, _v in (
    ("OMP_NUM_THREADS", "2"),
    ("DP_INTRA_OP_PARALLELISM_THREADS", "2"),
    ("DP_INTER_OP_PARALLELISM_THREADS", "1"),
):
    os.environ.setdefault(_k, _v)


# --------------------------------------------------------------------------
# toy data
# --------------------------------------------------------------------------
def _random_positions(rng, natoms, box_len, min_dist):
    pos = []
    while len(pos) < natoms:
        p = rng.uniform(0.0, box_len, size=3)
        ok = True
        for q in pos:
            d = p - q
            d -= box_len * np.round(d / box_len)
            if np.linalg.norm(d) < min_dist:
                ok = False
                break
        if ok:
            pos.append(p)
    return np.array(pos)


# the pair potential's well depth and minimum by type pair, types in ELEMENTS' order; the first
# two rows and columns are the O/H values of the default (two-element) data
ELEMENTS = ["O", "H", "C", "N"]
EPS = np.array([[0.30, 0.20, 0.25, 0.22], [0.20, 0.10, 0.15, 0.12],
                [0.25, 0.15, 0.35, 0.28], [0.22, 0.12, 0.28, 0.32]])
R0 = np.array([[2.8, 1.8, 2.6, 2.5], [1.8, 1.5, 1.9, 1.8],
               [2.6, 1.9, 2.9, 2.7], [2.5, 1.8, 2.7, 2.8]])
EBIAS = np.array([-93.5, -187.0, -102.0, -121.0]) / 10.0  # per-type energy shift


def _toy_pair_efv(coord, atype, box_len, rc=3.5, eps=EPS[:2, :2], r0=R0[:2, :2]):
    """Smooth Morse-like pair energy summed over all periodic images.

    Returns (energy, force[natoms,3], virial[9]) with
    force = -dE/dr and virial = -sum_pairs rvec (x) dE/drvec (DeePMD's sign
    convention; for a finite system this is sum_i r_i (x) F_i).
    """
    a = 1.6
    rs = rc - 1.0
    n = len(atype)
    e = 0.0
    f = np.zeros((n, 3))
    w = np.zeros((3, 3))
    shifts = (
        np.array(
            [[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)],
            dtype=float,
        )
        * box_len
    )
    for i in range(n):
        for j in range(n):
            for s in shifts:
                if i == j and not s.any():
                    continue
                rv = coord[j] + s - coord[i]
                r = np.linalg.norm(rv)
                if r >= rc:
                    continue
                ti, tj = atype[i], atype[j]
                x = np.exp(-a * (r - r0[ti, tj]))
                phi = eps[ti, tj] * (x * x - 2.0 * x)
                dphi = eps[ti, tj] * (-2.0 * a * x * x + 2.0 * a * x)
                if r > rs:  # cosine switch to 0 at rc
                    u = (r - rs) / (rc - rs)
                    sw = 0.5 * (np.cos(np.pi * u) + 1.0)
                    dsw = -0.5 * np.pi * np.sin(np.pi * u) / (rc - rs)
                else:
                    sw, dsw = 1.0, 0.0
                g = phi * sw
                dg = dphi * sw + phi * dsw
                # each unordered pair is visited twice -> factor 1/2
                e += 0.5 * g
                grad = 0.5 * dg * rv / r  # dE/d(rv) for this visit
                f[i] += grad  # rv = rj - ri: dE/dri = -grad
                f[j] -= grad
                w -= np.outer(rv, grad)
    return e, f, w.reshape(9)


def _data_specs(ntypes):
    """[(name, atoms of each type, box length, frames)]: two elements (O, H), sys_a and sys_b;
    more (ELEMENTS[:ntypes]), sys_a without the last element, sys_b without the first (a
    branch of a multi-task model may see only some of the type map) and sys_c with all."""
    if ntypes == 2:
        return [("sys_a", [4, 8], 6.0, 10), ("sys_b", [8, 12], 7.0, 10)]
    mid = [8] * (ntypes - 2)
    return [("sys_a", [4] + mid + [0], 6.0, 6), ("sys_b", [0] + mid + [4], 6.0, 6),
            ("sys_c", [3] + mid + [3], 6.3, 6)]


def make_data(out, seed=20240607, ntypes=2):
    if not 2 <= ntypes <= len(ELEMENTS):
        raise SystemExit(f"--types must lie in [2, {len(ELEMENTS)}], got {ntypes}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    eps, r0 = EPS[:ntypes, :ntypes], R0[:ntypes, :ntypes]
    for name, counts, L, nf in _data_specs(ntypes):
        d = out / name
        (d / "set.000").mkdir(parents=True, exist_ok=True)
        atype = np.repeat(np.arange(ntypes), counts)
        rng.shuffle(atype)  # deliberately not sorted by type
        coords, boxes, es, fs, vs = [], [], [], [], []
        for _ in range(nf):
            c = _random_positions(rng, len(atype), L, 1.2)
            e, f, v = _toy_pair_efv(c, atype, L, eps=eps, r0=r0)
            e += EBIAS[atype].sum()
            coords.append(c.reshape(-1))
            boxes.append((np.eye(3) * L).reshape(-1))
            es.append(e)
            fs.append(f.reshape(-1))
            vs.append(v)
        np.savetxt(d / "type.raw", atype, fmt="%d")
        (d / "type_map.raw").write_text("".join(f"{e}\n" for e in ELEMENTS[:ntypes]))
        np.save(d / "set.000" / "coord.npy", np.array(coords))
        np.save(d / "set.000" / "box.npy", np.array(boxes))
        np.save(d / "set.000" / "energy.npy", np.array(es))
        np.save(d / "set.000" / "force.npy", np.array(fs))
        np.save(d / "set.000" / "virial.npy", np.array(vs))
        print(f"wrote {d}: natoms={len(atype)} frames={nf} box={L}")


# --------------------------------------------------------------------------
# system reading
# --------------------------------------------------------------------------
def read_system(sysdir, set_prefix="set"):
    atype, type_map_raw, coord, box, _ = read_system_params(sysdir, set_prefix)
    return atype, type_map_raw, coord, box


def read_system_params(sysdir, set_prefix="set"):
    """(atype, type_map_raw, coord, box, {"fparam": [nf, k], "aparam": [nf, natoms*k]}):
    the parameters that every set of the system holds."""
    sysdir = Path(sysdir)
    atype = np.loadtxt(sysdir / "type.raw", dtype=int, ndmin=1)
    tmap_file = sysdir / "type_map.raw"
    type_map_raw = tmap_file.read_text().split() if tmap_file.exists() else None
    sets = sorted(glob.glob(str(sysdir / f"{set_prefix}.*")))
    if not sets:
        raise SystemExit(f"no {set_prefix}.* in {sysdir}")
    coord, box = [], []
    params = {"fparam": [], "aparam": []}
    nopbc = (sysdir / "nopbc").exists()
    for s in sets:
        c = np.load(Path(s) / "coord.npy").astype(np.float64)
        c = c.reshape(-1, len(atype), 3)
        coord.append(c)
        if not nopbc:
            box.append(np.load(Path(s) / "box.npy").astype(np.float64).reshape(-1, 9))
        for name in params:
            f = Path(s) / f"{name}.npy"
            if f.exists():
                params[name].append(np.load(f).astype(np.float64).reshape(len(c), -1))
    coord = np.concatenate(coord)
    box = np.concatenate(box) if not nopbc else None
    params = {k: np.concatenate(v) for k, v in params.items() if len(v) == len(sets)}
    return atype, type_map_raw, coord, box, params


# --------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------
def cmd_eval(args):
    from deepmd.infer import DeepPot

    kw = {"nlist_backend": args.nlist_backend, "no_jit": args.no_jit}
    if args.head:
        kw["head"] = args.head
    dp = DeepPot(args.model, **kw)
    atype, type_map_raw, coord, box, params = read_system_params(args.system, args.set_prefix)
    # the parameters the model takes (a system may hold ones it does not use)
    params = {k: v for k, v in params.items()
              if (dp.get_dim_fparam() if k == "fparam" else dp.get_dim_aparam()) > 0}
    model_tmap = dp.get_type_map()
    if type_map_raw is not None:
        # same remapping DeePMD's data loader does (type_map.raw -> model types)
        atype_m = np.array([model_tmap.index(type_map_raw[t]) for t in atype])
    else:
        atype_m = atype
    nf = coord.shape[0]
    es, fs, vs, aes, avs = [], [], [], [], []
    for i in range(nf):  # one frame per call: simple and deterministic
        b = None if box is None else box[i : i + 1]
        kw = {k: v[i : i + 1] for k, v in params.items()}
        e, f, v, ae, av = dp.eval(coord[i : i + 1], b, atype_m, atomic=True, **kw)
        es.append(np.asarray(e).reshape(-1)[0])
        fs.append(np.asarray(f).reshape(len(atype), 3))
        vs.append(np.asarray(v).reshape(9))
        aes.append(np.asarray(ae).reshape(len(atype)))
        avs.append(np.asarray(av).reshape(len(atype), 9))
    out = {
        "energy": np.array(es),
        "force": np.array(fs),
        "virial": np.array(vs),
        "atom_energy": np.array(aes),
        "atom_virial": np.array(avs),
        "atype": atype_m,
        "coord": coord,
        "type_map": np.array(model_tmap),
    }
    if box is not None:
        out["box"] = box
    np.savez(args.out, **out)
    print(f"wrote {args.out}: nf={nf} natoms={len(atype)}")


def cmd_ase(args):
    """DeePMD-kit's ASE calculator (deepmd.calculator.DP) on every frame of the system."""
    from ase import Atoms
    from deepmd.calculator import DP

    atype, type_map_raw, coord, box, params = read_system_params(args.system, args.set_prefix)
    calc = DP(args.model, head=args.head, nlist_backend=args.nlist_backend)
    params = {k: v for k, v in params.items()
              if (calc.dp.get_dim_fparam() if k == "fparam" else calc.dp.get_dim_aparam()) > 0}
    tmap = calc.dp.get_type_map()
    names = type_map_raw if type_map_raw is not None else tmap
    es, fs, ss = [], [], []
    for i in range(coord.shape[0]):
        atoms = Atoms(symbols=[names[t] for t in atype], positions=coord[i].reshape(-1, 3),
                      cell=None if box is None else box[i].reshape(3, 3), pbc=box is not None)
        for k, v in params.items():  # where DeePMD-kit's calculator reads them
            atoms.info[k] = v[i]
        atoms.calc = calc
        es.append(atoms.get_potential_energy())
        fs.append(atoms.get_forces())
        if box is not None:
            ss.append(atoms.get_stress())
    out = {"energy": np.array(es), "force": np.array(fs)}
    if ss:
        out["stress"] = np.array(ss)
    np.savez(args.out, **out)
    print(f"wrote {args.out}")


def cmd_loss(args):
    """DeePMD-kit's EnergyStdLoss on given predictions and labels (an npz of pred_<key> and
    label_<key> arrays, find_<key> flags): prints {"loss": ..., "more": {...}} as JSON."""
    import torch
    from deepmd.pt.loss import EnergyStdLoss

    params = json.loads(args.params)
    params.pop("type", None)
    data = dict(np.load(args.npz))
    pred = {k[5:]: torch.tensor(v) for k, v in data.items() if k.startswith("pred_")}
    label = {k[6:]: torch.tensor(v) for k, v in data.items() if k.startswith("label_")}
    label.update({k: float(v) for k, v in data.items() if k.startswith("find_")})
    loss_fn = EnergyStdLoss(starter_learning_rate=args.start_lr, **params)
    _, loss, more = loss_fn({}, lambda: pred, label, int(pred["force"].shape[1]), args.lr)
    print(json.dumps({"loss": float(loss),
                      "more": {k: float(v) for k, v in more.items() if np.ndim(v) == 0}}))


# --------------------------------------------------------------------------
# stat
# --------------------------------------------------------------------------
def _abs_systems(obj, base):
    """Make training/validation system paths absolute (in place)."""
    for key in ("training_data", "validation_data"):
        d = obj.get(key)
        if not d:
            continue
        s = d.get("systems")
        if isinstance(s, str):
            s = [s]
        d["systems"] = [str((base / p).resolve()) for p in s]


def _to_np(t):
    return t.detach().cpu().numpy()


def cmd_stat(args):
    import torch

    inp_path = Path(args.input).resolve()
    cfg = json.loads(inp_path.read_text())
    cfg = copy.deepcopy(cfg)
    tr = cfg["training"]
    tr["numb_steps"] = 0
    tr["save_freq"] = 1
    tr.pop("stat_file", None)
    base = inp_path.parent
    if "data_dict" in tr:
        for v in tr["data_dict"].values():
            _abs_systems(v, base)
            v.pop("stat_file", None)
    else:
        _abs_systems(tr, base)
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "input.json").write_text(json.dumps(cfg, indent=2))
    # `python -m deepmd` == the `dp` console script of this interpreter's venv
    cmd = [sys.executable, "-m", "deepmd", "--pt", "train", "input.json"]
    if args.skip_neighbor_stat:
        cmd.append("--skip-neighbor-stat")
    r = subprocess.run(cmd, check=False, cwd=wd, capture_output=True, text=True)
    (wd / "train.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"dp train failed (rc={r.returncode}), log in {wd}/train.log")
    ckpt = wd / "model.ckpt-0.pt"
    sd = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    keys = sorted({k.split(".")[1] for k in sd if k.startswith("model.")})
    if args.head:
        keys = [args.head]
    out = {}
    for h in keys:
        p = f"model.{h}."
        m = {
            "out_bias": p + "atomic_model.out_bias",
            "out_std": p + "atomic_model.out_std",
            "bias_atom_e": p + "atomic_model.fitting_net.bias_atom_e",
            "min_nbor_dist": p + "min_nbor_dist",
        }
        for name in ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std"):
            m[name] = p + "atomic_model.fitting_net." + name
        # davg/dstd sit on the descriptor's block (se_e2_a: sea, DPA-1: se_atten) or, for
        # se_e2_r, on the descriptor itself
        desc = p + "atomic_model.descriptor."
        for block in ("sea.", "se_atten.", ""):
            if f"{desc}{block}mean" in sd:
                m["davg"], m["dstd"] = f"{desc}{block}mean", f"{desc}{block}stddev"
                break
        for name, k in m.items():
            if k in sd:
                out[f"{h}/{name}"] = _to_np(sd[k])
    out["_model_params_json"] = np.array(
        json.dumps(sd["_extra_state"]["model_params"], sort_keys=True)
    )
    np.savez(args.out, **out)
    print(f"wrote {args.out}: heads={keys} ckpt={ckpt}")


# --------------------------------------------------------------------------
# dump-ckpt
# --------------------------------------------------------------------------
def cmd_dump(args):
    import torch

    ck = torch.load(args.model, map_location="cpu", weights_only=False)
    print("top-level keys:", list(ck.keys()))
    sd = ck["model"]
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            print(f"{k}\t{tuple(v.shape)}\t{v.dtype}")
        else:
            print(f"{k}\t<{type(v).__name__}>")
    ex = sd.get("_extra_state", {})
    print("train_infos:", ex.get("train_infos"))
    print("model_params:", json.dumps(ex.get("model_params"), indent=1))
    if args.out:
        np.savez(
            args.out,
            **{k: _to_np(v) for k, v in sd.items() if isinstance(v, torch.Tensor)},
        )
        print("wrote", args.out)


# --------------------------------------------------------------------------
# batch
# --------------------------------------------------------------------------
def cmd_batch(args):
    """The jobs of a JSON list in turn, in this one process: DeePMD-kit's imports and its first
    model's set-up (about 12 s on 2 cores) are paid once; later runs take about a second each.
    A job is {"argv": [...]}: ["dp", ...] is DeePMD-kit's command line (run in the job's
    "cwd"), anything else this runner's (eval, stat, ...)."""
    jobs = json.loads(Path(args.jobs).read_text())
    here = os.getcwd()
    for i, job in enumerate(jobs):
        argv = [str(a) for a in job["argv"]]
        t0 = time.perf_counter()
        try:
            os.chdir(job.get("cwd", here))
            if argv[0] == "dp":
                from deepmd.main import main as dp_main

                dp_main(argv[1:])
            else:
                run(_parser().parse_args(argv))
        except BaseException as e:  # argparse and DeePMD-kit raise SystemExit too
            raise SystemExit(f"job {i + 1}/{len(jobs)} failed: {' '.join(argv)}\n"
                             f"(cwd {os.getcwd()}): {e!r}") from e
        finally:
            os.chdir(here)
        print(f"job {i + 1}/{len(jobs)} done in {time.perf_counter() - t0:.1f} s: "
              f"{' '.join(argv[:3])}", flush=True)


def _parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-data")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=20240607)
    p.add_argument("--types", type=int, default=2,
                   help="number of elements (O, H, C, N): 2 writes sys_a and sys_b; more "
                        "writes sys_a, sys_b and sys_c")
    for name in ("eval", "ase"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--head", default=None)
        p.add_argument("--system", required=True)
        p.add_argument("--set-prefix", default="set")
        p.add_argument("--out", required=True)
        p.add_argument("--nlist-backend", default="auto", choices=["auto", "native", "vesin"],
                       help="DeePMD-kit's neighbor list: its own (native) or vesin's; auto "
                            "takes vesin when installed, as a stock install does")
        p.add_argument("--no-jit", action="store_true",
                       help="evaluate a checkpoint's model in Python, not scripted (DeePMD-kit "
                            "3.2.0's scripted model fails with fitting_net/atom_ener)")
    p = sub.add_parser("loss")
    p.add_argument("--params", required=True, help="the loss section, JSON")
    p.add_argument("--npz", required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--start-lr", type=float, required=True)
    p = sub.add_parser("stat")
    p.add_argument("--input", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--head", default=None)
    p.add_argument("--skip-neighbor-stat", action="store_true")
    p = sub.add_parser("dump-ckpt")
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None)
    p = sub.add_parser("batch")
    p.add_argument("--jobs", required=True, help="a JSON list of jobs")
    return ap


def main(argv=None):
    run(_parser().parse_args(argv))


def run(a):
    if a.cmd == "make-data":
        make_data(a.out, a.seed, a.types)
    elif a.cmd == "eval":
        cmd_eval(a)
    elif a.cmd == "ase":
        cmd_ase(a)
    elif a.cmd == "loss":
        cmd_loss(a)
    elif a.cmd == "stat":
        cmd_stat(a)
    elif a.cmd == "dump-ckpt":
        cmd_dump(a)
    elif a.cmd == "batch":
        cmd_batch(a)


if __name__ == "__main__":
    main()
