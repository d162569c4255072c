"""Energy fitting ("ener"): one FittingNet per atom type (the se_e2_* descriptors are not
mixed-type), deepmd-compat §5. e_i = net(t_i)(D_i) + bias_atom_e[t_i]; the model adds
out_bias[t_i], sums over atoms and differentiates the sum to forces and virials.

With `atom_ener` (a value per type, or null), DeePMD-kit removes the "vacuum contribution":
e_i = net(t_i)(D_i) - net(t_i)(0) + bias_atom_e[t_i], for the types whose entry is given and,
as DeePMD-kit does it, for the types beyond the end of the list; the values themselves are
not used (preset_out_bias sets biases)."""
from __future__ import annotations

import torch

from dpx.config import EnergyFittingConfig
from dpx.model import stat
from dpx.model.backend import DTYPES
from dpx.model.fitting.base import Fitting
from dpx.model.network import FittingNet, NetworkCollection, child_seed


class EnergyFittingNet(Fitting):
    OUTPUT = "energy"
    SHARE_LEVELS = {0: "every layer of every per-type net",
                    1: "the hidden layers; each branch keeps its own output layer"}

    def __init__(self, cfg: EnergyFittingConfig, ntypes: int, dim_descrpt: int):
        super().__init__()
        self.cfg, self.ntypes = cfg, ntypes
        dtype = DTYPES[cfg.precision]
        nets = [FittingNet(dim_descrpt, 1, cfg.neuron, cfg.activation_function, cfg.resnet_dt,
                           dtype, child_seed(cfg.seed, t)) for t in range(ntypes)]
        self.filter_layers = NetworkCollection(1, ntypes, nets)
        given = [e is not None for e in cfg.atom_ener]
        self.has_vacuum = any(given)
        self.subtract_vacuum = [t >= len(given) or given[t] for t in range(ntypes)]
        # kept for DeePMD-kit's serialization; always zero in PyTorch training (§5.2)
        self.register_buffer("bias_atom_e", torch.zeros(ntypes, 1, dtype=dtype))
        if not cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    def get_dim_out(self) -> int:
        return 1

    def forward(self, descriptor: torch.Tensor, atype: torch.Tensor) -> torch.Tensor:
        """descriptor [nf, nloc, dim], atype [nf, nloc] -> atomic energies [nf, nloc, 1]."""
        nf, nloc, dim = descriptor.shape[0], descriptor.shape[1], descriptor.shape[2]
        x = descriptor.to(self.bias_atom_e.dtype).reshape(nf * nloc, dim)
        flat_type = atype.reshape(-1)
        out = x.new_zeros(nf * nloc, 1)
        zero = x.new_zeros(1, dim)
        for t, net in enumerate(self.filter_layers.networks):
            rows = torch.nonzero(flat_type == t).flatten()
            if rows.shape[0] > 0:
                e = net(x.index_select(0, rows)) + self.bias_atom_e[t]
                if self.has_vacuum and self.subtract_vacuum[t]:
                    e = e - net(zero)
                out = out.index_copy(0, rows, e)
        return out.reshape(nf, nloc, 1)

    # ------------------------------------------------------------ statistics
    @classmethod
    def fit_bias(cls, frames, ntypes, predicted=None, preset=None, excluded=()):
        """Per-type out_bias by least squares of the frames' energies on their type counts
        (of the energies minus the model's predictions, when given: change-by-statistic), and
        out_std, the std of the residual."""
        energy, counts = stat.type_counts(frames, ntypes)
        target = energy if predicted is None else energy - predicted
        return stat.solve_bias(target, counts, preset, list(excluded))

    def compute_input_stats(self, frames, protection) -> None:
        """fparam / aparam statistics with model/data_stat_protect, from frames() (a callable
        that samples the statistics frames). numb_fparam = numb_aparam = 0 here: nothing to
        compute, so nothing is sampled."""

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
        """Type i's net and bias_atom_e are src's of type index[i]."""
        for t, old in enumerate(index):
            self.filter_layers.networks[t].load_state_dict(
                src.filter_layers.networks[old].state_dict())
        self.bias_atom_e.copy_(src.bias_atom_e[index])
