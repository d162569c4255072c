"""The frozen model `dpx freeze` saves: the training model's own modules (dpx.model), built on
the reference backend and scripted, behind DeePMD-kit's frozen-model interface (deepmd-compat
§6, §13), so that DeePMD-kit's DeepPot, `dp --pt test` and LAMMPS `pair_style deepmd` load it
where dpx is not installed. Submodule and buffer names are DeePMD-kit's frozen EnergyModel's.

What the export adds to the shared modules, and only here:
- forward builds the extended system and neighbor list in plain PyTorch (dpx.nlist);
- forward_lower puts LAMMPS' raw list into the typed layout without sorting it whenever no
  type has more than sel[t] neighbors within rcut (dpx.nlist.format_nlist);
- se_e2_a runs its nets on the filled slots and drops the slot columns that no atom fills
  (ModelOptions.narrow_padding, on in EXPORT);
- boxes larger than chunk_atoms are evaluated a block of centers at a time.
"""
from __future__ import annotations

from typing import Optional

import torch

from dpx.config import ModelConfig
from dpx.model.backend import EXPORT
from dpx.model.energy import EnergyModel, energy_outputs, fold
from dpx.nlist import all_within, extend, format_nlist


class FrozenEnergyModel(EnergyModel):
    """DeePMD-kit's frozen EnergyModel interface (deepmd-compat §13.1) on dpx's EnergyModel."""
    # a real type, not the string `from __future__ import annotations` would make of it:
    # TorchScript reads it to type the list, which may be empty
    __annotations__ = {"observed": list[str]}

    def __init__(self, cfg: ModelConfig, model_def_script: str):
        super().__init__(cfg, EXPORT)
        self.model_def_script = model_def_script
        self.nnei = sum(self.sel)
        # centers per autograd pass; boxes up to this size take one pass
        self.chunk_atoms: int = 256
        self.observed = []
        self.sorted_lower = False

    def script(self) -> torch.jit.ScriptModule:
        """The TorchScript module to save. Whether forward_lower sorts the raw list (a
        geometrically compressed DPA-1) is asked of the descriptor here, after any
        compression."""
        self.sorted_lower = bool(self.atomic_model.descriptor.need_sorted_nlist_for_lower())
        return torch.jit.script(self)

    @classmethod
    def from_model(cls, model: EnergyModel, model_def_script: str) -> FrozenEnergyModel:
        """A frozen copy of a (trained) model's weights and statistics."""
        frozen = cls(model.cfg, model_def_script)
        frozen.load_state_dict(model.state_dict())
        for p in frozen.parameters():  # forces need d/d coord only
            p.requires_grad_(False)
        bias = frozen.atomic_model.out_bias[0, :, 0].tolist()
        frozen.observed = [n for n, b in zip(frozen.type_map, bias) if abs(b) > 1e-6]
        return frozen.eval()

    @torch.jit.export
    def forward_lower(self, extended_coord: torch.Tensor, extended_atype: torch.Tensor,
                      nlist: torch.Tensor, mapping: Optional[torch.Tensor] = None,
                      fparam: Optional[torch.Tensor] = None,
                      aparam: Optional[torch.Tensor] = None, do_atomic_virial: bool = False,
                      comm_dict: Optional[dict[str, torch.Tensor]] = None,
                      charge_spin: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """energy [nf, 1], atom_energy [nf, nloc, 1], extended_force [nf, nall, 3], virial
        [nf, 9], extended_virial [nf, nall, 9] (if do_atomic_virial), mask [nf, nloc] of an
        extended system; nlist may be raw (LAMMPS') and is formatted here."""
        nf = nlist.shape[0]
        coord = extended_coord.reshape(nf, -1, 3)
        input_dtype = coord.dtype
        coord = coord.detach().to(torch.float64)
        nlist = format_nlist(coord, extended_atype, nlist, self.rcut, self.sel, self.mixed,
                             self.sorted_lower)
        return _cast_back(self._evaluate(coord, extended_atype, nlist, do_atomic_virial,
                                         fparam, aparam), input_dtype)

    @torch.jit.export
    def forward_common_lower(self, extended_coord: torch.Tensor, extended_atype: torch.Tensor,
                             nlist: torch.Tensor, mapping: Optional[torch.Tensor] = None,
                             fparam: Optional[torch.Tensor] = None,
                             aparam: Optional[torch.Tensor] = None,
                             do_atomic_virial: bool = False,
                             comm_dict: Optional[dict[str, torch.Tensor]] = None,
                             extra_nlist_sort: bool = False,
                             extended_coord_corr: Optional[torch.Tensor] = None,
                             charge_spin: Optional[torch.Tensor] = None
                             ) -> dict[str, torch.Tensor]:
        """forward_lower in DeePMD-kit's internal names and shapes, which its Python
        evaluator (DeepPot, `dp test`, its ASE calculator) calls when it builds the neighbor
        list itself (vesin): energy [nf, nloc, 1], energy_redu [nf, 1], energy_derv_r
        [nf, nall, 1, 3] (the force), energy_derv_c [nf, nall, 1, 9] (the per-atom virial),
        energy_derv_c_redu [nf, 1, 9], mask [nf, nloc]. The list is formatted here whatever
        extra_nlist_sort says (the selection is the same)."""
        low = self.forward_lower(extended_coord, extended_atype, nlist, mapping, fparam, aparam,
                                 do_atomic_virial, comm_dict, charge_spin)
        nf = nlist.shape[0]
        if do_atomic_virial:
            ext_virial = low["extended_virial"]
        else:  # DeePMD-kit's evaluator drops it unasked; F (x) r without the correction
            force = low["extended_force"]
            coord = extended_coord.reshape(nf, -1, 3).to(force.dtype)
            ext_virial = (force[..., :, None] * coord[..., None, :]).reshape(nf, -1, 9)
        return {"energy": low["atom_energy"], "energy_redu": low["energy"],
                "energy_derv_r": low["extended_force"].unsqueeze(-2),
                "energy_derv_c": ext_virial.unsqueeze(-2),
                "energy_derv_c_redu": low["virial"].view(nf, 1, 9), "mask": low["mask"]}

    def forward(self, coord: torch.Tensor, atype: torch.Tensor, box: Optional[torch.Tensor] = None,
                fparam: Optional[torch.Tensor] = None, aparam: Optional[torch.Tensor] = None,
                do_atomic_virial: bool = False,
                charge_spin: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """energy, atom_energy, force [nf, nloc, 3], virial, atom_virial (if
        do_atomic_virial), mask of local atoms coord [nf, nloc, 3] in box [nf, 9] (or open)."""
        nf, nloc = atype.shape[0], atype.shape[1]
        coord = coord.reshape(nf, nloc, 3)
        input_dtype = coord.dtype
        coord = coord.detach().to(torch.float64)
        if box is None:
            ext_coord, ext_atype = coord, atype
            mapping = torch.arange(nloc, device=coord.device).expand(nf, -1)
        else:
            ext_coord, ext_atype, mapping = extend(coord, atype, box.detach().to(torch.float64),
                                                   self.rcut)
        raw = all_within(ext_coord, ext_atype, nloc, self.rcut)
        nlist = format_nlist(ext_coord, ext_atype, raw, self.rcut, self.sel, self.mixed)
        low = self._evaluate(ext_coord, ext_atype, nlist, do_atomic_virial, fparam, aparam)
        out = {"atom_energy": low["atom_energy"], "energy": low["energy"],
               "force": fold(low["extended_force"], mapping, nloc),
               "virial": low["virial"], "mask": low["mask"]}
        if do_atomic_virial:
            out["atom_virial"] = fold(low["extended_virial"], mapping, nloc)
        return _cast_back(out, input_dtype)

    def _evaluate(self, coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                  do_atomic_virial: bool, fparam: Optional[torch.Tensor],
                  aparam: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model's lower call, a block of centers at a time for a large box."""
        nloc = nlist.shape[1]
        if do_atomic_virial or nloc <= self.chunk_atoms:
            return self.lower(coord, ext_atype, nlist, do_atomic_virial, False, fparam, aparam)
        coord = coord.detach().requires_grad_(True)
        atype = ext_atype[:, :nloc]
        mask = atype >= 0
        atom_e, grad = self._blocks(coord, ext_atype, nlist, torch.where(mask, atype, 0), mask,
                                    fparam, aparam)
        return energy_outputs(atom_e, coord, mask, False, False, grad)

    def _blocks(self, coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype0: torch.Tensor, mask: torch.Tensor, fparam: Optional[torch.Tensor],
                aparam: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(atom_e [nf, nloc, 1], dE/d coord) a block of chunk_atoms centers at a time: each
        block's graph is freed before the next is built, so a large box (LAMMPS, 12k atoms)
        works in tensors of a few MB that the allocator reuses instead of GB-sized ones that
        are mapped and page-faulted anew every step. The block's centers are put in front of
        the extended system, where the descriptor takes its centers from, after a copy of
        atom 0 (computed and dropped): a mixed-type descriptor gives its padding the type of
        extended atom 0 (DeePMD-kit's rule), which must stay the system's atom 0."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        grad = torch.zeros_like(coord)
        parts: list[torch.Tensor] = []
        for a in range(0, nloc, self.chunk_atoms):
            b = min(a + self.chunk_atoms, nloc)
            block = torch.cat([coord[:, :1], coord[:, a:b], coord], dim=1)
            block_atype = torch.cat([ext_atype[:, :1], ext_atype[:, a:b], ext_atype], dim=1)
            rows = torch.cat([nlist[:, :1], nlist[:, a:b]], dim=1)
            block_nlist = torch.where(rows >= 0, rows + (b - a + 1), -1)
            centers = torch.cat([atype0[:, :1], atype0[:, a:b]], dim=1)
            block_aparam: Optional[torch.Tensor] = None
            if aparam is not None:
                local = aparam.reshape(nf, nloc, -1)
                block_aparam = torch.cat([local[:, :1], local[:, a:b]], dim=1)
            e = self.atomic_model(block, block_atype, block_nlist, centers, fparam,
                                  block_aparam)
            e = e[:, 1:] * mask[:, a:b, None]
            g = torch.autograd.grad([e.sum()], [coord])[0]
            assert g is not None
            grad = grad + g
            parts.append(e.detach())
        return torch.cat(parts, dim=1), grad

    @torch.jit.export
    def get_rcut(self) -> float:
        return self.rcut

    @torch.jit.export
    def get_type_map(self) -> list[str]:
        return self.type_map

    @torch.jit.export
    def get_ntypes(self) -> int:
        return len(self.type_map)

    @torch.jit.export
    def get_sel(self) -> list[int]:
        return self.sel

    @torch.jit.export
    def get_nsel(self) -> int:
        return self.nnei

    @torch.jit.export
    def get_nnei(self) -> int:
        return self.nnei

    @torch.jit.export
    def is_aparam_nall(self) -> bool:
        return False

    @torch.jit.export
    def get_sel_type(self) -> list[int]:
        """Types with atomic energies: those not in atom_exclude_types."""
        sel_type: list[int] = []
        for t, kept in enumerate(self.atomic_model.atom_kept):
            if kept != 0.0:
                sel_type.append(t)
        return sel_type

    @torch.jit.export
    def mixed_types(self) -> bool:
        return self.mixed

    @torch.jit.export
    def has_message_passing(self) -> bool:
        return False

    @torch.jit.export
    def need_sorted_nlist_for_lower(self) -> bool:
        return self.sorted_lower

    @torch.jit.export
    def model_output_type(self) -> list[str]:
        return ["energy", "mask"]

    @torch.jit.export
    def get_model_def_script(self) -> str:
        return self.model_def_script

    @torch.jit.export
    def get_min_nbor_dist(self) -> Optional[float]:
        value = float(self.min_nbor_dist.item())
        return None if value < 0 else value

    @torch.jit.export
    def get_observed_type_list(self) -> list[str]:
        return self.observed

    @torch.jit.export
    def get_dim_chg_spin(self) -> int:
        return 0

    @torch.jit.export
    def has_chg_spin_ebd(self) -> bool:
        return False

    @torch.jit.export
    def has_default_chg_spin(self) -> bool:
        return False

    @torch.jit.export
    def get_default_chg_spin(self) -> Optional[torch.Tensor]:
        return None



def _cast_back(out: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Outputs in the input's precision, the energy kept in float64 (as DeePMD-kit does)."""
    if dtype != torch.float64:
        for k in list(out.keys()):
            if k not in ("energy", "mask"):
                out[k] = out[k].to(dtype)
    return out
