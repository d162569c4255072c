"""Evaluating a model (checkpoint branch or frozen file) on the frames of a system."""
from __future__ import annotations

import torch

from dpx.data import check_parameters


def evaluate(model, coord, atype, box, batch: int = 8, atomic_virial: bool = False,
             fparam=None, aparam=None) -> dict:
    """energy [nf], force [nf, nloc, 3], virial [nf, 9], atom_energy [nf, nloc] (and
    atom_virial [nf, nloc, 9] when asked) as float64 numpy arrays, frames evaluated `batch`
    at a time; fparam [nf, k] and aparam [nf, nloc, k] when the model takes them."""
    out = {"energy": [], "force": [], "virial": [], "atom_energy": []}
    if atomic_virial:
        out["atom_virial"] = []
    at = torch.as_tensor(atype, dtype=torch.long)
    for lo in range(0, len(coord), batch):
        c = torch.as_tensor(coord[lo:lo + batch])
        b = None if box is None else torch.as_tensor(box[lo:lo + batch])
        params = {k: torch.as_tensor(v[lo:lo + batch]) for k, v in
                  (("fparam", fparam), ("aparam", aparam)) if v is not None}
        res = model(c, at.expand(c.shape[0], -1), b, do_atomic_virial=atomic_virial, **params)
        out["energy"].append(res["energy"].detach().reshape(-1))
        out["force"].append(res["force"].detach())
        out["virial"].append(res["virial"].detach())
        out["atom_energy"].append(res["atom_energy"].detach().squeeze(-1))
        if atomic_virial:
            out["atom_virial"].append(res["atom_virial"].detach())
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def system_parameters(model, system, key: str) -> dict:
    """The fparam / aparam of a system the model takes ({} when it takes none), checked
    against the model's widths; a system without fparam.npy uses the model's default."""
    nf, na = model.get_dim_fparam(), model.get_dim_aparam()
    check_parameters([system], nf, na, model.has_default_fparam(), key)
    out = {}
    if nf and "fparam" in system.labels and system.find["fparam"].all():
        out["fparam"] = system.labels["fparam"]
    if na:
        out["aparam"] = system.labels["aparam"]
    return out
