"""Energy fitting: one FittingNet per atom type (se_e2_a is not mixed-type), deepmd-compat §5."""
from __future__ import annotations

import torch
from torch import nn

from dpx.config import FittingConfig
from dpx.model.network import FittingNet, NetworkCollection, child_seed


class EnergyFittingNet(nn.Module):
    def __init__(self, cfg: FittingConfig, ntypes: int, dim_descrpt: int, dtype):
        super().__init__()
        self.cfg, self.ntypes = cfg, ntypes
        nets = [FittingNet(dim_descrpt, 1, cfg.neuron, cfg.activation_function, cfg.resnet_dt,
                           dtype, child_seed(cfg.seed, t)) for t in range(ntypes)]
        self.filter_layers = NetworkCollection(1, ntypes, nets)
        # kept for DeePMD-kit's serialization; always zero in PyTorch training (§5.2)
        self.register_buffer("bias_atom_e", torch.zeros(ntypes, 1, dtype=dtype))
        if not cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    def forward(self, descriptor: torch.Tensor, atype: torch.Tensor) -> torch.Tensor:
        """descriptor [nf, nloc, dim], atype [nf, nloc] -> atomic energies [nf, nloc, 1]."""
        nf, nloc, dim = descriptor.shape
        x = descriptor.reshape(nf * nloc, dim)
        flat_type = atype.reshape(-1)
        out = x.new_zeros(nf * nloc, 1)
        for t in range(self.ntypes):
            rows = torch.nonzero(flat_type == t).flatten()
            if rows.numel() == 0:
                continue
            e_t = self.filter_layers[t](x.index_select(0, rows)) + self.bias_atom_e[t]
            out = out.index_copy(0, rows, e_t)
        return out.reshape(nf, nloc, 1)
