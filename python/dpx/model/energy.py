"""The se_e2_a energy model: energy, atomic energy, force and virial (deepmd-compat §5.3, §6).

Module names follow DeePMD-kit (EnergyModel.atomic_model.{descriptor, fitting_net, out_bias,
out_std}, min_nbor_dist) so state dicts are interchangeable.
"""
from __future__ import annotations

import torch
from torch import nn

from dpx import ops
from dpx.config import ModelConfig
from dpx.model.descriptor import DescrptSeA
from dpx.model.fitting import EnergyFittingNet

DTYPES = {"default": torch.float64, "float64": torch.float64, "float32": torch.float32}


class DPAtomicModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ntypes = len(cfg.type_map)
        dtype = DTYPES[cfg.descriptor.precision]
        self.descriptor = DescrptSeA(cfg.descriptor, ntypes, dtype)
        self.fitting_net = EnergyFittingNet(cfg.fitting_net, ntypes, self.descriptor.dim_out,
                                            DTYPES[cfg.fitting_net.precision])
        self.register_buffer("out_bias", torch.zeros(1, ntypes, 1, dtype=torch.float64))
        self.register_buffer("out_std", torch.ones(1, ntypes, 1, dtype=torch.float64))
        atom_mask = torch.ones(ntypes, dtype=torch.bool)
        atom_mask[list(cfg.atom_exclude_types)] = False
        self.register_buffer("atom_kept", atom_mask, persistent=False)

    def forward(self, ext_coord, ext_atype, nlist, atype):
        """Atomic energies [nf, nloc, 1] (float64) of the local atoms; atype [nf, nloc] has
        virtual atoms (type < 0) already mapped to 0, masked by the caller."""
        dtype = self.descriptor.sea.mean.dtype
        d = self.descriptor(ext_coord.to(dtype), ext_atype, nlist, atype)
        e = self.fitting_net(d.to(self.fitting_net.bias_atom_e.dtype), atype).to(torch.float64)
        return (e + self.out_bias[0, atype]) * self.atom_kept[atype][..., None]


class EnergyModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg.descriptor.sel, list):
            raise ValueError("model/descriptor/sel must be resolved to a list before building "
                             "the model (sel 'auto' is resolved from the training data)")
        self.cfg = cfg
        self.type_map = list(cfg.type_map)
        self.rcut = cfg.descriptor.rcut
        self.sel = list(cfg.descriptor.sel)
        self.atomic_model = DPAtomicModel(cfg)
        self.register_buffer("min_nbor_dist", torch.tensor(-1.0, dtype=torch.float64))
        pair = torch.zeros(len(self.type_map), len(self.type_map), dtype=torch.bool)
        for a, b in cfg.pair_exclude_types:
            pair[a, b] = pair[b, a] = True
        self.register_buffer("pair_excluded", pair, persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.atomic_model.descriptor.sea.mean.dtype

    def forward(self, coord, atype, box=None, do_atomic_virial: bool = False):
        """coord [nf, nloc, 3] (or [nf, nloc*3]), atype [nf, nloc], box [nf, 9] or None ->
        energy [nf, 1], atom_energy [nf, nloc, 1], force [nf, nloc, 3], virial [nf, 9]
        (+ atom_virial [nf, nloc, 9]), mask [nf, nloc]."""
        nf = atype.shape[0]
        coord = coord.reshape(nf, -1, 3).to(self.dtype)
        box = None if box is None else box.reshape(nf, 9).to(self.dtype)
        nl = ops.neighbor_list(coord.detach(), atype, None if box is None else box.detach(),
                               self.rcut, self.sel)
        out = self.forward_lower(nl.ext_coord, nl.ext_atype, nl.nlist, nl.mapping,
                                 do_atomic_virial, formatted=True)
        nloc = atype.shape[1]
        force = torch.zeros(nf, nloc, 3, dtype=out["extended_force"].dtype, device=coord.device)
        idx = nl.mapping[..., None]
        result = {"atom_energy": out["atom_energy"], "energy": out["energy"],
                  "force": force.scatter_add(1, idx.expand(-1, -1, 3), out["extended_force"]),
                  "virial": out["virial"], "mask": out["mask"]}
        if do_atomic_virial:
            av = torch.zeros(nf, nloc, 9, dtype=force.dtype, device=coord.device)
            result["atom_virial"] = av.scatter_add(1, idx.expand(-1, -1, 9), out["extended_virial"])
        return result

    def forward_lower(self, ext_coord, ext_atype, nlist, mapping=None,
                      do_atomic_virial: bool = False, formatted: bool = False):
        """DeePMD-kit's lower interface on an extended system (§6): extended_force [nf, nall, 3]."""
        nf, nloc = nlist.shape[:2]
        ext_coord = ext_coord.reshape(nf, -1, 3).detach().to(self.dtype).requires_grad_(True)
        if not formatted:
            nlist = format_nlist(ext_coord.detach(), ext_atype, nlist, self.rcut, self.sel)
        atype = ext_atype[:, :nloc]
        mask = atype >= 0
        atype0 = torch.where(mask, atype, 0)
        nlist = self._exclude_pairs(nlist, ext_atype, atype0)
        atom_e = self.atomic_model(ext_coord, ext_atype, nlist, atype0) * mask[..., None]
        energy = atom_e.sum(dim=1)
        (grad,) = torch.autograd.grad(energy.sum(), ext_coord, create_graph=self.training)
        ext_force = -grad
        ext_virial = ext_force[..., :, None] * ext_coord[..., None, :]
        out = {"atom_energy": atom_e, "energy": energy, "extended_force": ext_force,
               "virial": ext_virial.sum(dim=1).reshape(nf, 9), "mask": mask.to(torch.int32)}
        if do_atomic_virial:
            out["extended_virial"] = ext_virial.reshape(nf, -1, 9)
        return out

    def _exclude_pairs(self, nlist, ext_atype, atype):
        if not bool(self.pair_excluded.any()):
            return nlist
        nb_type = torch.gather(ext_atype, 1, nlist.clamp(min=0).flatten(1)).view_as(nlist)
        drop = self.pair_excluded[atype[..., None], nb_type.clamp(min=0)] & (nlist >= 0)
        return torch.where(drop, -1, nlist)


def format_nlist(ext_coord, ext_atype, nlist, rcut: float, sel: list[int]):
    """A raw neighbor list (e.g. LAMMPS': any order, any width, entries beyond rcut) in
    DeePMD-kit's layout: nearest sum(sel) within rcut, then one section per type (§2 step 5)."""
    nf, nloc, width = nlist.shape
    nnei = sum(sel)
    idx = nlist.clamp(min=0)
    xj = torch.gather(ext_coord, 1, idx.reshape(nf, -1, 1).expand(-1, -1, 3)).view(nf, nloc, width, 3)
    r = (xj - ext_coord[:, :nloc, None, :]).norm(dim=-1)
    tj = torch.gather(ext_atype, 1, idx.reshape(nf, -1)).view(nf, nloc, width)
    valid = (nlist >= 0) & (r <= rcut) & (tj >= 0)
    r = torch.where(valid, r, torch.inf)
    order = torch.sort(r, dim=-1, stable=True).indices[..., :nnei]
    nl = torch.where(torch.gather(valid, 2, order), torch.gather(nlist, 2, order), -1)
    tj = torch.gather(tj, 2, order)
    sections = []
    for t, s in enumerate(sel):
        is_t = (tj == t) & (nl >= 0)
        # stable: entries of type t first, in distance order
        pick = torch.sort((~is_t).to(torch.int8), dim=-1, stable=True).indices[..., :s]
        sec = torch.where(torch.gather(is_t, 2, pick), torch.gather(nl, 2, pick), -1)
        if sec.shape[-1] < s:
            sec = torch.nn.functional.pad(sec, (0, s - sec.shape[-1]), value=-1)
        sections.append(sec)
    return torch.cat(sections, dim=-1)
