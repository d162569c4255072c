"""The atomic model: descriptor, fitting and the per-type output bias, with the model-level
exclusions (deepmd-compat §5.2-5.3, §6 step 3). Module names follow DeePMD-kit
(atomic_model.{descriptor, fitting_net, out_bias, out_std}) so state dicts are interchangeable."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from dpx.config import ModelConfig
from dpx.model import descriptor as descriptors
from dpx.model import fitting as fittings
from dpx.model.backend import ModelOptions
from dpx.nlist.exclude import exclude_pairs, pair_table


class DPAtomicModel(nn.Module):
    def __init__(self, cfg: ModelConfig, options: ModelOptions):
        super().__init__()
        ntypes = len(cfg.type_map)
        self.ntypes = ntypes
        self.descriptor = descriptors.build(cfg.descriptor, ntypes, options)
        self.fitting_net = fittings.build(cfg.fitting_net, ntypes,
                                          self.descriptor.get_dim_out(),
                                          self.descriptor.mixed_types())
        self.register_buffer("out_bias", torch.zeros(1, ntypes, 1, dtype=torch.float64))
        self.register_buffer("out_std", torch.ones(1, ntypes, 1, dtype=torch.float64))
        # tables as lists, not buffers: the frozen file's state dict must be DeePMD-kit's
        self.pair_excluded = pair_table(cfg.pair_exclude_types, ntypes)
        self.has_pair_exclusion = bool(cfg.pair_exclude_types)
        self.atom_kept = [0.0 if t in cfg.atom_exclude_types else 1.0 for t in range(ntypes)]
        self.has_atom_exclusion = bool(cfg.atom_exclude_types)

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor, fparam: Optional[torch.Tensor] = None,
                aparam: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Atomic outputs [nf, nloc, 1] (float64) of the local atoms on a typed nlist; atype
        [nf, nloc] has virtual atoms mapped to type 0 (the caller masks them); fparam
        [nf, numb_fparam] and aparam [nf, nloc, numb_aparam] when the fitting takes them."""
        if self.has_pair_exclusion:
            nlist = exclude_pairs(nlist, ext_atype, atype, self.pair_excluded)
        # virtual atoms are nobody's neighbors; type 0 stands in where a type is looked up
        d = self.descriptor(ext_coord, ext_atype.clamp(min=0), nlist, atype)
        e = self.fitting_net(d, atype, fparam, aparam).to(torch.float64)
        e = e + self.out_bias[0, atype]
        if self.has_atom_exclusion:
            kept = torch.tensor(self.atom_kept, dtype=e.dtype, device=e.device)
            e = e * kept[atype][..., None]
        return e

    @torch.no_grad()
    def set_out_stat(self, bias, std) -> None:
        self.out_bias.copy_(torch.as_tensor(bias, dtype=torch.float64).reshape(1, self.ntypes, 1))
        self.out_std.copy_(torch.as_tensor(std, dtype=torch.float64).reshape(1, self.ntypes, 1))

    @torch.no_grad()
    def transfer_from(self, src: DPAtomicModel, index: list[int], random_fitting: bool) -> None:
        """finetune: src's weights with new type i taking src's type index[i] (-1: an element
        src never saw); with a random fitting only the descriptor."""
        self.descriptor.transfer_from(src.descriptor, index)
        if random_fitting:
            return
        self.fitting_net.transfer_from(src.fitting_net, index)
        for t, old in enumerate(index):  # an element src never saw: bias 0, std 1
            self.out_bias[:, t] = src.out_bias[:, old] if old >= 0 else 0.0
            self.out_std[:, t] = src.out_std[:, old] if old >= 0 else 1.0
