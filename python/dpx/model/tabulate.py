"""Tables of the embedding nets, in DeePMD-kit's `dp compress` layout (its DPTabulate for
se_e2_a and se_e2_r).

Each net G(s) is tabulated on [ll, uu) with stride `step` and on [uu, extrapolate * uu) with
stride 10 * step, where ll = floor(min -davg/dstd) is the input of a neighbor at infinity and
uu = ceil(max (sw(d_min) / d_min - davg) / dstd) that of the closest pair in the training data
(d_min = min_nbor_dist), over the center types the net serves (and, as DeePMD-kit does it,
over the env-mat columns). On each interval of width h,
G is the quintic that matches G, G' and G'' at both ends (Hermite): its error is at most
h^6 max|G^(6)| / (720 * 64), below 1e-16 max|G^(6)| for h = 0.01 and 3e-11 max|G^(6)| for
h = 0.1. Beyond the table the ops extend G linearly (dpx.ops.reference).

TabulatedNet stands in for an EmbeddingNet: same calls, G(s) (s [..., 1] -> G [..., M]) by
deepmd::tabulate_fusion_se_r and contract (env-mat rows -> their share of se_e2_a's T) by
deepmd::tabulate_fusion_se_a, ops of DeePMD-kit's library (so a stock DeePMD-kit LAMMPS runs
the file) that dpx provides where that library is absent (dpx.ops.deepmd). A descriptor's
enable_compression (dpx.model.descriptor) builds its tables with these functions."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from dpx.ops import deepmd as deepmd_ops


def switch(r: float, rcut_smth: float, rcut: float) -> float:
    """The smooth cutoff sw(r) of the environment matrix (1 below rcut_smth, 0 beyond rcut)."""
    if r < rcut_smth:
        return 1.0
    if r >= rcut:
        return 0.0
    u = (r - rcut_smth) / (rcut - rcut_smth)
    return u * u * u * (-6 * u * u + 15 * u - 10) + 1


def input_range(block, min_nbor_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) [ntypes] per center type: the smallest and the largest normalized input
    s = (sw(r)/r - davg) / dstd a neighbor can have (at infinity, at min_nbor_dist), rounded
    out to integers. As DeePMD-kit 3.2.0 takes it, over every column of the first neighbor
    slot's statistics (for se_e2_a the x, y, z columns' 1/dstd widen the range: a longer
    table, the same values)."""
    davg = block.mean[:, 0, :].detach().double().cpu().numpy()
    dstd = block.stddev[:, 0, :].detach().double().cpu().numpy()
    sw = switch(min_nbor_dist, block.rcut_smth, block.rcut)
    lower = np.floor(-davg / dstd).min(axis=1)
    upper = np.ceil((sw / min_nbor_dist - davg) / dstd).max(axis=1)
    return lower, upper


def values_and_derivatives(net: nn.Module, x: torch.Tensor):
    """(G, dG/ds, d2G/ds2) [n, M] at inputs x [n, 1], by forward-mode autodiff."""
    ones = torch.ones_like(x)

    def first(s):
        return torch.func.jvp(net, (s,), (ones,))[1]
    with torch.no_grad():
        value = net(x)
    d1 = first(x)
    d2 = torch.func.jvp(first, (x,), (ones,))[1]
    return value.detach(), d1.detach(), d2.detach()


def hermite_quintic(v0, v1, d0, d1, s0, s1, h):
    """The coefficients a0..a5 of the quintic p(t) on [0, h] with p, p', p'' equal to
    (v0, d0, s0) at 0 and (v1, d1, s1) at h; each argument [n, M] (h [n, 1])."""
    dv = v1 - v0
    a3 = (20 * dv - (8 * d1 + 12 * d0) * h - (3 * s0 - s1) * h ** 2) / (2 * h ** 3)
    a4 = (-30 * dv + (14 * d1 + 16 * d0) * h + (3 * s0 - 2 * s1) * h ** 2) / (2 * h ** 4)
    a5 = (12 * dv - 6 * (d1 + d0) * h + (s1 - s0) * h ** 2) / (2 * h ** 5)
    return torch.stack([v0, d0, 0.5 * s0, a3, a4, a5], dim=-1)  # [n, M, 6]


def tabulate(net: nn.Module, lower: float, upper: float, step: float, extrapolate: float,
             check_frequency: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(table [nspline, 6 M], table_info [6]) of one net on [lower, extrapolate * upper)."""
    stride0, stride1 = step, 10 * step
    nodes = np.concatenate([np.arange(lower, upper, stride0),
                            np.arange(upper, extrapolate * upper, stride1),
                            [extrapolate * upper]])
    nspline = int((upper - lower) / stride0 + (extrapolate * upper - upper) / stride1)
    x = torch.tensor(nodes, dtype=dtype).reshape(-1, 1)
    v, d, s = values_and_derivatives(net, x)
    h = torch.full((nspline, 1), stride1, dtype=dtype)
    h[:int((upper - lower) / stride0)] = stride0
    coef = hermite_quintic(v[:nspline], v[1:nspline + 1], d[:nspline], d[1:nspline + 1],
                           s[:nspline], s[1:nspline + 1], h)
    info = torch.tensor([lower, upper, upper * extrapolate, stride0, stride1,
                         check_frequency], dtype=dtype)
    return coef.reshape(nspline, -1).contiguous(), info


class TabulatedNet(nn.Module):
    """An embedding net replaced by its table (same call: s [..., 1] -> G [..., M])."""

    def __init__(self, table: torch.Tensor, info: torch.Tensor, width: int):
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("info", info)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape[:-1])
        g = torch.ops.deepmd.tabulate_fusion_se_r(self.table, self.info.cpu(), x.reshape(-1, 1),
                                                   self.width)[0]
        return g.reshape(shape + [self.width])

    def contract(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, 4, M]: sum_j rows[:, j]^T (x) G(s_j) of env-mat rows [n, w, 4] (s first) by
        deepmd::tabulate_fusion_se_a: table and contraction in one kernel, G never in memory.
        Its early stop (the first row whose s repeats the last row's stands for all rows from
        it on) holds for dpx's typed list: the filled slots first, padding rows after."""
        rows = rows.contiguous()
        em_x = rows[..., :1].reshape(-1, 1).contiguous()  # the kernel reads it as dense
        return torch.ops.deepmd.tabulate_fusion_se_a(self.table, self.info.cpu(), em_x, rows,
                                                      self.width)[0]

    def flat_params(self) -> torch.Tensor:
        """No parameters to pack: compress_block turns the fused embedding off."""
        raise RuntimeError("a tabulated embedding net has no parameters for the fused op")


def tabulate_typed_nets(block, min_nbor_dist: float, step: float = 0.01,
                        extrapolate: float = 5,
                        check_frequency: int = -1) -> dict[str, tuple[float, float]]:
    """Replace each embedding net of a typed block (se_e2_a's `sea`, se_e2_r) by its table;
    returns each net's table range. A net of one neighbor type for all centers
    (type_one_side, ndim 1) covers the range of every center type, a (center, neighbor) net
    its center type's."""
    check_min_nbor_dist(min_nbor_dist)
    lower, upper = input_range(block, min_nbor_dist)
    nets = block.filter_layers.networks
    ntypes, ranges = block.ntypes, {}
    for k in range(len(nets)):
        if block.filter_layers.ndim == 1:
            ll, uu, name = float(lower.min()), float(upper.max()), f"filter_-1_net_{k}"
        else:
            center, neighbor = k % ntypes, k // ntypes
            ll, uu = float(lower[center]), float(upper[center])
            name = f"filter_{center}_net_{neighbor}"
        width = int(nets[k](torch.zeros(1, 1, dtype=block.mean.dtype)).shape[-1])
        table, info = tabulate(nets[k], ll, uu, step, extrapolate, check_frequency,
                               block.mean.dtype)
        nets[k] = TabulatedNet(table, info, width)
        ranges[name] = (ll, uu)
    # se_e2_a: each table contracts its rows in one op (its plan() picks that path)
    block.tabulated = True
    return ranges


def check_min_nbor_dist(min_nbor_dist: float) -> None:
    if not math.isfinite(min_nbor_dist) or min_nbor_dist <= 0:
        raise ValueError(f"min_nbor_dist must be a positive distance, got {min_nbor_dist}")
    deepmd_ops.ensure()  # the tables call deepmd::tabulate_fusion_*
