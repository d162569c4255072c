"""Neighbor search: the extended system and DeePMD-kit's typed neighbor list.

The op (dpx::neighbor_list) returns integer data only: which atom each extended atom is an
image of (mapping) and by which lattice vector (shift). The extended coordinates are then
rebuilt here as coord[mapping] + shift @ box, an ordinary differentiable expression, so that
forces and the virial flow back to coord and box without a backward for the search itself.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from dpx.ops import _checks, _library, nlist_generic, paths


class NeighborList(NamedTuple):
    ext_coord: torch.Tensor   # [nf, nall, 3], differentiable in coord and box
    ext_atype: torch.Tensor   # [nf, nall], -1 for frame padding
    mapping: torch.Tensor     # [nf, nall], local index of each extended atom
    nlist: torch.Tensor       # [nf, nloc, sum(sel)], -1 padded, one section per type
    nnei_max: torch.Tensor    # [nf, ntypes], neighbors of each type of the fullest atom
    min_dist: torch.Tensor    # [nf], shortest pair distance within rcut (inf if none)


def _check(coord, atype, box, rcut, sel):
    _checks.tensor("coord", coord, 3, _checks.FLOATS, last=3)
    _checks.tensor("atype", atype, 2, "int")
    if atype.shape != coord.shape[:2]:
        raise ValueError(f"atype must have shape [nf, nloc] = {tuple(coord.shape[:2])}, "
                         f"got {tuple(atype.shape)}")
    _checks.same("atype", atype, "coord", coord, dtype=False)
    _checks.positive("rcut", rcut)
    sel = _checks.sel_list(sel)
    if atype.numel() and int(atype.max()) >= len(sel):
        raise ValueError(f"atype contains type {int(atype.max())} but sel has {len(sel)} "
                         f"entries (one per type)")
    if box is not None:
        _checks.tensor("box", box, 2, last=9)
        _checks.same("box", box, "coord", coord)
        if box.shape[0] != coord.shape[0]:
            raise ValueError(f"box must have shape [nf, 9] with nf = {coord.shape[0]}, "
                             f"got {tuple(box.shape)}")
        vol = torch.linalg.det(box.detach().reshape(-1, 3, 3)).abs()
        if not bool((vol > 1e-6).all()):
            raise ValueError(f"box has a cell of zero volume (|det| = {float(vol.min()):.3g}); "
                             f"rows of box are the three cell vectors")
    return sel


def _search(coord, atype, box, rcut, sel):
    if paths.kernel(coord.device, "neighbor_list"):
        return torch.ops.dpx.neighbor_list(coord, atype, box, rcut, sel)
    return nlist_generic.neighbor_list(coord, atype, box, rcut, sel)


def neighbor_list(coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None,
                  rcut: float, sel: list[int], mixed_types: bool = False) -> NeighborList:
    """Extended system and neighbor list of coord [nf, nloc, 3] (atype [nf, nloc]; types < 0
    are virtual atoms: nobody's neighbors, no neighbors of their own) in the cell box [nf, 9]
    (rows = cell vectors) or with open boundaries (box None).

    The list follows DeePMD-kit: the nearest sum(sel) atoms within rcut, then the first
    sel[t] of type t in section t, nearest first, -1 padding. With mixed_types, one list of
    the nearest sum(sel) atoms of any type, nearest first (nnei_max then counts all types as
    one). Ghosts are the periodic images within rcut of the cell (any cell shape, including
    cells thinner than 2 rcut).
    """
    if mixed_types:  # the search of one type; the real types come back through mapping
        found = neighbor_list(coord, torch.where(atype >= 0, 0, atype), box, rcut, [sum(sel)])
        ext_atype = torch.gather(atype.long(), 1, found.mapping)
        ext_atype = torch.where(found.ext_atype >= 0, ext_atype, found.ext_atype)
        return found._replace(ext_atype=ext_atype)
    sel = _check(coord, atype, box, rcut, sel)
    atype = atype.long()
    mapping, ext_atype, shift, nlist, nnei_max, min_dist = _search(
        coord.detach(), atype, None if box is None else box.detach(), float(rcut), sel)
    ext_coord = torch.gather(coord, 1, mapping[..., None].expand(-1, -1, 3))
    if box is not None:
        ext_coord = ext_coord + torch.bmm(shift, box.reshape(-1, 3, 3))
    return NeighborList(ext_coord, ext_atype, mapping, nlist, nnei_max, min_dist)


def neighbor_stat(coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None,
                  rcut: float, ntypes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(nnei_max [nf, ntypes], min_dist [nf]) as neighbor_list gives them, without the list:
    the counting pass of neighbor statistics over many frames. The compiled op takes whole
    frames per thread and releases the GIL (so reading the next frames overlaps it); without
    the library, or on a GPU path, the generic search with sel zeros."""
    sel = _check(coord, atype, box, rcut, [0] * ntypes)
    atype = atype.long()
    if coord.device.type == "cpu" and paths.kernel(coord.device, "neighbor_list"):
        return torch.ops.dpx.neighbor_stat(coord, atype, box, float(rcut), ntypes)
    return nlist_generic.neighbor_list(coord, atype, box, float(rcut), sel)[4:]


if _library.LOADED:
    @torch.library.register_fake("dpx::neighbor_list")
    def _(coord, atype, box, rcut, sel):
        # nall depends on the data: the only data-dependent size in the library
        nf, nloc, _ = coord.shape
        nall = torch.library.get_ctx().new_dynamic_size()
        long = dict(dtype=torch.long, device=coord.device)
        return (coord.new_empty(nf, nall, dtype=torch.long), coord.new_empty(nf, nall, **long),
                coord.new_empty(nf, nall, 3), coord.new_empty(nf, nloc, sum(sel), **long),
                coord.new_empty(nf, len(sel), **long), coord.new_empty(nf))
