"""A raw neighbor list (LAMMPS', or one built here) in the layout a descriptor reads
(deepmd-compat §2): typed, section t of sel[t] slots holds neighbors of type t within rcut,
-1 after; or mixed (a descriptor whose mixed_types() is true), one list of the nearest
sum(sel) of any type. Scriptable: the frozen model formats LAMMPS' list with it."""
from __future__ import annotations

import torch


def format_nlist(ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                 rcut: float, sel: list[int], mixed_types: bool = False,
                 sort: bool = False) -> torch.Tensor:
    """A raw neighbor list [nf, nloc, width] (any order, any width, entries beyond rcut, -1
    padding) in the typed layout [nf, nloc, sum(sel)]: section t holds neighbors of type t
    within rcut, filled from its start, -1 after. mixed_types: one section of sum(sel) for
    every type. sort: the kept neighbors in distance order too (a descriptor whose
    need_sorted_nlist_for_lower() is true: DeePMD-kit's compressed DPA-1).

    DeePMD-kit sorts the whole list by distance and keeps the nearest sum(sel) before the type
    split. When no type has more than sel[t] neighbors within rcut, that keeps every neighbor
    within rcut, so packing them without a sort selects the same atoms (in another order, which
    the descriptor's sum does not see); only an overflow takes the sorted path."""
    nf, nloc, width = nlist.shape
    idx = nlist.clamp(min=0)
    xj = torch.gather(ext_coord, 1, idx.view(nf, -1, 1).expand(-1, -1, 3)).view(nf, nloc, width, 3)
    r = torch.linalg.norm(xj - ext_coord[:, :nloc, None, :], dim=-1)
    tj = torch.gather(ext_atype, 1, idx.view(nf, -1)).view(nf, nloc, width)
    tj = torch.where((nlist >= 0) & (r <= rcut), tj, -1)
    if mixed_types:
        tj = torch.where(tj >= 0, 0, -1)
        nsel = 0
        for s in sel:
            nsel += s
        sel = [nsel]
    if sort:
        return _sorted_select(nlist, r, tj, rcut, sel, True)
    counts = torch.stack([(tj == t).sum(dim=-1) for t in range(len(sel))], dim=-1)
    limit = torch.tensor(sel, device=nlist.device)
    if nloc * width == 0 or bool((counts.view(-1, len(sel)) <= limit).all()):
        return _pack(nlist, tj, sel)
    return _sorted_select(nlist, r, tj, rcut, sel, False)


def _pack(nlist: torch.Tensor, tj: torch.Tensor, sel: list[int]) -> torch.Tensor:
    """Entry of type t goes to slot sec[t] + (its rank among the row's type-t entries)."""
    nf, nloc, width = nlist.shape
    nnei = 0
    for s in sel:
        nnei += s
    slot = torch.full_like(nlist, nnei)  # column nnei collects the dropped entries
    start = 0
    for t, s in enumerate(sel):
        is_t = tj == t
        slot = torch.where(is_t, start + torch.cumsum(is_t, dim=-1) - 1, slot)
        start += s
    out = torch.full((nf, nloc, nnei + 1), -1, dtype=nlist.dtype, device=nlist.device)
    return out.scatter_(2, slot, nlist)[..., :nnei]


def _sorted_select(nlist: torch.Tensor, r: torch.Tensor, tj: torch.Tensor, rcut: float,
                   sel: list[int], always_sort: bool) -> torch.Tensor:
    """DeePMD-kit's format_nlist + nlist_distinguish_types: a list wider than sum(sel) (any
    list, always_sort) is sorted by distance (entries beyond rcut last) and cut to the
    nearest sum(sel); then per type the first sel[t]."""
    nf, nloc, width = nlist.shape
    nnei = 0
    for s in sel:
        nnei += s
    if width > nnei or always_sort:
        order = torch.sort(torch.where(tj >= 0, r, torch.inf), dim=-1, stable=True).indices
        order = order[..., :nnei]
        nlist, tj = torch.gather(nlist, 2, order), torch.gather(tj, 2, order)
        width = order.shape[2]
    if width < nnei:
        fill = torch.full((nf, nloc, nnei - width), -1, dtype=nlist.dtype, device=nlist.device)
        nlist, tj = torch.cat([nlist, fill], dim=-1), torch.cat([tj, fill], dim=-1)
    sections: list[torch.Tensor] = []
    for t, s in enumerate(sel):
        is_t = tj == t
        # stable: the entries of type t first, in list order
        pick = torch.sort(is_t.to(torch.int32), dim=-1, descending=True, stable=True).indices
        pick = pick[..., :s]
        sections.append(torch.where(torch.gather(is_t, 2, pick), torch.gather(nlist, 2, pick), -1))
    return torch.cat(sections, dim=-1)
