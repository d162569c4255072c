"""Random but realistic inputs for the op tests (imported by the test modules).

env_inputs builds an extended system (local atoms first, then ghosts) with a neighbor list
that covers every case the environment matrix distinguishes: slots padded with -1, neighbors
inside rcut_smth, in the switching region, exactly at rcut and beyond rcut, on several
frames and types with per-type, per-slot davg/dstd.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from dpx.ops import _library

needs_library = pytest.mark.skipif(
    not _library.LOADED, reason=f"dpx op library not built ({_library.REBUILD})")

DTYPES = (torch.float32, torch.float64)
SEEDS = (0, 1, 2)
# every op test that takes `device` runs on CPU and, where a GPU is present, on CUDA
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ("cpu", pytest.param("cuda", marks=needs_cuda))

# slot categories of env_inputs(...)["kind"]
PAD, INNER, SWITCH, AT_RCUT, BEYOND = range(5)


def env_inputs(seed: int, dtype=torch.float64, nf: int = 2, nloc: int = 5, nghost: int = 5,
               sel=(3, 2, 2), rcut: float = 2.0, rcut_smth: float = 0.75,
               protection: float = 0.0, rcut_gap: float = 0.0) -> dict:
    """rcut_gap moves the ghost placed exactly at rcut from center 0 out by that much: the
    switch is only C2 at rcut, so finite differences of second derivatives (gradcheck of the
    derivative ops) are O(eps) off there."""
    gen = torch.Generator().manual_seed(seed)
    ntypes, nnei, nall = len(sel), sum(sel), nloc + nghost
    sec = [0, *itertools.accumulate(sel)]

    def uniform(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)

    def direction():
        v = torch.randn(3, generator=gen, dtype=torch.float64)
        return v / v.norm()

    coord = torch.empty(nf, nall, 3, dtype=torch.float64)
    for f in range(nf):
        # rejection sampling in a small box: no pair closer than 0.4
        pts: list[torch.Tensor] = []
        while len(pts) < nall - 3:
            p = uniform(3, hi=2.6)
            if all(float((p - q).norm()) > 0.4 for q in pts):
                pts.append(p)
        # center 0 on a 1/64 grid, a ghost at exactly (rcut, 0, 0) from it: d and r are exact
        pts[0] = torch.round(pts[0] * 64) / 64
        at_rcut = pts[0] + torch.tensor([rcut + rcut_gap, 0.0, 0.0], dtype=torch.float64)
        inner = pts[1] + direction() * uniform(1, lo=0.45, hi=0.7)   # inside rcut_smth of 1
        beyond = pts[2] + direction() * uniform(1, lo=1.05, hi=1.3) * rcut  # beyond rcut of 2
        coord[f] = torch.stack(pts + [inner, beyond, at_rcut])
    ext_type = torch.randint(0, ntypes, (nf, nall), generator=gen)
    ext_type[:, :ntypes] = torch.arange(ntypes)   # every type has a center
    atype = ext_type[:, :nloc].clone()

    # per center and type section: a random subset of the atoms of that type in random
    # order (so near and far ones), one slot or none left padded
    nlist = torch.full((nf, nloc, nnei), -1, dtype=torch.long)
    for f, i in itertools.product(range(nf), range(nloc)):
        for t in range(ntypes):
            cand = [j for j in range(nall) if j != i and int(ext_type[f, j]) == t]
            cand = [cand[k] for k in torch.randperm(len(cand), generator=gen).tolist()]
            take = cand[: max(sel[t] - int(torch.randint(0, 2, (1,), generator=gen)), 0)]
            slots = (sec[t] + torch.randperm(sel[t], generator=gen)[: len(take)]).tolist()
            nlist[f, i, slots] = torch.tensor(take, dtype=torch.long)
    # the special ghosts are always listed: first slot of their type's section
    for f, (i, j) in itertools.product(range(nf), ((1, nall - 3), (2, nall - 2), (0, nall - 1))):
        t = int(ext_type[f, j])
        row = nlist[f, i]
        row[(row == j).nonzero()] = -1
        row[sec[t]] = j
    nlist[0, 0, -1] = -1   # at least one padded slot

    davg = uniform(ntypes, nnei, 4, lo=-0.3, hi=0.3)
    dstd = uniform(ntypes, nnei, 4, lo=0.4, hi=1.5)

    # classify every slot (in float64, from the exact coordinates)
    idx = nlist.clamp(min=0)
    xj = torch.gather(coord, 1, idx.reshape(nf, -1, 1).expand(-1, -1, 3)).reshape(nf, nloc, nnei, 3)
    r = (xj - coord[:, :nloc, None, :]).norm(dim=-1)
    kind = torch.full_like(nlist, SWITCH)
    kind[r < rcut_smth] = INNER
    kind[r > rcut] = BEYOND
    kind[r == rcut] = AT_RCUT
    kind[nlist < 0] = PAD
    return {"ext_coord": coord.to(dtype), "nlist": nlist, "atype": atype,
            "davg": davg.to(dtype), "dstd": dstd.to(dtype), "rcut": rcut,
            "rcut_smth": rcut_smth, "protection": protection, "kind": kind, "ext_atype": ext_type}


def nondet_tol(device) -> float:
    """gradcheck's nondet_tol: CUDA's vjp and hvp sum with atomics, so two backward passes
    may differ in the last bits (CPU: bitwise equal)."""
    return 1e-10 if str(device).startswith("cuda") else 0.0


def on(device, value):
    """value (a tensor, or a dict / tuple / list of them, other entries kept) on device."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: on(device, v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(on(device, v) for v in value)
    return value


def em_args(inp: dict) -> tuple:
    """Positional arguments of dpx::env_mat_se_a (and of dpx.ops.env_mat_se_a)."""
    return (inp["ext_coord"], inp["nlist"], inp["atype"], inp["davg"], inp["dstd"],
            inp["rcut"], inp["rcut_smth"], inp["protection"])


def deriv_args(inp: dict) -> tuple:
    """The tail shared by the derivative ops: (ext_coord, nlist, atype, dstd, cut...)."""
    return (inp["ext_coord"], inp["nlist"], inp["atype"], inp["dstd"], inp["rcut"],
            inp["rcut_smth"], inp["protection"])


def randn(gen: torch.Generator, *shape, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype=None) -> None:
    """float64: 1e-12 relative to the largest entry; float32: 1e-5."""
    dtype = dtype or actual.dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    scale = max(float(expected.abs().max()), 1e-30) if expected.numel() else 1.0
    torch.testing.assert_close(actual.to(torch.float64), expected.to(torch.float64),
                               rtol=tol, atol=tol * scale)


__all__ = ["AT_RCUT", "BEYOND", "DEVICES", "DTYPES", "INNER", "PAD", "SEEDS", "SWITCH",
           "assert_close", "deriv_args", "em_args", "env_inputs", "needs_cuda", "needs_library",
           "nondet_tol", "on", "randn"]
