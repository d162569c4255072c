"""Start-up statistics (deepmd-compat §3.3, §5.3) from the frames sampled for them (§1.7):
StatItem, the sums a descriptor's input statistics are kept as (so that branches sharing a
descriptor merge them before normalizing, §10.4, and a stat file caches them), and the
per-type least-squares energy bias of the energy fitting."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PROTECTION = 1e-2  # DeePMD-kit's protection of a std (and the default of data_stat_protect)


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
