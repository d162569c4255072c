"""The se_e2_a (DeepPot-SE) descriptor (deepmd-compat §3).

Module layout mirrors DeePMD-kit's so state-dict keys match: DescrptSeA holds the block `sea`
(DescrptBlockSeA) with buffers `mean` (davg) and `stddev` (dstd), the embedding nets in
`filter_layers`, and the (empty) compression slots.

For center i and neighbor slot j with normalized row R_ij = (s, x, y, z) (section t of the
typed list holds neighbors of type t):
  G_ij = net(t_i, t_j)(s_ij)                               [M1]
  T_i = (1/nnei) sum_j R_ij (x) G_ij                       [4, M1]
  D_i[m, n] = sum_a T_i[a, m] T_i[a, n],  n < axis_neuron   -> M1 * axis_neuron
A padded slot's row is the constant (-davg/dstd, 0, 0, 0) of its center type, so its G is one
row per (center type, neighbor type); the nets run on the filled slots only (at water density
about a third of the slots are padding). Where the fused op can (ModelOptions.fused_embedding),
each net and its share of T are one op call (dpx.ops.se_a_embed) and G is never in memory;
in a compressed model (dpx.compress) each table and its share of T are one op call
(net.contract) on the net's section of the rows, padding included.
"""
from __future__ import annotations

import torch

from dpx.config.descriptor import SeAConfig
from dpx.model.backend import ModelOptions
from dpx.model.descriptor.base import BlockDescriptor, Descriptor, TypedEnvMatBlock
from dpx.model.network import parse_activation
from dpx.ops.se_a_embed import activation_code


class DescrptBlockSeA(TypedEnvMatBlock):
    def __init__(self, cfg: SeAConfig, ntypes: int, options: ModelOptions):
        super().__init__(cfg, ntypes, ncol=4, ndim=1 if cfg.type_one_side else 2,
                         options=options)
        self.axis_neuron, self.type_one_side = cfg.axis_neuron, cfg.type_one_side
        self.m1 = cfg.neuron[-1]
        self.narrow = options.narrow_padding
        self.in_place = options.in_place_assembly
        code = activation_code(parse_activation(cfg.activation_function)[0])
        self.activation_code = -1 if code is None else code
        self.resnet_dt = cfg.resnet_dt
        self.widths = [1, *cfg.neuron]
        self.fused = (options.fused_embedding and code is not None
                      and self.backend.has_fused_embedding())
        self.tabulated = False  # enable_compression: nets are tables, each contracts its rows
        self.strategy = "sparse"
        self.plan()

    def plan(self) -> None:
        """One of four ways to T, by what holds now:
        - dense: statistics that vary by slot: every slot through its net, then a reduce;
        - tabulated: a compressed model: each table contracts its section of the rows;
        - fused: the fused op per net on the filled slots (G never in memory), where the op
          library has it for this device and the list is not narrowed;
        - sparse: the nets on the filled slots, the padding rows from a table of constants
          (the trailing all-padding columns dropped first when narrow_padding)."""
        if not self.slot_constant_stats():
            self.strategy = "dense"
        elif self.tabulated:
            self.strategy = "tabulated"
        elif self.fused and not self.narrow and self.backend.fused_embedding_on(self.mean.device):
            self.strategy = "fused"
        else:
            self.strategy = "sparse"

    def get_dim_out(self) -> int:
        return self.m1 * self.axis_neuron

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor) -> torch.Tensor:
        """D [nf, nloc, M1 * axis_neuron] of centers of type atype [nf, nloc] (>= 0)."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        ext_coord = ext_coord.to(self.mean.dtype)
        if self.strategy == "dense":
            em, _ = self.env_mat(ext_coord, ext_atype, nlist, atype, self.mean, self.stddev)
            t = self.backend.reduce(em, self._embed_dense(em, atype))
            return self.backend.gram(t, self.axis_neuron).reshape(nf, nloc, -1)
        widths = self.sel
        if self.narrow:
            nlist, widths = self._narrow(nlist)
        width = nlist.shape[2]
        # slot-constant stats: the first `width` slots' stats are every slot's
        em, filled = self.env_mat(ext_coord, ext_atype, nlist, atype, self.mean[:, :width],
                                  self.stddev[:, :width])
        if self.strategy == "fused":
            t = self._fused_reduce(em, atype, filled, nlist)
        elif self.strategy == "tabulated":
            t = self._contract_sections(em, atype, widths)
            if width != self.nnei:
                t = t + self._cut_padding(self._padding_table(), widths, atype)
            t = t / self.nnei
        else:
            g, table = self._embed(em, atype, filled, widths)
            if width == self.nnei:
                t = self.backend.reduce(em, g)
            else:  # T over all sel slots: the cut-off columns are padding rows
                pad = self._cut_padding(table, widths, atype)
                t = pad / self.nnei
                if width > 0:
                    t = t + self.backend.reduce(em, g) * (width / self.nnei)
        d = self.backend.gram(t, self.axis_neuron)
        return d.reshape(nf, nloc, -1)

    def _fused_reduce(self, em: torch.Tensor, atype: torch.Tensor, filled: torch.Tensor,
                      nlist: torch.Tensor) -> torch.Tensor:
        """T [nf, nloc, 4, M1] from the fused op, one call per net on its filled slots, plus
        the padding slots' term (their rows and G are constants of the center type)."""
        nf, nloc, width = em.shape[0], em.shape[1], em.shape[2]
        ncenter = nf * nloc
        flat_type = atype.reshape(-1)
        filled = filled.reshape(ncenter, width)
        rows_em = em.reshape(-1, 4)
        t = self._padding_reduce(nlist.reshape(ncenter, width), flat_type)
        for k, net in enumerate(self.filter_layers.networks):
            idx, pos = self._net_slots(k, filled, flat_type, self.sec)
            if idx.shape[0] > 0:
                t = t + self.backend.embed_reduce(
                    rows_em.index_select(0, pos), idx[:, 0], net.flat_params(), self.widths,
                    self.activation_code, self.resnet_dt, ncenter, 1.0 / self.nnei)
        return t.view(nf, nloc, 4, self.m1)

    def _contract_sections(self, em: torch.Tensor, atype: torch.Tensor,
                           widths: list[int]) -> torch.Tensor:
        """[nf, nloc, 4, M1]: sum over the slots (padding included) of R (x) G, each net on its
        section of the rows of its centers by net.contract (a compressed net: one op, no G)."""
        nf, nloc, width = em.shape[0], em.shape[1], em.shape[2]
        rows = em.reshape(nf * nloc, width, 4)
        flat_type = atype.reshape(-1)
        t = em.new_zeros(nf * nloc, 4, self.m1)
        starts = _section_starts(widths)
        for k, net in enumerate(self.filter_layers.networks):
            nb = k if self.type_one_side else k // self.ntypes
            section = rows[:, starts[nb]:starts[nb + 1]]
            if self.type_one_side and section.shape[1] > 0:
                t = t + net.contract(section)
            elif section.shape[1] > 0:
                centers = torch.nonzero(flat_type == k % self.ntypes).flatten()
                if centers.shape[0] > 0:
                    t = t.index_add(0, centers, net.contract(section.index_select(0, centers)))
        return t.view(nf, nloc, 4, self.m1)

    def _net_slots(self, k: int, filled: torch.Tensor, flat_type: torch.Tensor,
                   starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled slots net k embeds, of filled [ncenter, width] whose section t spans
        columns starts[t]:starts[t + 1]: (idx [n, 2] = (center, column in the section), pos
        [n] = flat slot index), in center order."""
        width = filled.shape[1]
        if self.type_one_side:
            nb = k
            rows = filled
        else:
            nb = k // self.ntypes
            rows = filled & (flat_type == k % self.ntypes)[:, None]
        idx = torch.nonzero(rows[:, starts[nb]:starts[nb + 1]])
        return idx, idx[:, 0] * width + starts[nb] + idx[:, 1]

    def _padding_reduce(self, nlist: torch.Tensor, flat_type: torch.Tensor) -> torch.Tensor:
        """[ncenter, 4, M1]: (1/nnei) sum over the padding slots (nlist -1) of R_pad (x)
        G_pad, i.e. R_pad(ti) (x) sum_t npad[c, t] G_pad(ti, t); excluded pairs (rows 0) add
        nothing."""
        ntypes = self.ntypes
        table = self._padding_table().view(ntypes, ntypes, -1)
        npad = torch.stack([(nlist[:, self.sec[t]:self.sec[t + 1]] < 0).sum(dim=1)
                            for t in range(ntypes)], dim=1).to(table.dtype)  # [ncenter, ntypes]
        g_sum = torch.einsum("ct,ctm->cm", npad, table[flat_type])
        em_pad = self.padding_rows()  # [ntypes, 4]
        return em_pad[flat_type][:, :, None] * g_sum[:, None, :] * (1.0 / self.nnei)

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

    def _padding_table(self) -> torch.Tensor:
        """[ntypes * ntypes, M1]: row ti * ntypes + t is the embedding a padded slot of
        neighbor type t of a center of type ti gets, net(ti, t)(-davg/dstd of ti)."""
        ntypes = self.ntypes
        s_pad = (-self.mean[:, 0, 0] / self.stddev[:, 0, 0]).unsqueeze(-1)  # [ntypes, 1]
        rows: list[torch.Tensor] = []
        keys: list[int] = []
        for k, net in enumerate(self.filter_layers.networks):
            if self.type_one_side:
                rows.append(net(s_pad))
                keys.extend([ti * ntypes + k for ti in range(ntypes)])
            else:
                ti, t = k % ntypes, k // ntypes
                rows.append(net(s_pad[ti:ti + 1]))
                keys.append(ti * ntypes + t)
        order = torch.argsort(torch.tensor(keys, device=s_pad.device))
        return torch.cat(rows).index_select(0, order)

    def _embed(self, em: torch.Tensor, atype: torch.Tensor, filled: torch.Tensor,
               widths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(G [nf, nloc, width, M1], padding table): the nets on the filled slots; every other
        slot takes its padding row. G is one gather from the concatenated rows (training) or
        the padding rows with the filled ones copied in place (ModelOptions.in_place_assembly)."""
        nf, nloc, width = filled.shape[0], filled.shape[1], filled.shape[2]
        ntypes = self.ntypes
        table = self._padding_table()
        flat_type = atype.reshape(-1)
        filled = filled.reshape(nf * nloc, width)
        s = em[..., 0].reshape(-1, 1)
        starts = _section_starts(widths)
        nb_type = torch.repeat_interleave(torch.arange(ntypes, device=em.device),
                                          torch.tensor(widths, device=em.device))
        where = (flat_type[:, None] * ntypes + nb_type[None, :]).reshape(-1)
        sources: list[torch.Tensor] = [table]
        positions: list[torch.Tensor] = []
        offset = ntypes * ntypes
        for k, net in enumerate(self.filter_layers.networks):
            idx, pos = self._net_slots(k, filled, flat_type, starts)
            if idx.shape[0] > 0:
                sources.append(net(s.index_select(0, pos)))
                positions.append(pos)
                offset += pos.shape[0]
        if self.in_place:
            g = table.index_select(0, where)
            if len(positions) > 0:
                g.index_copy_(0, torch.cat(positions), torch.cat(sources[1:]))
            return g.view(nf, nloc, width, -1), table
        if len(positions) > 0:
            pos = torch.cat(positions)
            rows_of = torch.arange(ntypes * ntypes, offset, device=em.device)
            where = where.index_copy(0, pos, rows_of)
        g = torch.cat(sources).index_select(0, where)
        return g.view(nf, nloc, width, -1), table

    def _cut_padding(self, table: torch.Tensor, widths: list[int],
                     atype: torch.Tensor) -> torch.Tensor:
        """[nf, nloc, 4, M1]: the sum over the cut-off slots, (sel[t] - width[t]) padding
        rows of each neighbor type, R_pad (x) G_pad of the center type."""
        ntypes = self.ntypes
        missing = torch.tensor([self.sel[t] - widths[t] for t in range(ntypes)],
                               dtype=table.dtype, device=table.device)
        g_sum = (missing[None, :, None] * table.view(ntypes, ntypes, -1)).sum(dim=1)
        em_pad = self.padding_rows()  # [ntypes, 4]
        per_type = em_pad[:, :, None] * g_sum[:, None, :]     # [ntypes, 4, M1]
        return per_type[atype]

    def _embed_dense(self, em: torch.Tensor, atype: torch.Tensor) -> torch.Tensor:
        """G [nf, nloc, nnei, M1] with every slot through its net: any davg/dstd layout."""
        nf, nloc, nnei = em.shape[0], em.shape[1], em.shape[2]
        ntypes = self.ntypes
        s = em[..., :1].reshape(nf * nloc, nnei, 1)
        flat_type = atype.reshape(-1)
        centers = [torch.nonzero(flat_type == ti).flatten() for ti in range(ntypes)]
        parts: list[torch.Tensor] = []  # k -> G of the net's (centers, section)
        for k, net in enumerate(self.filter_layers.networks):
            t = k if self.type_one_side else k // ntypes
            x = s[:, self.sec[t]:self.sec[t + 1]]
            parts.append(net(x if self.type_one_side else x.index_select(0, centers[k % ntypes])))
        if self.type_one_side:
            return torch.cat(parts, dim=1).view(nf, nloc, nnei, -1)
        g = s.new_zeros(nf * nloc, nnei, self.m1)
        for ti in range(ntypes):
            g_ti = torch.cat([parts[ti + t * ntypes] for t in range(ntypes)], dim=1)
            g = g.index_copy(0, centers[ti], g_ti)
        return g.view(nf, nloc, nnei, -1)


class DescrptSeA(BlockDescriptor):
    """DeePMD-kit's wrapper module: the block under the name `sea`."""
    CONFIG = SeAConfig
    BLOCK = "sea"
    SHARE_LEVELS = TypedEnvMatBlock.SHARE_LEVELS

    def __init__(self, cfg: SeAConfig, ntypes: int, options: ModelOptions):
        super().__init__()
        self.cfg = cfg
        self.sea = DescrptBlockSeA(cfg, ntypes, options)

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor) -> torch.Tensor:
        return self.sea(ext_coord, ext_atype, nlist, atype)

    def shared_with(self, base: Descriptor, level: int) -> Descriptor:
        self.check_same_kind(base)
        shared = self.sea.shared_with(base.sea, level)
        return base if shared is base.sea else self

    def transfer_from(self, src: Descriptor, index: list[int]) -> None:
        self.sea.transfer_from(src.sea, index)


def _section_starts(widths: list[int]) -> list[int]:
    """[0, w0, w0 + w1, ...]: where each neighbor type's section of the (narrowed) slots
    begins, and where the last one ends."""
    starts = [0]
    for w in widths:
        starts.append(starts[-1] + w)
    return starts
