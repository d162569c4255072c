"""The se_e2_a (DeepPot-SE) descriptor (deepmd-compat §3).

Module layout mirrors DeePMD-kit's so state-dict keys match: DescrptSeA holds the block
`sea` (DescrptBlockSeA) with buffers `mean` (davg) and `stddev` (dstd), the embedding nets in
`filter_layers`, and the (empty) compression slots.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from dpx import ops
from dpx.config import DescriptorConfig
from dpx.model.network import EmbeddingNet, NetworkCollection, child_seed


class DescrptBlockSeA(nn.Module):
    def __init__(self, cfg: DescriptorConfig, ntypes: int, dtype):
        super().__init__()
        self.cfg, self.ntypes = cfg, ntypes
        self.sel = list(cfg.sel)
        self.nnei = sum(self.sel)
        self.sec = [0, *itertools.accumulate(self.sel)]
        sec_id = torch.repeat_interleave(torch.arange(ntypes), torch.tensor(self.sel))
        self.register_buffer("sec_id", sec_id, persistent=False)  # neighbor type of each slot
        self.register_buffer("mean", torch.zeros(ntypes, self.nnei, 4, dtype=dtype))
        self.register_buffer("stddev", torch.ones(ntypes, self.nnei, 4, dtype=dtype))
        ndim = 1 if cfg.type_one_side else 2
        nets = [None] * ntypes ** ndim
        for ii, key in enumerate(itertools.product(range(ntypes), repeat=ndim)):
            flat = key[0] if ndim == 1 else key[0] + key[1] * ntypes
            nets[flat] = EmbeddingNet(1, cfg.neuron, cfg.activation_function, cfg.resnet_dt,
                                      dtype, child_seed(cfg.seed, ii))
        self.filter_layers = NetworkCollection(ndim, ntypes, nets)
        # model compression tables: unused, but DeePMD-kit's state dicts and optimizer parameter
        # lists carry them (size-0 trainable parameters that never get a gradient)
        self.compress_info = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, dtype=dtype)) for _ in nets])
        self.compress_data = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, dtype=dtype)) for _ in nets])
        excluded = torch.zeros(ntypes, ntypes, dtype=torch.bool)
        for a, b in cfg.exclude_types:
            excluded[a, b] = excluded[b, a] = True
        self.register_buffer("excluded", excluded, persistent=False)
        if not cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    def env_mat(self, ext_coord, ext_atype, nlist, atype, raw: bool = False):
        """Normalized rows [nf, nloc, nnei, 4] (raw: davg 0, dstd 1, for statistics), with
        excluded type pairs zeroed (§3.5)."""
        c = self.cfg
        davg, dstd = (torch.zeros_like(self.mean), torch.ones_like(self.stddev)) if raw \
            else (self.mean, self.stddev)
        em = ops.env_mat_se_a(ext_coord, nlist, atype, davg, dstd, c.rcut, c.rcut_smth,
                              c.env_protection)
        if c.exclude_types:
            nb_type = torch.gather(ext_atype, 1, nlist.clamp(min=0).flatten(1)).view_as(nlist)
            keep = ~(self.excluded[atype[..., None], nb_type] & (nlist >= 0))
            em = em * keep[..., None].to(em.dtype)
        return em

    def net(self, center: int, neighbor: int):
        return self.filter_layers[neighbor] if self.cfg.type_one_side \
            else self.filter_layers[center, neighbor]

    def embed(self, em: torch.Tensor, atype: torch.Tensor, nlist: torch.Tensor) -> torch.Tensor:
        """G [nf, nloc, nnei, M1]: each slot's embedding of its radial entry s = em[..., 0].

        A padded slot's row is the constant -davg/dstd of its center type, so its embedding is
        computed once per (center type, neighbor type) and broadcast; the nets run on the
        filled slots only (at water density about a third of the slots are padding)."""
        if not self._slot_constant_stats():
            return self._embed_dense(em, atype)
        nf, nloc, nnei, _ = em.shape
        s_pad = (-self.mean[:, 0, 0] / self.stddev[:, 0, 0]).unsqueeze(-1)
        sources = [torch.stack([self.net(ti, t)(s_pad[ti:ti + 1])[0]
                                for ti in range(self.ntypes) for t in range(self.ntypes)])]
        # row of `sources` for each slot: padding -> (center type, neighbor type) entry
        where = (atype[..., None] * self.ntypes + self.sec_id).reshape(-1).clone()
        offset = self.ntypes * self.ntypes
        s = em[..., 0].reshape(-1, 1)
        filled = nlist >= 0
        for ti in range(1 if self.cfg.type_one_side else self.ntypes):
            rows = filled if self.cfg.type_one_side else filled & (atype == ti)[..., None]
            for t in range(self.ntypes):
                idx = torch.nonzero(rows[..., self.sec[t]:self.sec[t + 1]].reshape(nf * nloc, -1))
                if idx.numel() == 0:
                    continue
                pos = idx[:, 0] * nnei + self.sec[t] + idx[:, 1]
                sources.append(self.net(ti, t)(s.index_select(0, pos)))
                where[pos] = torch.arange(offset, offset + len(pos), device=pos.device)
                offset += len(pos)
        # one gather: its backward is one scatter-add into the (smaller) sources
        return torch.cat(sources).index_select(0, where).view(nf, nloc, nnei, -1)

    def _slot_constant_stats(self) -> bool:
        """davg/dstd the same in every slot of a type (as the statistics make them)."""
        return bool(torch.equal(self.mean, self.mean[:, :1].expand_as(self.mean)) and
                    torch.equal(self.stddev, self.stddev[:, :1].expand_as(self.stddev)))

    def _embed_dense(self, em: torch.Tensor, atype: torch.Tensor) -> torch.Tensor:
        """Every slot through its net (any davg/dstd layout)."""
        s = em[..., :1]
        if self.cfg.type_one_side:
            return torch.cat([self.filter_layers[t](s[:, :, self.sec[t]:self.sec[t + 1]])
                              for t in range(self.ntypes)], dim=2)
        nf, nloc, nnei, _ = em.shape
        s = s.reshape(nf * nloc, nnei, 1)
        flat_type = atype.reshape(-1)
        g = s.new_zeros(nf * nloc, nnei, self.cfg.neuron[-1])
        for ti in range(self.ntypes):
            rows = torch.nonzero(flat_type == ti).flatten()
            if rows.numel() == 0:
                continue
            s_ti = s.index_select(0, rows)
            g_ti = torch.cat([self.filter_layers[ti, t](s_ti[:, self.sec[t]:self.sec[t + 1]])
                              for t in range(self.ntypes)], dim=1)
            g = g.index_copy(0, rows, g_ti)
        return g.reshape(nf, nloc, nnei, -1)

    def forward(self, ext_coord, ext_atype, nlist, atype):
        em = self.env_mat(ext_coord, ext_atype, nlist, atype)
        d, _ = ops.se_a_descriptor(em, self.embed(em, atype, nlist), self.cfg.axis_neuron)
        return d


class DescrptSeA(nn.Module):
    """Wrapper with DeePMD-kit's module name `sea` for the block."""

    def __init__(self, cfg: DescriptorConfig, ntypes: int, dtype):
        super().__init__()
        self.sea = DescrptBlockSeA(cfg, ntypes, dtype)

    @property
    def dim_out(self) -> int:
        return self.sea.cfg.neuron[-1] * self.sea.cfg.axis_neuron

    def forward(self, ext_coord, ext_atype, nlist, atype):
        return self.sea(ext_coord, ext_atype, nlist, atype)
