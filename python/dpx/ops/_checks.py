"""Argument checks shared by the public op functions: errors name the argument."""
from __future__ import annotations

import math

import torch

FLOATS = (torch.float32, torch.float64)


def tensor(name: str, x, ndim: int, dtypes=None, last: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim or (last is not None and x.shape[-1] != last):
        want = f"{ndim}-d" + (f" with last dimension {last}" if last is not None else "")
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if dtypes == "int" and (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    if isinstance(dtypes, tuple) and x.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype in {[str(d) for d in dtypes]}, got {x.dtype}")


def same(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor, dtype=True) -> None:
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {ref.device}")
    if dtype and x.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {ref_name} has {ref.dtype}")


def positive(name: str, v: float) -> None:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


def cutoffs(rcut: float, rcut_smth: float) -> None:
    positive("rcut", rcut)
    if not (isinstance(rcut_smth, (int, float)) and 0 <= rcut_smth < rcut):
        raise ValueError(f"rcut_smth must satisfy 0 <= rcut_smth < rcut = {rcut}, got {rcut_smth!r}")


def sel_list(sel) -> list[int]:
    if not isinstance(sel, (list, tuple)) or not sel or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in sel):
        raise ValueError(f"sel must be a non-empty list of non-negative integers, got {sel!r}")
    return list(sel)
