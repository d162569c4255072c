"""Neighbor statistics of systems (deepmd-compat §2, update_sel): per type, the largest number
of neighbors within rcut any atom has, and the shortest pair distance. sel "auto" and
`dpx neighbor-stat` read them; dpx's cell-list search makes them fast."""
from __future__ import annotations

import math

import numpy as np
import torch

from dpx import ops


def neighbor_counts(systems, rcut: float, ntypes: int,
                    one_type: bool = False) -> tuple[np.ndarray, float]:
    """(max neighbors per type [ntypes] (one number with one_type: all types as one), minimum
    pair distance) over every frame of the systems."""
    width = 1 if one_type else ntypes
    counts, dmin = np.zeros(width, dtype=np.int64), math.inf
    for sys in systems:
        atype = torch.from_numpy(sys.atype)
        if one_type:
            atype = torch.zeros_like(atype)
        for lo in range(0, sys.nframes, 64):
            coord = torch.from_numpy(sys.coord[lo:lo + 64])
            box = None if sys.box is None else torch.from_numpy(sys.box[lo:lo + 64])
            nl = ops.neighbor_list(coord, atype.expand(coord.shape[0], -1), box, rcut,
                                   [0] * width)
            counts = np.maximum(counts, nl.nnei_max.max(dim=0).values.numpy())
            dmin = min(dmin, float(nl.min_dist.min()))
    return counts, dmin
