"""Evaluating a model (checkpoint branch or frozen file) on the frames of a system."""
from __future__ import annotations

import torch


def evaluate(model, coord, atype, box, batch: int = 8, atomic_virial: bool = False) -> dict:
    """energy [nf], force [nf, nloc, 3], virial [nf, 9], atom_energy [nf, nloc] (and
    atom_virial [nf, nloc, 9] when asked) as float64 numpy arrays, frames evaluated `batch`
    at a time."""
    out = {"energy": [], "force": [], "virial": [], "atom_energy": []}
    if atomic_virial:
        out["atom_virial"] = []
    at = torch.as_tensor(atype, dtype=torch.long)
    for lo in range(0, len(coord), batch):
        c = torch.as_tensor(coord[lo:lo + batch])
        b = None if box is None else torch.as_tensor(box[lo:lo + batch])
        res = model(c, at.expand(c.shape[0], -1), b, do_atomic_virial=atomic_virial)
        out["energy"].append(res["energy"].detach().reshape(-1))
        out["force"].append(res["force"].detach())
        out["virial"].append(res["virial"].detach())
        out["atom_energy"].append(res["atom_energy"].detach().squeeze(-1))
        if atomic_virial:
            out["atom_virial"].append(res["atom_virial"].detach())
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}
