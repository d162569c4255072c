"""The energy model: energy, atomic energy, force and virial (deepmd-compat §6). The same
modules train (on dpx's ops) and, scripted, make the frozen file (on the reference backend):
`lower` and everything it calls are TorchScript; `forward` and `forward_lower` are the eager
entry points of training and evaluation.

Module names follow DeePMD-kit (EnergyModel.atomic_model..., min_nbor_dist) so state dicts are
interchangeable.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from dpx import ops
from dpx.config import ModelConfig
from dpx.model.atomic import DPAtomicModel
from dpx.model.backend import DEFAULT, DTYPES, ModelOptions
from dpx.nlist import format_nlist


class EnergyModel(nn.Module):
    def __init__(self, cfg: ModelConfig, options: ModelOptions = DEFAULT):
        super().__init__()
        if isinstance(cfg.descriptor.sel, str):
            raise ValueError("model/descriptor/sel must be resolved before building the model "
                             "(sel 'auto' is resolved from the training data)")
        self.cfg, self.options = cfg, options
        self.type_map = list(cfg.type_map)
        self.atomic_model = DPAtomicModel(cfg, options)
        descriptor = self.atomic_model.descriptor
        self.rcut = float(descriptor.get_rcut())
        self.sel = list(descriptor.get_sel())
        # the neighbor list the descriptor reads: typed sections, or one list of any type
        self.mixed = bool(descriptor.mixed_types())
        self.coord_dtype = DTYPES[cfg.descriptor.precision]
        self.register_buffer("min_nbor_dist", torch.tensor(-1.0, dtype=torch.float64))

    def forward(self, coord, atype, box=None, fparam=None, aparam=None,
                do_atomic_virial: bool = False):
        """coord [nf, nloc, 3] (or [nf, nloc*3]), atype [nf, nloc], box [nf, 9] or None,
        fparam [nf, numb_fparam], aparam [nf, nloc, numb_aparam] (when the fitting takes
        them) -> energy [nf, 1], atom_energy [nf, nloc, 1], force [nf, nloc, 3], virial
        [nf, 9] (+ atom_virial [nf, nloc, 9]), mask [nf, nloc]."""
        nf, nloc = atype.shape[0], atype.shape[1]
        coord = coord.reshape(nf, -1, 3).to(self.coord_dtype)
        box = None if box is None else box.reshape(nf, 9).to(self.coord_dtype)
        nl = ops.neighbor_list(coord.detach(), atype, None if box is None else box.detach(),
                               self.rcut, self.sel, mixed_types=self.mixed)
        out = self.lower(nl.ext_coord.detach(), nl.ext_atype, nl.nlist, do_atomic_virial,
                         self.training, fparam, aparam)
        result = {"atom_energy": out["atom_energy"], "energy": out["energy"],
                  "force": fold(out["extended_force"], nl.mapping, nloc),
                  "virial": out["virial"], "mask": out["mask"]}
        if do_atomic_virial:
            result["atom_virial"] = fold(out["extended_virial"], nl.mapping, nloc)
        return result

    def forward_lower(self, ext_coord, ext_atype, nlist, mapping=None, fparam=None,
                      aparam=None, do_atomic_virial: bool = False):
        """DeePMD-kit's lower interface on an extended system and a raw neighbor list (any
        order or width, entries beyond rcut): extended_force [nf, nall, 3], ...; aparam of
        the local atoms."""
        nf = nlist.shape[0]
        ext_coord = ext_coord.reshape(nf, -1, 3).detach().to(self.coord_dtype)
        nlist = format_nlist(ext_coord, ext_atype, nlist, self.rcut, self.sel, self.mixed,
                             self.atomic_model.descriptor.need_sorted_nlist_for_lower())
        return self.lower(ext_coord, ext_atype, nlist, do_atomic_virial, self.training,
                          fparam, aparam)

    def lower(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
              do_atomic_virial: bool, create_graph: bool,
              fparam: Optional[torch.Tensor] = None,
              aparam: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Energies and derivatives on a typed nlist of the extended system ext_coord
        [nf, nall, 3] (a leaf: forces are its gradient). create_graph keeps the graph of the
        forces (training on forces)."""
        nloc = nlist.shape[1]
        coord = ext_coord.detach().requires_grad_(True)
        atype = ext_atype[:, :nloc]
        mask = atype >= 0
        atom_e = self.atomic_model(coord, ext_atype, nlist, torch.where(mask, atype, 0),
                                   fparam, aparam)
        atom_e = atom_e * mask[..., None]
        return energy_outputs(atom_e, coord, mask, do_atomic_virial, create_graph, None)

    @torch.jit.export
    def get_dim_fparam(self) -> int:
        return self.atomic_model.fitting_net.numb_fparam

    @torch.jit.export
    def get_dim_aparam(self) -> int:
        return self.atomic_model.fitting_net.numb_aparam

    @torch.jit.export
    def has_default_fparam(self) -> bool:
        return self.atomic_model.fitting_net.default_fparam_tensor is not None


def model_inputs(batch: dict) -> dict:
    """The fparam / aparam a batch (or statistics frame) gives the model. A batch whose
    frames lack fparam.npy passes none, so the model's default_fparam stands in (as
    DeePMD-kit drops fparam when find_fparam is 0)."""
    out = {}
    if "fparam" in batch and float(batch.get("find_fparam", 1.0)) > 0:
        out["fparam"] = batch["fparam"]
    if "aparam" in batch and float(batch.get("find_aparam", 1.0)) > 0:
        out["aparam"] = batch["aparam"]
    return out


def energy_outputs(atom_e: torch.Tensor, coord: torch.Tensor, mask: torch.Tensor,
                   do_atomic_virial: bool, create_graph: bool,
                   grad: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
    """energy [nf, 1], atom_energy, extended_force [nf, nall, 3], virial [nf, 9] and, with
    do_atomic_virial, extended_virial [nf, nall, 9] from atomic energies [nf, nloc, 1] of the
    leaf coord [nf, nall, 3]. grad, when given, is d(sum atom_e)/d coord already computed.

    W_ext[k] = F_ext[k] (x) r_ext[k]; the per-atom virial adds DeePMD-kit's correction
    C[k, a, b] = d(sum_l x_lb e_l)/d r_ka (x local, held fixed), which assigns each pair term
    to the neighbor and sums to 0 (deepmd-compat §6 step 7)."""
    nf = atom_e.shape[0]
    energy = atom_e.sum(dim=1)
    if grad is None:
        grads = torch.autograd.grad([energy.sum()], [coord], create_graph=create_graph,
                                    retain_graph=create_graph or do_atomic_virial)
        g = grads[0]
        assert g is not None
        grad = g
    force = -grad
    virial = force[..., :, None] * coord[..., None, :]
    out = {"atom_energy": atom_e, "energy": energy, "extended_force": force,
           "virial": virial.sum(dim=1).view(nf, 9), "mask": mask.to(torch.int32)}
    if do_atomic_virial:
        correction = virial_correction(coord, atom_e, create_graph)
        out["extended_virial"] = (virial + correction).view(nf, -1, 9)
    if not create_graph:
        out = {k: v.detach() for k, v in out.items()}
    return out


def virial_correction(coord: torch.Tensor, atom_e: torch.Tensor,
                      create_graph: bool) -> torch.Tensor:
    """C [nf, nall, 3, 3]: C[k, a, b] = d(sum_l x_lb e_l)/d r_ka with the local x_l constant."""
    nloc = atom_e.shape[1]
    ce = (coord[:, :nloc].detach() * atom_e).sum(dim=1)  # [nf, 3]
    parts: list[torch.Tensor] = []
    for b in range(3):
        g = torch.autograd.grad([ce[:, b].sum()], [coord], retain_graph=True,
                                create_graph=create_graph)[0]
        assert g is not None
        parts.append(g)
    return torch.stack(parts, dim=-1)


def fold(ext: torch.Tensor, mapping: torch.Tensor, nloc: int) -> torch.Tensor:
    """Per-local-atom sums [nf, nloc, k] of a per-extended-atom quantity [nf, nall, k]."""
    out = torch.zeros(ext.shape[0], nloc, ext.shape[2], dtype=ext.dtype, device=ext.device)
    return out.scatter_add(1, mapping[..., None].expand(-1, -1, ext.shape[2]), ext)
