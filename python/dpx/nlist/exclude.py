"""Type-pair exclusions on a typed neighbor list (model-level `pair_exclude_types`: excluded
pairs leave the list and behave as padding, deepmd-compat §6 step 3). Scriptable."""
from __future__ import annotations

import torch


def pair_table(pairs, ntypes: int) -> list[list[bool]]:
    """table[a][b]: the pair (a, b) is excluded, in both orders. Nested lists rather than a
    tensor buffer: a buffer would be a key of the frozen file's state dict."""
    table = [[False] * ntypes for _ in range(ntypes)]
    for a, b in pairs:
        table[a][b] = table[b][a] = True
    return table


def neighbor_types(nlist: torch.Tensor, ext_atype: torch.Tensor) -> torch.Tensor:
    """The type of the atom in each slot [nf, nloc, nnei] (padding slots: the type of atom 0)."""
    nf = nlist.shape[0]
    return torch.gather(ext_atype, 1, nlist.clamp(min=0).view(nf, -1)).view(nlist.shape)


def excluded_slots(nlist: torch.Tensor, ext_atype: torch.Tensor, atype: torch.Tensor,
                   table: list[list[bool]]) -> torch.Tensor:
    """[nf, nloc, nnei] bool: the slot holds a neighbor whose pair with its center (type atype,
    >= 0) is excluded by the table."""
    excluded = torch.tensor(table, dtype=torch.bool, device=nlist.device)
    nb = neighbor_types(nlist, ext_atype).clamp(min=0)
    return excluded[atype.unsqueeze(-1), nb] & (nlist >= 0)


def exclude_pairs(nlist: torch.Tensor, ext_atype: torch.Tensor, atype: torch.Tensor,
                  table: list[list[bool]]) -> torch.Tensor:
    """nlist with the excluded pairs set to -1."""
    return torch.where(excluded_slots(nlist, ext_atype, atype, table), -1, nlist)
