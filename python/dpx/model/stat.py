"""Start-up statistics: descriptor davg/dstd (deepmd-compat §3.3) and the energy bias
out_bias (§5.3), from the frames sampled for statistics (§1.7).

Descriptor statistics are kept as sums (StatItem) so that branches sharing a descriptor can
merge them before normalizing (§10.4), and so that a stat file can cache them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dpx import ops

PROTECTION = 1e-2


@dataclass
class StatItem:
    number: float = 0.0
    sum: float = 0.0
    squared_sum: float = 0.0

    def __add__(self, other: StatItem) -> StatItem:
        return StatItem(self.number + other.number, self.sum + other.sum,
                        self.squared_sum + other.squared_sum)

    def avg(self) -> float:
        return self.sum / self.number if self.number else 0.0

    def std(self, protection: float = PROTECTION) -> float:
        if not self.number:
            return 0.1
        s = float(np.sqrt(max(self.squared_sum / self.number - self.avg() ** 2, 0.0)))
        return protection if abs(s) < protection else s

    def to_array(self) -> np.ndarray:
        return np.array([self.number, self.sum, self.squared_sum])

    @classmethod
    def from_array(cls, a) -> StatItem:
        return cls(*[float(x) for x in a])


def env_mat_stats(block, frames: list[dict]) -> dict[str, StatItem]:
    """Sums r_t (radial column) and a_t (xyz columns pooled) per center type t over all nnei
    slots of the raw environment matrix (davg 0, dstd 1), padding rows included (§3.3)."""
    cfg, ntypes = block.cfg, block.ntypes
    stats = {f"{k}_{t}": StatItem() for t in range(ntypes) for k in "ra"}
    dtype = block.mean.dtype
    for sample in frames:
        coord = sample["coord"].to(dtype)
        box = None if sample.get("box") is None else sample["box"].to(dtype)
        atype = sample["atype"].long()
        nl = ops.neighbor_list(coord, atype, box, cfg.rcut, block.sel)
        with torch.no_grad():
            em = block.env_mat(nl.ext_coord, nl.ext_atype, nl.nlist, atype.clamp(min=0), raw=True)
        for t in range(ntypes):
            rows = em[atype == t].double()
            r, a = rows[..., 0], rows[..., 1:]
            stats[f"r_{t}"] += StatItem(r.numel(), float(r.sum()), float((r * r).sum()))
            stats[f"a_{t}"] += StatItem(a.numel(), float(a.sum()), float((a * a).sum()))
    return stats


def set_env_mat_stats(block, stats: dict[str, StatItem]) -> None:
    """davg[t] = (avg r_t, 0, 0, 0), dstd[t] = (std r_t, std a_t x 3) over every slot."""
    davg = torch.zeros_like(block.mean)
    dstd = torch.ones_like(block.stddev)
    for t in range(block.ntypes):
        r, a = stats[f"r_{t}"], stats[f"a_{t}"]
        if not block.cfg.set_davg_zero:
            davg[t, :, 0] = r.avg()
        dstd[t, :, 0] = r.std()
        dstd[t, :, 1:] = a.std()
    block.mean.copy_(davg)
    block.stddev.copy_(dstd)


def type_counts(frames: list[dict], ntypes: int) -> tuple[np.ndarray, np.ndarray]:
    """(E [Nf, 1], A [Nf, ntypes]): frame energies and per-frame atom counts by type, over the
    sampled frames that carry an energy label."""
    energies, counts = [], []
    for sample in frames:
        if not float(sample.get("find_energy", 1.0)):
            continue
        atype = sample["atype"].long()
        counts.append(torch.stack([(atype == t).sum(-1) for t in range(ntypes)], -1).numpy())
        energies.append(sample["energy"].reshape(-1, 1).double().numpy())
    if not energies:
        return np.zeros((0, 1)), np.zeros((0, ntypes))
    return np.concatenate(energies), np.concatenate(counts).astype(np.float64)


def solve_bias(energy: np.ndarray, counts: np.ndarray, preset: list | None = None,
               excluded: list[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per-type energy bias by minimum-norm least squares (numpy.linalg.lstsq, rcond None),
    with preset values held fixed, and the std of the residual per frame (§5.3)."""
    a = counts.copy()
    a[:, list(excluded)] = 0.0
    e = energy.copy()
    ntypes = a.shape[1]
    fixed = [t for t in range(ntypes) if preset is not None and t < len(preset)
             and preset[t] is not None]
    for t in fixed:
        e -= a[:, t:t + 1] * preset[t]
        a[:, t] = 0.0
    if len(e):
        bias = np.linalg.lstsq(a, e, rcond=None)[0].reshape(ntypes)
    else:
        bias = np.zeros(ntypes)
    for t in fixed:
        bias[t] = preset[t]
    resid = energy - counts @ bias.reshape(-1, 1)
    std = float(np.std(resid)) if len(resid) else 1.0
    return bias, np.full(ntypes, std)
