"""The se_e2_r descriptor: the radial part of se_e2_a only (DeePMD-kit's DescrptSeR, whose
PyTorch numbers it matches).

For center i and neighbor slot j with the normalized radial entry s_ij = (sw(r)/r - davg) /
dstd (padding: -davg/dstd; an excluded type pair: 0) in section t of the typed list:
  D_i = (1/5) (1/nnei) sum_j G_t(s_ij)       [M1 = neuron[-1]]
with one embedding net G_t per neighbor type. Module and buffer names are DeePMD-kit's
(descriptor.{mean, stddev, filter_layers, compress_info, compress_data}, mean [ntypes, nnei, 1]).
"""
from __future__ import annotations

import torch

from dpx.config.descriptor import SeRConfig
from dpx.model.backend import ModelOptions
from dpx.model.descriptor.base import TypedEnvMatBlock


class DescrptSeR(TypedEnvMatBlock):
    CONFIG = SeRConfig

    def __init__(self, cfg: SeRConfig, ntypes: int, options: ModelOptions):
        super().__init__(cfg, ntypes, ncol=1, ndim=1, options=options)
        self.m1 = cfg.neuron[-1]
        self.rescale = 1.0 / 5.0  # DeePMD-kit's fixed scale of the se_e2_r output

    def get_dim_out(self) -> int:
        return self.m1

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor) -> torch.Tensor:
        """D [nf, nloc, M1] of centers of type atype [nf, nloc] (>= 0)."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        em, _ = self.env_mat(ext_coord.to(self.mean.dtype), ext_atype, nlist, atype, self.mean,
                             self.stddev)
        out = em.new_zeros(nf, nloc, self.m1)
        for t, net in enumerate(self.filter_layers.networks):
            out = out + net(em[:, :, self.sec[t]:self.sec[t + 1]]).sum(dim=2)
        return out * (self.rescale / self.nnei)
