"""dpx::neighbor_list as batched PyTorch operations: what a GPU runs until `dpx check` has
passed dpx's CUDA kernel there (ops/paths.py).

Same outputs, bit for bit, as the op and its readable twin (reference.neighbor_list, a loop
over frames and atoms), which tests/nlist checks on CPU in CI; here every step is one tensor
operation over all frames, so nothing loops in Python per atom and nothing leaves the device
except two sizes (how many image shells to visit, and nall). The pair distances are brute
force over local x extended atoms, as DeePMD-kit's PyTorch backend builds its lists on a
GPU; centers go in chunks so that memory stays bounded for large systems.
"""
from __future__ import annotations

import itertools
import math

import torch

from dpx.ops import reference

PAIRS_PER_CHUNK = 1 << 24  # local x extended pairs held at once (distances and sort order)


def _shifts(rc: torch.Tensor) -> torch.Tensor:
    """Every nonzero image shift within the largest frame's shells, lexicographic [ns, 3]."""
    n = [int(x) for x in torch.ceil(rc).amax(dim=0).tolist()]
    grid = [s for s in itertools.product(*[range(-k, k + 1) for k in n]) if s != (0, 0, 0)]
    return torch.tensor(grid, dtype=rc.dtype, device=rc.device).reshape(-1, 3)


def extend(coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None, rcut: float):
    """(mapping, shift, ext_atype) [nf, nall(, 3)]: local atoms (wrapped) first, then for each
    shift in lexicographic order the real atoms whose image lies within rcut of the cell,
    ascending; frames padded with mapping 0, shift 0, ext_atype -1 (reference._extend_frame)."""
    nf, nloc, _ = coord.shape
    local = torch.arange(nloc, device=coord.device).expand(nf, nloc)
    if box is None:
        return local.clone(), torch.zeros_like(coord), atype.clone()
    cell = box.reshape(nf, 3, 3)
    frac = torch.bmm(coord, torch.linalg.inv(cell))
    w = torch.floor(frac)
    f = frac - w
    over = f >= 1.0  # frac = -1e-18 rounds to f = 1.0: fold it back into [0, 1)
    f, w = torch.where(over, f - 1.0, f), torch.where(over, w + 1.0, w)
    rc = rcut / torch.stack([reference.face_distances(c) for c in cell])  # [nf, 3]
    sv = _shifts(rc)                                                       # [ns, 3]
    g = f[:, None] + sv[None, :, None]                                     # [nf, ns, nloc, 3]
    lo, hi = -rc[:, None, None], 1.0 + rc[:, None, None]
    in_shell = (sv.abs()[None] <= torch.ceil(rc)[:, None]).all(-1)        # [nf, ns]
    keep = ((g >= lo) & (g <= hi)).all(-1) & in_shell[..., None] & (atype >= 0)[:, None]
    keep = keep.reshape(nf, -1)
    nghost = keep.sum(dim=1)
    nall = nloc + int(nghost.max()) if keep.shape[1] else nloc
    frame, flat = torch.nonzero(keep, as_tuple=True)  # row-major: shift, then atom
    pos = nloc + torch.cumsum(keep, dim=1)[frame, flat] - 1
    atom, s = flat % nloc, flat // nloc
    mapping = torch.zeros(nf, nall, dtype=torch.long, device=coord.device)
    shift = coord.new_zeros(nf, nall, 3)
    ext_atype = torch.full((nf, nall), -1, dtype=atype.dtype, device=coord.device)
    mapping[:, :nloc], shift[:, :nloc], ext_atype[:, :nloc] = local, -w, atype
    mapping[frame, pos] = atom
    shift[frame, pos] = sv[s] - w[frame, atom]
    ext_atype[frame, pos] = atype[frame, atom]
    return mapping, shift, ext_atype


def _select(d2: torch.Tensor, ok: torch.Tensor, ext_atype: torch.Tensor, sel: list[int]):
    """DeePMD-kit's selection for a chunk of centers: the nearest sum(sel) (ties by extended
    index: a stable sort), then per type the first sel[t] of them (nlist, counts per type)."""
    nnei = sum(sel)
    order = torch.sort(torch.where(ok, d2, torch.inf), dim=-1, stable=True).indices[..., :nnei]
    valid = torch.gather(ok, 2, order)
    tj = torch.gather(ext_atype[:, None, :].expand_as(ok), 2, order)
    counts, sections = [], []
    for t, s in enumerate(sel):
        counts.append((ok & (ext_atype[:, None, :] == t)).sum(-1))
        is_t = valid & (tj == t)
        pick = torch.sort((~is_t).to(torch.int8), dim=-1, stable=True).indices[..., :s]
        sec = torch.where(torch.gather(is_t, 2, pick), torch.gather(order, 2, pick), -1)
        sections.append(torch.nn.functional.pad(sec, (0, s - sec.shape[-1]), value=-1))
    return torch.cat(sections, dim=-1), torch.stack(counts, dim=-1)


def neighbor_list(coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None,
                  rcut: float, sel: list[int]):
    """(mapping, ext_atype, shift, nlist, nnei_max, min_dist) as dpx::neighbor_list."""
    nf, nloc, _ = coord.shape
    mapping, shift, ext_atype = extend(coord, atype, box, rcut)
    ext = torch.gather(coord, 1, mapping[..., None].expand(-1, -1, 3))
    if box is not None:
        ext = ext + torch.bmm(shift, box.reshape(nf, 3, 3))
    nall = ext.shape[1]
    chunk = max(1, PAIRS_PER_CHUNK // max(1, nf * nall))
    nlists, counts, min_d2 = [], [], coord.new_full((nf,), math.inf)
    for a in range(0, nloc, chunk):
        b = min(nloc, a + chunk)
        diff = ext[:, None, :, :] - ext[:, a:b, None, :]
        d2 = (diff * diff).sum(-1)  # [nf, b - a, nall]
        ok = (d2 <= rcut * rcut) & (ext_atype[:, None, :] >= 0) & (atype[:, a:b, None] >= 0)
        centers = torch.arange(a, b, device=coord.device)
        ok[:, centers - a, centers] = False
        min_d2 = torch.minimum(min_d2, torch.where(ok, d2, torch.inf).flatten(1).amin(dim=1)
                               if d2.numel() else min_d2)
        nl, cnt = _select(d2, ok, ext_atype, sel)
        nlists.append(nl)
        counts.append(cnt)
    nlist = torch.cat(nlists, dim=1) if nlists else coord.new_full((nf, 0, sum(sel)), -1,
                                                                      dtype=torch.long)
    count = torch.cat(counts, dim=1) if counts else coord.new_zeros(nf, 0, len(sel),
                                                                     dtype=torch.long)
    nnei_max = count.amax(dim=1) if nloc else count.sum(dim=1)
    return mapping, ext_atype, shift, nlist, nnei_max, min_d2.sqrt()
