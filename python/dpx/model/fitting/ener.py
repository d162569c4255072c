"""Energy fitting ("ener"), deepmd-compat §5: one FittingNet per atom type on a typed
descriptor (se_e2_*), one FittingNet for every type on a mixed-type one (DPA-1, whose
descriptor carries the type: deepmd-dpa1 §8). e_i = net(t_i)(D_i) + bias_atom_e[t_i]; the
model adds out_bias[t_i], sums over atoms and differentiates the sum to forces and virials.

With `atom_ener` (a value per type, or null), DeePMD-kit removes the "vacuum contribution":
e_i = net(t_i)(D_i) - net(t_i)(0) + bias_atom_e[t_i], for the types whose entry is given and,
as DeePMD-kit does it, for the types beyond the end of the list (with one net: for every
atom); the values themselves are not used (preset_out_bias sets biases).

Frame parameters (numb_fparam, fparam.npy [nf, k]) and atomic parameters (numb_aparam,
aparam.npy [nf, natoms * k]) enter each atom's input after the descriptor, normalized by
their statistics: x_i = D_i (+) (fparam - fparam_avg) * fparam_inv_std (+) (aparam_i -
aparam_avg) * aparam_inv_std (deepmd-compat §5.2); default_fparam stands in for a missing
fparam. A fitting with dim_case_embd appends its branch's case, a one-hot vector (multi-task
branches sharing one fitting). The vacuum input keeps them: x0_i = 0 (+) the same
parameters (+) the case."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from dpx.config import EnergyFittingConfig
from dpx.model import stat
from dpx.model.backend import DTYPES
from dpx.model.fitting.base import Fitting
from dpx.model.network import FittingNet, NetworkCollection, child_seed
from dpx.model.stat import StatItem

log = logging.getLogger(__name__)


def parameter_sums(frames, widths: dict[str, int], cached: dict | None = None) -> dict:
    """{name: a StatItem per component} of fparam / aparam (widths: {name: numb_<name>}) from
    the cached sums or frames() (called only if needed); frames whose sets lack the file are
    left out, as DeePMD-kit drops them."""
    sums = dict(cached or {})
    for name, width in widths.items():
        if name in sums:
            continue
        values = [np.asarray(f[name]).reshape(-1, width) for f in frames()
                  if name in f and float(f.get(f"find_{name}", 1.0)) > 0]
        if not values:
            raise ValueError(f"the statistics frames hold no {name} (numb_{name} "
                             f"{width}): give {name}.npy in the training systems")
        v = np.concatenate(values)
        sums[name] = [StatItem(len(v), float(v[:, i].sum()), float((v[:, i] ** 2).sum()))
                      for i in range(width)]
    return sums


@torch.no_grad()
def set_parameter_stats(fitting, sums: dict, names: list[str], protection: float) -> None:
    """fitting's <name>_avg and <name>_inv_std buffers (a dpx fitting, or the TorchScript
    one of a frozen file, dpx's or DeePMD-kit's: the same names) from the sums, std floored
    at protection."""
    for name in names:
        avg = np.array([item.avg() for item in sums[name]])
        inv_std = 1.0 / np.array([item.std(protection) for item in sums[name]])
        log.info("%s_avg is %s, %s_inv_std is %s", name, avg, name, inv_std)
        buffer = getattr(fitting, f"{name}_avg")
        buffer.copy_(torch.as_tensor(avg, dtype=buffer.dtype))
        buffer = getattr(fitting, f"{name}_inv_std")
        buffer.copy_(torch.as_tensor(inv_std, dtype=buffer.dtype))


class EnergyFittingNet(Fitting):
    CONFIG = EnergyFittingConfig
    OUTPUT = "energy"
    SHARE_LEVELS = {0: "every layer of every per-type net",
                    1: "the hidden layers; each branch keeps its own output layer"}

    def __init__(self, cfg: EnergyFittingConfig, ntypes: int, dim_descrpt: int,
                 mixed_types: bool = False):
        super().__init__()
        self.cfg, self.ntypes, self.mixed = cfg, ntypes, mixed_types
        dtype = DTYPES[cfg.precision]
        self.numb_fparam, self.numb_aparam = cfg.numb_fparam, cfg.numb_aparam
        self.dim_descrpt = dim_descrpt
        in_dim = dim_descrpt + cfg.numb_fparam + cfg.numb_aparam + cfg.dim_case_embd
        nets = [FittingNet(in_dim, 1, cfg.neuron, cfg.activation_function, cfg.resnet_dt,
                           dtype, child_seed(cfg.seed, t))
                for t in range(1 if mixed_types else ntypes)]
        self.filter_layers = NetworkCollection(0 if mixed_types else 1, ntypes, nets)
        # DeePMD-kit's buffers, in the state dict only when configured (None buffers are not)
        k_f, k_a = cfg.numb_fparam, cfg.numb_aparam
        self.register_buffer("fparam_avg", torch.zeros(k_f, dtype=dtype) if k_f else None)
        self.register_buffer("fparam_inv_std", torch.ones(k_f, dtype=dtype) if k_f else None)
        self.register_buffer("aparam_avg", torch.zeros(k_a, dtype=dtype) if k_a else None)
        self.register_buffer("aparam_inv_std", torch.ones(k_a, dtype=dtype) if k_a else None)
        self.register_buffer("default_fparam_tensor", None if cfg.default_fparam is None else
                             torch.tensor(cfg.default_fparam, dtype=dtype))
        # the branch's case (multi-task): zeros until set_case_embd, as in DeePMD-kit
        k_c = cfg.dim_case_embd
        self.register_buffer("case_embd", torch.zeros(k_c, dtype=dtype) if k_c else None)
        given = [e is not None for e in cfg.atom_ener]
        self.has_vacuum = any(given)
        self.subtract_vacuum = [mixed_types or t >= len(given) or given[t]
                                for t in range(len(nets))]
        # kept for DeePMD-kit's serialization; always zero in PyTorch training (§5.2)
        self.register_buffer("bias_atom_e", torch.zeros(ntypes, 1, dtype=dtype))
        if not cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    def get_dim_out(self) -> int:
        return 1

    def forward(self, descriptor: torch.Tensor, atype: torch.Tensor,
                fparam: Optional[torch.Tensor] = None,
                aparam: Optional[torch.Tensor] = None) -> torch.Tensor:
        """descriptor [nf, nloc, dim], atype [nf, nloc], fparam [nf, numb_fparam], aparam
        [nf, nloc, numb_aparam] -> atomic energies [nf, nloc, 1]."""
        nf, nloc = descriptor.shape[0], descriptor.shape[1]
        d = descriptor.to(self.bias_atom_e.dtype)
        params = self._parameters_input(nf, nloc, fparam, aparam, d.dtype)
        x = d if params is None else torch.cat([d, params], dim=-1)
        x = x.reshape(nf * nloc, -1)
        flat_type = atype.reshape(-1)
        out = x.new_zeros(nf * nloc, 1)
        vacuum = x
        if self.has_vacuum:  # the zero descriptor with the same parameters
            zero = torch.zeros_like(d)
            vacuum = (zero if params is None else torch.cat([zero, params], dim=-1))
            vacuum = vacuum.reshape(nf * nloc, -1)
        if self.mixed:  # one net for every atom, its type's bias
            for net in self.filter_layers.networks:
                out = net(x) + self.bias_atom_e[flat_type]
                if self.has_vacuum:
                    out = out - net(vacuum)
            return out.reshape(nf, nloc, 1)
        for t, net in enumerate(self.filter_layers.networks):
            rows = torch.nonzero(flat_type == t).flatten()
            if rows.shape[0] > 0:
                e = net(x.index_select(0, rows)) + self.bias_atom_e[t]
                if self.has_vacuum and self.subtract_vacuum[t]:
                    e = e - net(vacuum.index_select(0, rows))
                out = out.index_copy(0, rows, e)
        return out.reshape(nf, nloc, 1)

    def _parameters_input(self, nf: int, nloc: int, fparam: Optional[torch.Tensor],
                          aparam: Optional[torch.Tensor],
                          dtype: torch.dtype) -> Optional[torch.Tensor]:
        """The normalized frame and atomic parameters and the case embedding of each atom
        [nf, nloc, k], or None when the fitting takes none."""
        parts: list[torch.Tensor] = []
        avg, inv = self.fparam_avg, self.fparam_inv_std
        if avg is not None and inv is not None:
            if fparam is None:
                default = self.default_fparam_tensor
                if default is not None:
                    fparam = default.unsqueeze(0).expand(nf, -1)
                else:
                    raise ValueError("the model takes frame parameters (numb_fparam "
                                     + str(self.numb_fparam) + ") and none were given")
            f = (fparam.to(dtype).reshape(nf, self.numb_fparam) - avg) * inv
            parts.append(f.unsqueeze(1).expand(-1, nloc, -1))
        avg, inv = self.aparam_avg, self.aparam_inv_std
        if avg is not None and inv is not None:
            if aparam is None:
                raise ValueError("the model takes atomic parameters (numb_aparam "
                                 + str(self.numb_aparam) + ") and none were given")
            parts.append((aparam.to(dtype).reshape(nf, nloc, self.numb_aparam) - avg) * inv)
        case = self.case_embd
        if case is not None:
            parts.append(case.to(dtype).reshape(1, 1, -1).expand(nf, nloc, -1))
        if len(parts) == 0:
            return None
        return torch.cat(parts, dim=-1)

    @torch.no_grad()
    def set_case_embd(self, index: int) -> None:
        """This branch's case: the one-hot vector of `index` (DeePMD-kit's set_case_embd)."""
        dim = self.cfg.dim_case_embd
        if not 0 <= index < dim:
            raise ValueError(f"fitting_net/dim_case_embd {dim} has no case {index}")
        self.case_embd.zero_()
        self.case_embd[index] = 1.0

    # ------------------------------------------------------------ statistics
    @classmethod
    def fit_bias(cls, frames, ntypes, predicted=None, preset=None, excluded=()):
        """Per-type out_bias by least squares of the frames' energies on their type counts
        (of the energies minus the model's predictions, when given: change-by-statistic), and
        out_std, the std of the residual."""
        energy, counts = stat.type_counts(frames, ntypes)
        target = energy if predicted is None else energy - predicted
        return stat.solve_bias(target, counts, preset, list(excluded))

    def input_stat_names(self) -> list[str]:
        """The fitting-input statistics a stat file holds for this fitting."""
        return [n for n, k in (("fparam", self.numb_fparam), ("aparam", self.numb_aparam)) if k]

    def input_sums(self, frames, cached: dict | None = None) -> dict[str, list[StatItem]]:
        """The fparam / aparam sums per component (fparam pooled over frames, aparam over
        frames and atoms) from the sums a stat file cached or from frames() (a callable that
        samples the statistics frames, called only if needed; frames whose sets lack the file
        are left out, as DeePMD-kit drops them)."""
        widths = {n: getattr(self, f"numb_{n}") for n in self.input_stat_names()}
        return parameter_sums(frames, widths, cached)

    def input_key(self) -> int:
        """The identity of the layers that read the input: fittings that share them (multi-
        task sharing at any level) share their fparam / aparam statistics."""
        return id(self.filter_layers.networks[0].layers[0])

    @torch.no_grad()
    def set_input_stats(self, sums: dict[str, list[StatItem]], protection: float) -> None:
        """fparam / aparam avg and 1/std per component, std floored at protection
        (model/data_stat_protect at the start of training; DeePMD-kit's fixed PROTECTION
        where a bias is set by statistic: change-bias -m set, a RANDOM finetune)."""
        set_parameter_stats(self, sums, self.input_stat_names(), protection)

    # ------------------------------------------------------------ multi-task, finetune
    def shared_with(self, base: Fitting, level: int) -> Fitting:
        """Level 0: every layer of every per-type net; level 1: the hidden layers, each branch
        keeping its own output layer. bias_atom_e stays the branch's."""
        if level not in self.SHARE_LEVELS:
            raise ValueError(f"shared level {level} is not defined for the energy fitting ("
                             + "; ".join(f"{k}: {v}" for k, v in self.SHARE_LEVELS.items())
                             + ")")
        for net_b, net_t in zip(base.filter_layers.networks, self.filter_layers.networks):
            for k in range(len(net_b.layers) - level):
                net_t.layers[k] = net_b.layers[k]
        return self

    @torch.no_grad()
    def transfer_from(self, src: Fitting, index: list[int]) -> None:
        """Type i's net and bias_atom_e are src's of type index[i] (the one net of a mixed-type
        fitting as it is; a type src never saw, index -1, gets bias_atom_e 0); the parameter
        statistics and the case embedding are src's."""
        pairs = [(0, 0)] if self.mixed else list(enumerate(index))
        for t, old in pairs:
            self.filter_layers.networks[t].load_state_dict(
                src.filter_layers.networks[old].state_dict())
        for t, old in enumerate(index):
            self.bias_atom_e[t] = src.bias_atom_e[old] if old >= 0 else 0.0
        for name in ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std",
                     "case_embd"):
            if getattr(self, name) is not None and getattr(src, name, None) is not None:
                getattr(self, name).copy_(getattr(src, name))
