"""The extended system of a periodic frame built in plain (scriptable) PyTorch, and every
neighbor within rcut: what the frozen model's `forward` uses where dpx's op library is absent
(deepmd-compat §2). Training uses the op dpx::neighbor_list (dpx.ops.neighbor_list)."""
from __future__ import annotations

import torch


def extend(coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor,
           rcut: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ext_coord [nf, nall, 3], ext_atype, mapping [nf, nall]) of a periodic system: coords
    wrapped into the cell, then every image shift up to ceil(rcut / face distance) per axis;
    the local atoms (shift 0) come first."""
    nf, nloc, _ = coord.shape
    cell = box.view(nf, 3, 3)
    coord = torch.remainder(coord @ torch.linalg.inv(cell), 1.0) @ cell
    vol = torch.linalg.det(cell).abs()
    cross = torch.stack([torch.linalg.cross(cell[:, 1], cell[:, 2]),
                         torch.linalg.cross(cell[:, 2], cell[:, 0]),
                         torch.linalg.cross(cell[:, 0], cell[:, 1])], dim=1)
    nbuff = torch.ceil(rcut / (vol[:, None] / torch.linalg.norm(cross, dim=-1)))
    nb: list[int] = nbuff.max(dim=0).values.to(torch.long).tolist()
    axes = [torch.arange(-n, n + 1, dtype=coord.dtype, device=coord.device) for n in nb]
    grid = torch.stack(torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij"), -1).view(-1, 3)
    grid = grid[torch.argsort(torch.linalg.norm(grid, dim=-1), stable=True)]  # shift 0 first
    shift = grid[None] @ cell  # [nf, nshift, 3]
    ext = (coord[:, None, :, :] + shift[:, :, None, :]).reshape(nf, -1, 3)
    nshift = grid.shape[0]
    mapping = torch.arange(nloc, device=coord.device).repeat(nshift).expand(nf, -1)
    return ext, atype.repeat(1, nshift), mapping


def all_within(ext_coord: torch.Tensor, ext_atype: torch.Tensor, nloc: int,
               rcut: float) -> torch.Tensor:
    """Raw neighbor list [nf, nloc, width]: every extended atom within rcut of each local atom
    (self and virtual atoms excluded), nearest first, -1 padded to the fullest row."""
    nf, nall, _ = ext_coord.shape
    d2 = ((ext_coord[:, None, :, :] - ext_coord[:, :nloc, None, :]) ** 2).sum(-1)
    self_pair = torch.eye(nloc, nall, dtype=torch.bool, device=d2.device)
    keep = (d2 <= rcut * rcut) & ~self_pair & (ext_atype[:, None, :] >= 0)
    d2 = torch.where(keep, d2, torch.inf)
    width = int(keep.sum(-1).max()) if nloc > 0 else 0
    d2, order = torch.sort(d2, dim=-1, stable=True)
    return torch.where(torch.isfinite(d2[..., :width]), order[..., :width], -1)
