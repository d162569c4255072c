"""A TorchScript-able se_e2_a energy model with DeePMD-kit's frozen-model interface
(deepmd-compat §6, §13): the module `dpx freeze` saves, loaded by DeePMD-kit's DeepPot,
`dp --pt test` and LAMMPS `pair_style deepmd`.

The training model calls dpx's ops through autograd registered from Python, which TorchScript
cannot compile and LAMMPS does not have, so this module is plain PyTorch: the env matrix and
the reductions are the scripted twins in dpx.ops.reference. Submodule and buffer names follow
DeePMD-kit's frozen EnergyModel, so the state dicts are interchangeable.

Where it saves time over DeePMD-kit's frozen model:
- the raw (LAMMPS) neighbor list is put into the typed layout without sorting it by distance
  whenever no type has more than sel[t] neighbors within rcut (the selection is then the
  same); otherwise it falls back to DeePMD-kit's sort;
- the embedding nets run on the filled slots only, plus one padding row per (center type,
  neighbor type) that every padded slot shares (davg/dstd are the same in every slot).
"""
from __future__ import annotations

import itertools
import math
from typing import Optional

import torch
from torch import nn

from dpx.export.nlist import all_within, extend, format_nlist
from dpx.ops.reference import env_mat_se_a, se_a_gram


def activate(x: torch.Tensor, name: str, thr: float) -> torch.Tensor:
    """DeePMD-kit's activation functions (deepmd-compat §0.3) by name, scriptable."""
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return torch.relu(x)
    if name == "relu6":
        return nn.functional.relu6(x)
    if name == "softplus":
        return nn.functional.softplus(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "silu":
        return nn.functional.silu(x)
    if name in ("gelu", "gelu_tf"):
        return nn.functional.gelu(x, approximate="tanh")
    if name in ("silut", "custom_silu"):
        sig = 1.0 / (1.0 + math.exp(-thr))
        slope = sig + thr * sig * (1.0 - sig)
        tail = torch.tanh(slope * (x - thr)) + thr * sig
        return torch.where(x < thr, nn.functional.silu(x), tail)
    return x  # linear / none


class Layer(nn.Module):
    """Scriptable copy of dpx.model.network.MLPLayer (same parameter names)."""

    def __init__(self, src):
        super().__init__()
        key, _, arg = (src.act_name or "linear").lower().partition(":")
        self.act = key
        self.thr = float(arg) if arg else 3.0
        self.resnet = bool(src.resnet)
        self.matrix = nn.Parameter(src.matrix.detach().clone())
        for name in ("bias", "idt"):
            value = getattr(src, name)
            self.register_parameter(name, None if value is None
                                    else nn.Parameter(value.detach().clone()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [n, num_in] -> [n, num_out]."""
        bias = self.bias
        y = x @ self.matrix if bias is None else torch.addmm(bias, x, self.matrix)
        y = activate(y, self.act, self.thr)
        idt = self.idt
        if idt is not None:
            y = y * idt
        if self.resnet:
            n, width = x.shape[0], x.shape[1]
            if y.shape[1] == width:
                y = y + x
            else:  # y + concat(x, x), without building the concatenation
                y = (y.view(n, 2, width) + x.unsqueeze(1)).view(n, 2 * width)
        return y


class Net(nn.Module):
    def __init__(self, src):
        super().__init__()
        self.layers = nn.ModuleList([Layer(layer) for layer in src.layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Collection(nn.Module):
    """Networks under both names DeePMD-kit's state dicts carry (`networks`, `_networks`)."""

    def __init__(self, src):
        super().__init__()
        self.networks = nn.ModuleList([Net(net) for net in src.networks])
        self._networks = self.networks


def _sizes(sel: list[int]) -> list[int]:
    return [0, *itertools.accumulate(sel)]


class DescrptBlockSeA(nn.Module):
    """The se_e2_a descriptor of local atoms from env rows of their typed neighbor list."""

    def __init__(self, src):
        super().__init__()
        c = src.cfg
        self.ntypes, self.sel, self.sec = src.ntypes, list(src.sel), _sizes(src.sel)
        self.nnei = sum(self.sel)
        self.rcut, self.rcut_smth, self.protection = c.rcut, c.rcut_smth, c.env_protection
        self.axis_neuron, self.type_one_side = c.axis_neuron, c.type_one_side
        self.register_buffer("mean", src.mean.detach().clone())
        self.register_buffer("stddev", src.stddev.detach().clone())
        self.filter_layers = Collection(src.filter_layers)
        self.compress_info = nn.ParameterList([nn.Parameter(p.detach().clone())
                                               for p in src.compress_info])
        self.compress_data = nn.ParameterList([nn.Parameter(p.detach().clone())
                                               for p in src.compress_data])
        self.has_exclusion = bool(src.excluded.any())
        # a small table as a list, not a buffer: DeePMD-kit's state dict has no such key
        self.excluded: list[list[bool]] = src.excluded.tolist()

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor) -> torch.Tensor:
        """Descriptor [nf * nloc, M1 * axis_neuron] (deepmd-compat §3.5)."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        nlist, widths = self._narrow(nlist)
        width = nlist.shape[2]
        em = env_mat_se_a(ext_coord, nlist, atype, self.mean[:, :width], self.stddev[:, :width],
                          self.rcut, self.rcut_smth, self.protection).view(nf * nloc, width, 4)
        filled = (nlist >= 0).view(nf * nloc, width)
        if self.has_exclusion:
            # excluded pairs have a zero row: no net needed, any embedding gives 0
            nb_type = torch.gather(ext_atype, 1, nlist.clamp(min=0).view(nf, -1)).view(-1, width)
            excluded = torch.tensor(self.excluded, device=nlist.device)
            keep = ~(excluded[atype.view(-1, 1), nb_type] & filled)
            em = em * keep[..., None].to(em.dtype)
            filled = filled & keep
        flat_type = atype.reshape(-1)
        g, table = self._embed(em, flat_type, filled, widths)
        # T = (1/nnei) sum over all sel slots; the columns cut off by _narrow are padding
        t = torch.matmul(em.transpose(1, 2), g) + self._cut_padding(table, widths, flat_type)
        t = t / self.nnei
        d = se_a_gram(t, t, self.axis_neuron)
        return d.reshape(nf * nloc, -1)

    def _narrow(self, nlist: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """The typed list without the trailing columns of each section that no atom fills
        (about a quarter of sel at water density), and each section's kept width."""
        sections: list[torch.Tensor] = []
        widths: list[int] = []
        for t, sel in enumerate(self.sel):
            sec = nlist[..., self.sec[t]:self.sec[t] + sel]
            rank = torch.arange(1, sel + 1, device=nlist.device)
            w = int(((sec >= 0) * rank).max()) if sec.numel() > 0 else 0
            sections.append(sec[..., :w])
            widths.append(w)
        return torch.cat(sections, dim=-1), widths

    def _cut_padding(self, table: torch.Tensor, widths: list[int],
                     flat_type: torch.Tensor) -> torch.Tensor:
        """[n, 4, M1]: sum over the cut-off slots, (sel[t] - width[t]) padding rows of each
        neighbor type, em_pad (x) G_pad of the center type."""
        ntypes = self.ntypes
        missing = torch.tensor([self.sel[t] - widths[t] for t in range(ntypes)],
                               dtype=table.dtype, device=table.device)
        g_sum = (missing[None, :, None] * table.view(ntypes, ntypes, -1)).sum(dim=1)
        em_pad = -self.mean[:, 0, :] / self.stddev[:, 0, :]  # [ntypes, 4]
        return (em_pad[:, :, None] * g_sum[:, None, :]).index_select(0, flat_type)

    def _embed(self, em: torch.Tensor, flat_type: torch.Tensor, filled: torch.Tensor,
               widths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(G [n, width, M1], padding table [ntypes * ntypes, M1]): nets on filled slots;
        padded slots share one row per (center type ti, neighbor type t) at ti * ntypes + t,
        the embedding of s_pad = -davg/dstd of the center type."""
        n, width = filled.shape
        ntypes = self.ntypes
        s_pad = (-self.mean[:, 0, 0] / self.stddev[:, 0, 0]).unsqueeze(-1)  # [ntypes, 1]
        s = em[..., 0].reshape(-1, 1)
        starts = [0]
        for w in widths:
            starts.append(starts[-1] + w)
        pad_rows: list[torch.Tensor] = []
        pad_keys: list[int] = []
        sources: list[torch.Tensor] = []
        positions: list[torch.Tensor] = []
        for k, net in enumerate(self.filter_layers.networks):
            if self.type_one_side:
                t = k
                pad_rows.append(net(s_pad))
                pad_keys.extend([ti * ntypes + t for ti in range(ntypes)])
                rows = filled
            else:
                centers, t = k % ntypes, k // ntypes
                pad_rows.append(net(s_pad[centers:centers + 1]))
                pad_keys.append(centers * ntypes + t)
                rows = filled & (flat_type == centers)[:, None]
            idx = torch.nonzero(rows[:, starts[t]:starts[t + 1]])
            pos = idx[:, 0] * width + starts[t] + idx[:, 1]
            positions.append(pos)
            sources.append(net(s.index_select(0, pos)))
        table = torch.cat(pad_rows).index_select(
            0, torch.argsort(torch.tensor(pad_keys, device=em.device)))
        # every slot starts as its padding row (no gradient: weights only), then the filled
        # slots are overwritten in one copy, whose backward is one gather of P rows
        nb_type = torch.repeat_interleave(torch.arange(ntypes, device=em.device),
                                          torch.tensor(widths, device=em.device))
        g = table.index_select(0, (flat_type[:, None] * ntypes + nb_type[None, :]).reshape(-1))
        g.index_copy_(0, torch.cat(positions), torch.cat(sources))
        return g.view(n, width, -1), table


class DescrptSeA(nn.Module):
    def __init__(self, src):
        super().__init__()
        self.sea = DescrptBlockSeA(src.sea)


class EnergyFittingNet(nn.Module):
    def __init__(self, src):
        super().__init__()
        self.filter_layers = Collection(src.filter_layers)
        self.register_buffer("bias_atom_e", src.bias_atom_e.detach().clone())

    def forward(self, d: torch.Tensor, flat_type: torch.Tensor) -> torch.Tensor:
        """descriptor [n, dim] -> atomic energies [n, 1] by each atom type's net."""
        out = d.new_zeros(d.shape[0], 1)
        for t, net in enumerate(self.filter_layers.networks):
            rows = torch.nonzero(flat_type == t).flatten()
            if rows.shape[0] > 0:
                out = out.index_copy(0, rows, net(d.index_select(0, rows)) + self.bias_atom_e[t])
        return out


class DPAtomicModel(nn.Module):
    def __init__(self, src):
        super().__init__()
        self.descriptor = DescrptSeA(src.descriptor)
        self.fitting_net = EnergyFittingNet(src.fitting_net)
        self.register_buffer("out_bias", src.out_bias.detach().clone())
        self.register_buffer("out_std", src.out_std.detach().clone())
        self.atom_kept: list[float] = src.atom_kept.double().tolist()

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor) -> torch.Tensor:
        """Atomic energies [nf, nloc, 1] float64; atype has virtual atoms mapped to type 0."""
        sea = self.descriptor.sea
        d = sea(ext_coord.to(sea.mean.dtype), ext_atype, nlist, atype)
        flat = atype.reshape(-1)
        fit = self.fitting_net
        e = fit(d.to(fit.bias_atom_e.dtype), flat).to(torch.float64).view(atype.shape[0], -1, 1)
        kept = torch.tensor(self.atom_kept, dtype=e.dtype, device=e.device)
        return (e + self.out_bias[0, atype]) * kept[atype][..., None]


class FrozenEnergyModel(nn.Module):
    """DeePMD-kit's frozen EnergyModel interface (deepmd-compat §13.1) around a copy of a dpx
    EnergyModel's weights."""

    def __init__(self, src, model_def_script: str):
        super().__init__()
        if not src.atomic_model.descriptor.sea._slot_constant_stats():
            raise ValueError("davg/dstd differ between neighbor slots of one type; the frozen "
                             "model shares one padding embedding per type pair and needs them "
                             "equal (as the statistics make them)")
        self.atomic_model = DPAtomicModel(src.atomic_model)
        self.register_buffer("min_nbor_dist", src.min_nbor_dist.detach().clone())
        self.pair_excluded: list[list[bool]] = src.pair_excluded.tolist()
        self.has_pair_exclusion = bool(src.pair_excluded.any())
        for p in self.parameters():  # forces need d/d coord only
            p.requires_grad_(False)
        self.model_def_script = model_def_script
        self.type_map: list[str] = list(src.type_map)
        self.rcut = float(src.rcut)
        self.sel: list[int] = list(src.sel)
        self.nnei = sum(self.sel)
        # centers per autograd pass; boxes up to this size take one pass
        self.chunk_atoms: int = 256
        bias = src.atomic_model.out_bias[0, :, 0].tolist()
        self.observed: list[str] = [n for n, b in zip(src.type_map, bias) if abs(b) > 1e-6]

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
        nlist = format_nlist(coord, extended_atype, nlist, self.rcut, self.sel)
        out = self._lower(coord, extended_atype, nlist, do_atomic_virial)
        return _cast_back(out, input_dtype)

    def forward(self, coord: torch.Tensor, atype: torch.Tensor, box: Optional[torch.Tensor] = None,
                fparam: Optional[torch.Tensor] = None, aparam: Optional[torch.Tensor] = None,
                do_atomic_virial: bool = False,
                charge_spin: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """energy [nf, 1], atom_energy [nf, nloc, 1], force [nf, nloc, 3], virial [nf, 9],
        atom_virial [nf, nloc, 9] (if do_atomic_virial), mask [nf, nloc] of coord [nf, nloc, 3]
        in box [nf, 9] (rows: cell vectors) or open boundaries (box None)."""
        nf, nloc = atype.shape[0], atype.shape[1]
        input_dtype = coord.dtype
        coord = coord.detach().view(nf, nloc, 3).to(torch.float64)
        if box is None:
            ext_coord, ext_atype = coord, atype
            mapping = torch.arange(nloc, device=coord.device).expand(nf, -1)
        else:
            ext_coord, ext_atype, mapping = extend(coord, atype, box.detach().to(torch.float64),
                                                   self.rcut)
        raw = all_within(ext_coord, ext_atype, nloc, self.rcut)
        nlist = format_nlist(ext_coord, ext_atype, raw, self.rcut, self.sel)
        low = self._lower(ext_coord, ext_atype, nlist, do_atomic_virial)
        out = {"atom_energy": low["atom_energy"], "energy": low["energy"],
               "force": _fold(low["extended_force"], mapping, nloc),
               "virial": low["virial"], "mask": low["mask"]}
        if do_atomic_virial:
            out["atom_virial"] = _fold(low["extended_virial"], mapping, nloc)
        return _cast_back(out, input_dtype)

    def _lower(self, coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
               do_atomic_virial: bool) -> dict[str, torch.Tensor]:
        """Energies and derivatives on a formatted nlist; coord [nf, nall, 3] float64."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        atype = ext_atype[:, :nloc]
        mask = atype >= 0
        atype0 = torch.where(mask, atype, 0)
        if self.has_pair_exclusion:
            nb_type = torch.gather(ext_atype, 1, nlist.clamp(min=0).view(nf, -1)).view_as(nlist)
            excluded = torch.tensor(self.pair_excluded, device=nlist.device)
            drop = excluded[atype0[..., None], nb_type.clamp(min=0)] & (nlist >= 0)
            nlist = torch.where(drop, -1, nlist)
        coord = coord.requires_grad_(True)
        if do_atomic_virial or nloc <= self.chunk_atoms:
            atom_e = self.atomic_model(coord, ext_atype, nlist, atype0) * mask[..., None]
            grads = torch.autograd.grad([atom_e.sum()], [coord], retain_graph=do_atomic_virial)
            grad = grads[0]
            assert grad is not None
        else:
            atom_e, grad = self._chunked(coord, ext_atype, nlist, atype0, mask)
        energy = atom_e.sum(dim=1)
        force = -grad
        virial = force[..., :, None] * coord[..., None, :]
        out = {"atom_energy": atom_e.detach(), "energy": energy.detach(),
               "extended_force": force, "virial": virial.sum(dim=1).view(nf, 9),
               "mask": mask.to(torch.int32)}
        if do_atomic_virial:
            out["extended_virial"] = (virial + _virial_correction(coord, atom_e)).view(nf, -1, 9)
        return out

    def _chunked(self, coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                 atype0: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(atom_e [nf, nloc, 1], dE/d coord) a block of chunk_atoms centers at a time: each
        block's graph is freed before the next is built, so a large box (LAMMPS, 12k atoms)
        works in tensors of a few MB that the allocator reuses instead of GB-sized ones that
        are mapped and page-faulted anew every step. The block's centers are put in front of
        the extended system, where the env matrix takes its centers from."""
        nloc = nlist.shape[1]
        grad = torch.zeros_like(coord)
        parts: list[torch.Tensor] = []
        for a in range(0, nloc, self.chunk_atoms):
            b = min(a + self.chunk_atoms, nloc)
            block = torch.cat([coord[:, a:b], coord], dim=1)
            block_atype = torch.cat([ext_atype[:, a:b], ext_atype], dim=1)
            block_nlist = torch.where(nlist[:, a:b] >= 0, nlist[:, a:b] + (b - a), -1)
            e = self.atomic_model(block, block_atype, block_nlist, atype0[:, a:b])
            e = e * mask[:, a:b, None]
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
    def get_dim_fparam(self) -> int:
        return 0

    @torch.jit.export
    def get_dim_aparam(self) -> int:
        return 0

    @torch.jit.export
    def has_default_fparam(self) -> bool:
        return False

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
        return False

    @torch.jit.export
    def has_message_passing(self) -> bool:
        return False

    @torch.jit.export
    def need_sorted_nlist_for_lower(self) -> bool:
        return False

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


def _fold(ext: torch.Tensor, mapping: torch.Tensor, nloc: int) -> torch.Tensor:
    """Per-local-atom sums [nf, nloc, k] of a per-extended-atom quantity [nf, nall, k]."""
    out = torch.zeros(ext.shape[0], nloc, ext.shape[2], dtype=ext.dtype, device=ext.device)
    return out.scatter_add(1, mapping[..., None].expand(-1, -1, ext.shape[2]), ext)


def _virial_correction(coord: torch.Tensor, atom_e: torch.Tensor) -> torch.Tensor:
    """C[k, a, b] = d(sum_l x_lb e_l)/d r_ka (x local, held fixed): added to F (x) r it gives
    DeePMD-kit's per-atom virial (the pair terms assigned to the neighbor; sums to 0)."""
    nloc = atom_e.shape[1]
    ce = (coord[:, :nloc].detach() * atom_e).sum(dim=1)  # [nf, 3]
    parts: list[torch.Tensor] = []
    for b in range(3):
        g = torch.autograd.grad([ce[:, b].sum()], [coord], retain_graph=True)[0]
        assert g is not None
        parts.append(g)
    return torch.stack(parts, dim=-1)
