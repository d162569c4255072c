"""`dpx check`: every compiled op of dpx against its pure-PyTorch twin on the user's device.

Each family (ops/paths.py FAMILIES) runs in a child process of its own, so a kernel that
crashes (an illegal address, an abort) is reported as that family's failure and cannot take
the caller, or the other families, down. Every op of a family is compared, which covers
every order of derivative the autograd chains use: the forward, its vjp, the jvp and hvp of
the environment matrix, the fused family's three derivative ops. Inputs are small and random,
in float32 and float64; the neighbor list in a triclinic cell, a cell thinner than rcut, open
boundaries and with virtual atoms.

Child: python -m dpx.ops.selfcheck MODULE FAMILY DEVICE OUT_JSON (MODULE names where CASES
lives, so tests can check a deliberately crashing fake family).
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dpx.ops import nlist_generic, reference

DTYPES = {"float32": torch.float32, "float64": torch.float64}
RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}
CHILD_TIMEOUT_S = 600


@dataclass
class Row:
    family: str
    op: str
    dtype: str
    error: float      # max |kernel - twin| / max(1, max |twin|); inf for a differing integer
    passed: bool
    ms: float         # the kernel's wall time (device synchronized)
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _error(got, want) -> float:
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        a, b = a.detach().cpu(), b.detach().cpu()
        if a.shape != b.shape or a.dtype != b.dtype:
            return float("inf")
        if not b.is_floating_point():
            worst = max(worst, 0.0 if torch.equal(a, b) else float("inf"))
            continue
        both_inf = torch.isinf(a) & torch.isinf(b) & (a == b)
        diff = torch.where(both_inf, 0.0, (a - b).abs()).nan_to_num(nan=float("inf"))
        scale = max(1.0, float(torch.where(torch.isinf(b), 0.0, b.abs()).max())) if b.numel() \
            else 1.0
        worst = max(worst, float(diff.max()) / scale if diff.numel() else 0.0)
    return worst


def compare(family: str, op: str, kernel, twin, args, dtype, device, rtol=None) -> Row:
    """Run one op both ways on the same arguments."""
    _sync(device)
    t0 = time.perf_counter()
    got = kernel(*args)
    _sync(device)
    ms = 1e3 * (time.perf_counter() - t0)
    err = _error(got, twin(*args))
    tol = rtol if rtol is not None else RTOL[dtype]
    return Row(family, op, str(dtype).removeprefix("torch."), err, err <= tol, ms)


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------
def _systems(gen, dtype, device):
    """(label, coord, atype, box) for the neighbor search: 2 frames x 24 atoms, 2 types."""
    out = []
    h = torch.tensor([[7.0, 0.0, 0.0], [1.2, 6.5, 0.0], [-0.8, 0.6, 7.4]], dtype=torch.float64)
    thin = torch.tensor([[9.0, 0.0, 0.0], [1.5, 5.5, 0.0], [0.7, -0.4, 2.3]], dtype=torch.float64)
    for label, cell in (("triclinic", h), ("thin cell", thin), ("open", None)):
        frac = torch.rand(2, 24, 3, generator=gen, dtype=torch.float64) * 1.4 - 0.2
        ref_cell = h if cell is None else cell
        coord = (frac @ ref_cell).to(dtype)
        atype = torch.randint(0, 2, (2, 24), generator=gen)
        box = None if cell is None else cell.reshape(1, 9).repeat(2, 1).to(dtype)
        out.append((label, coord, atype, box))
    label, coord, atype, box = out[0]
    atype = atype.clone()
    atype[:, ::5] = -1
    out.append(("virtual atoms", coord, atype, box))
    return [(lab, c.to(device), t.to(device), None if b is None else b.to(device))
            for lab, c, t, b in out]


def _env_inputs(gen, dtype, device, rcut=4.0):
    label, coord, atype, box = _systems(gen, dtype, device)[0]
    sel = [12, 16]
    mapping, ext_atype, shift, nlist, *_ = nlist_generic.neighbor_list(coord, atype, box,
                                                                       rcut, sel)
    ext = torch.gather(coord, 1, mapping[..., None].expand(-1, -1, 3)) + torch.bmm(
        shift, box.reshape(-1, 3, 3))
    shape = (2, sum(sel), 4)
    davg = (0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype).to(device)
    dstd = (0.5 + torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype).to(device)
    return ext, nlist, atype, davg, dstd, rcut


def _rand(gen, dtype, device, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype).to(device)


# ----------------------------------------------------------------------------------------
# the families
# ----------------------------------------------------------------------------------------
def check_neighbor_list(device, dtype, gen):
    op = torch.ops.dpx.neighbor_list
    rows = []
    for label, coord, atype, box in _systems(gen, dtype, device):
        rows.append(compare("neighbor_list", f"neighbor_list ({label})", op,
                            nlist_generic.neighbor_list, (coord, atype, box, 4.0, [20, 30]),
                            dtype, device))
    return rows


def check_env_mat(device, dtype, gen):
    ext, nlist, atype, davg, dstd, rcut = _env_inputs(gen, dtype, device)
    cut = (rcut, 0.5, 0.0)
    g = _rand(gen, dtype, device, *nlist.shape, 4)
    t = _rand(gen, dtype, device, *ext.shape)
    ops = torch.ops.dpx
    cases = (("env_mat_se_a", (ext, nlist, atype, davg, dstd, *cut)),
             ("env_mat_se_a_vjp", (g, ext, nlist, atype, dstd, *cut)),
             ("env_mat_se_a_jvp", (t, ext, nlist, atype, dstd, *cut)),
             ("env_mat_se_a_hvp", (g, t, ext, nlist, atype, dstd, *cut)))
    return [compare("env_mat", name, getattr(ops, name), getattr(reference, name), args,
                    dtype, device) for name, args in cases]


def check_se_a(device, dtype, gen):
    em, gg = _rand(gen, dtype, device, 2, 9, 40, 4), _rand(gen, dtype, device, 2, 9, 40, 16)
    gt, gd = _rand(gen, dtype, device, 2, 9, 4, 16), _rand(gen, dtype, device, 2, 9, 16, 4)
    a, b = _rand(gen, dtype, device, 2, 9, 4, 16), _rand(gen, dtype, device, 2, 9, 4, 16)
    ops = torch.ops.dpx
    cases = (("se_a_reduce", (em, gg)), ("se_a_reduce_grad_em", (gt, gg)),
             ("se_a_reduce_grad_g", (gt, em)), ("se_a_gram", (a, b, 4)),
             ("se_a_gram_grad_a", (gd, b)), ("se_a_gram_grad_b", (gd, a)))
    return [compare("se_a", name, getattr(ops, name), getattr(reference, name), args,
                    dtype, device) for name, args in cases]


def check_se_a_embed(device, dtype, gen):
    from dpx.ops.se_a_embed import ACTIVATIONS
    widths, nslot, ncenter = [1, 4, 8, 16], 300, 11
    nparams = reference.embed_net_size(widths, True)
    rows, ops = [], torch.ops.dpx
    for s_last in (False, True):
        em = _rand(gen, dtype, device, nslot, 4 + s_last)
        center = torch.sort(torch.randint(0, ncenter, (nslot,), generator=gen)).values.to(device)
        params = 0.6 * _rand(gen, dtype, device, nparams)
        gt, gge = _rand(gen, dtype, device, ncenter, 4, 16), _rand(gen, dtype, device, *em.shape)
        for act in sorted(set(ACTIVATIONS.values())):
            net = (center, params, widths, act, True)
            cases = (("se_a_embed_reduce", (em, *net, ncenter, 0.3, s_last)),
                     ("se_a_embed_reduce_grad_em", (gt, em, *net, 0.3, s_last)),
                     ("se_a_embed_reduce_grad_params", (gt, em, *net, 0.3, s_last)),
                     ("se_a_embed_reduce_grad_em_grad", (gge, gt, em, *net, 0.3, s_last)))
            layout = "s apart" if s_last else "s = em[:, 0]"
            rows += [compare("se_a_embed", f"{name} (act {act}, {layout})", getattr(ops, name),
                             getattr(reference, name), args, dtype, device)
                     for name, args in cases]
    return rows


CASES = {"neighbor_list": check_neighbor_list, "env_mat": check_env_mat, "se_a": check_se_a,
         "se_a_embed": check_se_a_embed}


# ----------------------------------------------------------------------------------------
# parent and child
# ----------------------------------------------------------------------------------------
def _child(module: str, family: str, device: str, out: str) -> None:
    import dpx.ops  # noqa: F401  (loads the library and its autograd registrations)
    cases = importlib.import_module(module).CASES[family]
    dev = torch.device(device)
    rows = []
    for dtype in DTYPES.values():
        gen = torch.Generator().manual_seed(20261206)
        try:
            rows += cases(dev, dtype, gen)
        except Exception as e:  # noqa: BLE001  (a kernel's error is that family's failure)
            rows.append(Row(family, family, str(dtype).removeprefix("torch."), float("inf"),
                            False, 0.0, f"raised {type(e).__name__}: {str(e).splitlines()[0]}"))
    Path(out).write_text(json.dumps([r.__dict__ for r in rows]))


def _crashed(family: str, proc: subprocess.CompletedProcess | None, why: str) -> Row:
    if proc is not None and proc.returncode < 0:
        why = f"crashed ({signal.Signals(-proc.returncode).name})"
    elif proc is not None:
        tail = (proc.stderr or "").strip().splitlines()
        why = f"child exited {proc.returncode}" + (f": {tail[-1]}" if tail else "")
    return Row(family, family, "-", float("inf"), False, 0.0, why)


def run(device: str, families: list[str], module: str = __name__,
        pythonpath: list[str] | None = None, timeout: float = CHILD_TIMEOUT_S) -> list[Row]:
    """Each family in a child process on device; a crash or timeout is a failing row."""
    env = dict(os.environ, DPX_CUDA_KERNELS="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env.get("PYTHONPATH", "")])
    rows = []
    for family in families:
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"dpx-check-{os.getpid()}-{family}.json"
        cmd = [sys.executable, "-m", "dpx.ops.selfcheck", module, family, device, str(out)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rows.append(_crashed(family, None, f"timed out after {timeout:.0f} s"))
            continue
        if proc.returncode != 0 or not out.exists():
            rows.append(_crashed(family, proc, ""))
            continue
        rows += [Row(**r) for r in json.loads(out.read_text())]
        out.unlink()
    return rows


if __name__ == "__main__":
    _child(*sys.argv[1:5])
