"""DPA-1 (`dpa1` / `se_atten`) and `se_atten_v2`: the attention descriptor on one list of
neighbors of any type, the element given by a learned type embedding (deepmd-dpa1; numbers of
DeePMD-kit 3.2.0's PyTorch backend, module and parameter names too).

For center i with the nnei = sum(sel) nearest neighbors j (padding after), normalized rows
R_ij = (s, x, y, z) of the environment matrix (padding: -davg/dstd; excluded pairs: 0), the
switch sw_ij (0 on padding and excluded pairs) and type embeddings e(t) (deepmd-dpa1 §4):
  G_ij  = N([s_ij, e(t_j), e(t_i)])                      concat mode (type_one_side: no e(t_i))
        = N_s(s_ij) * (1 + N_t([e(t_j), e(t_i)]) sw_ij)  strip mode (sw only when smooth)
  G     <- LN(G + Attn(G))      attn_layer times (gated self-attention over the neighbors, §6)
  T_i   = (1/nnei) sum_j R_ij (x) G_ij                   [4, ng]
  D_i   = T_i^T T_i[:, :axis_neuron]  (+) e(t_i)         (the embedding when concat_output_tebd)
A padded slot takes the type of extended atom 0 (DeePMD-kit's gather of index 0).

Strategies (plan()): "dense" runs every slot as DeePMD-kit does; "narrow" drops the trailing
columns that no center of the call fills, and adds what they contribute in closed form: in
the softmax of a smooth attention each such key weighs exp(-20) in the denominator, and in T
each adds R_pad (x) G_pad of its center, where G_pad goes through the layers as
LN(G_pad + b_out) (its attention row is zero). Tests hold the two to 1e-12.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from torch import nn

from dpx.config.descriptor import DPA1Config, SeAttenV2Config
from dpx.model.backend import DTYPES, ModelOptions
from dpx.model.descriptor.base import (
    BlockDescriptor,
    Descriptor,
    EnvMatBlock,
    compression_slots,
)
from dpx.model.network import (
    EmbeddingNet,
    LayerNorm,
    MLPLayer,
    NetworkCollection,
    child_seed,
    parse_activation,
)
from dpx.model.tabulate import check_min_nbor_dist, input_range, tabulate
from dpx.ops.reference import smooth_switch
from dpx.ops.se_a_embed import activation_code

log = logging.getLogger(__name__)

SHIFT = 20.0  # DeePMD-kit's attention shift: masked keys of a smooth attention score -20
# the score of a masked key of a non-smooth attention: DeePMD-kit's -inf, finite so that a
# row without neighbors (zeroed afterwards) has no NaN in its derivatives
MASKED = -1e30


class TypeEmbedding(nn.Module):
    """e(t) = one_hot(t) W (+ b), a linear layer with DeePMD-kit's residual (+ one_hot(t) when
    tebd_dim equals ntypes), as the table [(ntypes + 1), tebd_dim] whose last row (zeros) is
    the embedding of no type. Module names: embedding.embedding_net.layers.0.{matrix,bias}."""

    def __init__(self, ntypes: int, cfg, dtype, seed):
        super().__init__()
        self.ntypes = ntypes
        self.embedding = _Embedding(EmbeddingNet(ntypes, [cfg.tebd_dim], "linear", False,
                                                 dtype, seed, bias=cfg.use_tebd_bias))

    def forward(self) -> torch.Tensor:
        # the one-hot inputs made here, not kept as a buffer: a scripted file's state dict
        # holds even non-persistent buffers, and DeePMD-kit loads frozen files strictly
        matrix = self.embedding.embedding_net.layers[0].matrix
        one_hot = torch.eye(self.ntypes, dtype=matrix.dtype, device=matrix.device)
        table = self.embedding.embedding_net(one_hot)
        return torch.cat([table, table.new_zeros(1, table.shape[1])])

    @torch.no_grad()
    def transfer_from(self, src: TypeEmbedding, index: list[int]) -> None:
        """Type i's row is src's row index[i] (a new type, -1: uniform random in [0, 1) as
        DeePMD-kit's change_type_map draws it), with the residual one_hot folded out of the
        rows and back in at the new width; the bias is src's."""
        src_layer = src.embedding.embedding_net.layers[0]
        layer = self.embedding.embedding_net.layers[0]
        rows = src_layer.matrix + _residual(src.ntypes, src_layer.matrix.shape[1],
                                            src_layer.matrix)
        # drawn only when there are new types, as DeePMD-kit draws them (the global stream)
        fresh = torch.rand(len(index), rows.shape[1], dtype=rows.dtype, device=rows.device) \
            if -1 in index else rows
        new = torch.stack([rows[old] if old >= 0 else fresh[i] for i, old in enumerate(index)])
        layer.matrix.copy_(new - _residual(self.ntypes, new.shape[1], new))
        if layer.bias is not None and src_layer.bias is not None:
            layer.bias.copy_(src_layer.bias)


def _residual(ntypes: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """What the layer's resnet adds to one_hot(t) W: I (width ntypes), [I, I] (2 ntypes)."""
    eye = torch.eye(ntypes, dtype=like.dtype, device=like.device)
    if width == ntypes:
        return eye
    if width == 2 * ntypes:
        return torch.cat([eye, eye], dim=1)
    return torch.zeros(ntypes, width, dtype=like.dtype, device=like.device)


class _Embedding(nn.Module):
    """A name level of DeePMD-kit's (TypeEmbedNetConsistent)."""

    def __init__(self, net: EmbeddingNet):
        super().__init__()
        self.embedding_net = net


class GatedAttentionLayer(nn.Module):
    """One head of width H = attn over the neighbors of each center (deepmd-dpa1 §6.2), on
    the slots of a (narrowed) list. What does not depend on the layer (the smooth score's
    factor and shift, the gate of masked rows, sw and the angles) comes precomputed."""

    def __init__(self, cfg, ng: int, dtype, seed):
        super().__init__()
        self.in_proj = MLPLayer(ng, 3 * cfg.attn, "linear", False, False, dtype=dtype,
                                seed=child_seed(seed, 0))
        self.out_proj = MLPLayer(cfg.attn, ng, "linear", False, False, dtype=dtype,
                                 seed=child_seed(seed, 1))
        self.normalize, self.smooth = cfg.normalize, cfg.smooth_type_embedding
        self.shift = SHIFT  # an attribute: TorchScript reads no globals

    def forward(self, g: torch.Tensor, factor: torch.Tensor, shift: torch.Tensor,
                gate: torch.Tensor, extra: int) -> torch.Tensor:
        """g [B, w, ng] -> the attention's output [B, w, ng]: the weights are the softmax of
        the scores (q.k) factor + shift over the keys, times gate [B, w, w]. Smooth: factor
        = scaling sw_j sw_k, shift = SHIFT (sw_j sw_k - 1) ([B, w, w]) and `extra` more keys
        of score -SHIFT lie beyond the list; otherwise factor is the scaling and shift
        [B, 1, w] is MASKED on the keys that are not neighbors (DeePMD-kit's -inf).

        q, k and v are unit vectors when normalize: q_j / |q_j| . k_l / |k_l| is written as
        (q_j . k_l) / (|q_j| |k_l|) and a v_l / |v_l| as (a / |v_l|) v, so the norms scale
        the [w, w] scores and weights instead of the [w, H] vectors (H > w here), which
        spares the H-wide passes and their derivatives."""
        qkv = self.in_proj(g)
        q, k, v = qkv.chunk(3, dim=-1)
        a = torch.bmm(q, k.transpose(1, 2))
        if self.normalize:
            inv = _inverse_norms(qkv)                                # [B, w, 3]
            # the key's norm with the factor on its [B, 1, w] side when that is all it is
            if self.smooth:
                factor = factor * (inv[..., 0].unsqueeze(2) * inv[..., 1].unsqueeze(1))
            else:
                factor = inv[..., 0].unsqueeze(2) * (inv[..., 1].unsqueeze(1) * factor)
            gate = gate * inv[..., 2].unsqueeze(1)
        a = torch.addcmul(shift, a, factor)  # one fused pass: no product kept apart
        if extra > 0 and self.smooth:  # the keys beyond the list: one column of their weight
            a = nn.functional.pad(a, (0, 1), value=math.log(extra) - self.shift)
            a = torch.softmax(a, dim=-1)[..., :-1]
        else:
            a = torch.softmax(a, dim=-1)
        return self.out_proj(torch.bmm(a * gate, v))


def _inverse_norms(qkv: torch.Tensor) -> torch.Tensor:
    """1 / max(|x|, 1e-12) of q, k and v (the thirds of qkv's last axis) [B, w, 3]:
    torch.nn.functional.normalize's rule, from one pass over qkv."""
    b, w = qkv.shape[0], qkv.shape[1]
    return _squared_norms(qkv.view(b, w, 3, -1)).clamp(min=1e-24).rsqrt()


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    """sum of x^2 over the last axis; in eager training through _SquaredNorms."""
    if torch.jit.is_scripting():
        return (x * x).sum(dim=-1)
    return _SquaredNorms.apply(x)


class _SquaredNorms(torch.autograd.Function):
    """|x|^2 over the last axis with its derivative written as one product, 2 x g, itself
    made of differentiable ops (the force loss differentiates it again). Autograd's own
    derivatives of x^2 or of vector_norm take several passes over the attn-wide q, k, v
    each (the division by the norm, its mask, the power), in both orders of derivative:
    17 % of a DPA-1 training step."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * x).sum(dim=-1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x * (2.0 * grad).unsqueeze(-1)


class NeighborGatedAttentionLayer(nn.Module):
    """G <- LN(G + Attn(G)); DeePMD-kit's names (attention_layer, attn_layer_norm)."""

    def __init__(self, cfg, ng: int, dtype, seed):
        super().__init__()
        self.attention_layer = GatedAttentionLayer(cfg, ng, dtype, child_seed(seed, 0))
        self.attn_layer_norm = LayerNorm(ng, cfg.eps, dtype)

    def forward(self, g: torch.Tensor, factor: torch.Tensor, shift: torch.Tensor,
                gate: torch.Tensor, extra: int) -> torch.Tensor:
        return self.attn_layer_norm(g + self.attention_layer(g, factor, shift, gate, extra))

    def padding(self, g_pad: torch.Tensor) -> torch.Tensor:
        """The layer on a slot whose attention row is zero: LN(G + out_proj(0))."""
        out = self.attention_layer.out_proj
        bias = out.bias
        return self.attn_layer_norm(g_pad if bias is None else g_pad + bias)


class NeighborGatedAttention(nn.Module):
    def __init__(self, cfg, ng: int, dtype, seed):
        super().__init__()
        self.attention_layers = nn.ModuleList(
            NeighborGatedAttentionLayer(cfg, ng, dtype, child_seed(seed, i))
            for i in range(cfg.attn_layer))
        self.scaling = ((cfg.attn * cfg.scaling_factor) ** -0.5 if cfg.temperature is None
                        else float(cfg.temperature))
        self.smooth, self.dotr = cfg.smooth_type_embedding, cfg.attn_dotr
        self.nlayer = cfg.attn_layer
        self.shift, self.masked = SHIFT, MASKED

    def forward(self, g: torch.Tensor, mask: torch.Tensor, rhat: torch.Tensor,
                sw: torch.Tensor, extra: int) -> torch.Tensor:
        """g [B, w, ng], mask [B, w] (a neighbor that is not excluded), rhat [B, w, 3], sw
        [B, w] (0 where masked); extra: the padding slots beyond the w listed ones."""
        if self.nlayer == 0:
            return g
        # what the layers share (deepmd-dpa1 §6.2 steps 5-9): a masked row's weights are 0
        # (its sw is 0 when smooth), the smooth scores are damped by sw_j sw_k and the
        # weights too, the angular gate multiplies them
        if self.smooth:
            pair = sw.unsqueeze(2) * sw.unsqueeze(1)
            factor = pair * self.scaling
            shift = pair * self.shift - self.shift
            gate = pair
        else:
            factor = torch.full_like(sw[:, :1].unsqueeze(1), self.scaling)      # [B, 1, 1]
            shift = torch.where(mask, 0.0, self.masked).to(g.dtype).unsqueeze(1)  # [B, 1, w]
            gate = mask.unsqueeze(2).to(g.dtype).expand(-1, -1, mask.shape[1])
        if self.dotr:
            gate = gate * torch.bmm(rhat, rhat.transpose(1, 2))
        for layer in self.attention_layers:
            g = layer(g, factor, shift, gate, extra)
        return g

    def padding(self, g_pad: torch.Tensor) -> torch.Tensor:
        for layer in self.attention_layers:
            g_pad = layer.padding(g_pad)
        return g_pad


class _NoTable(nn.Module):
    """What an uncompressed block holds where a compressed one has its table's op (so that
    the frozen file of an uncompressed model names no DeePMD-kit op)."""

    def forward(self, table: torch.Tensor, info: torch.Tensor, s: torch.Tensor,
                em: torch.Tensor, two_embed: torch.Tensor, ng: int,
                is_sorted: bool) -> torch.Tensor:
        raise RuntimeError("this DPA-1 block is not geometrically compressed")


class _AttenTable(nn.Module):
    """T * nnei of a geometrically compressed block by deepmd::tabulate_fusion_se_atten:
    sum_j R_j (x) N_s(s_j) (1 + two_embed_j), the table in place of N_s (deepmd-dpa1 §11.3);
    DeePMD-kit's op, or dpx's where its library is absent (dpx.ops.deepmd)."""

    def forward(self, table: torch.Tensor, info: torch.Tensor, s: torch.Tensor,
                em: torch.Tensor, two_embed: torch.Tensor, ng: int,
                is_sorted: bool) -> torch.Tensor:
        return torch.ops.deepmd.tabulate_fusion_se_atten(
            table.contiguous(), info.cpu().contiguous(), s.contiguous(), em.contiguous(),
            two_embed.contiguous(), ng, is_sorted)[0]


class DescrptBlockSeAtten(EnvMatBlock):
    """DeePMD-kit's se_atten block: davg/dstd, the embedding net(s), the attention and the
    compression slots, registered in DeePMD-kit's order (the optimizer's parameter order)."""

    def __init__(self, cfg, ntypes: int, options: ModelOptions):
        super().__init__(cfg, ntypes, ncol=4, mixed=True, options=options)
        dtype = DTYPES[cfg.precision]
        seed = child_seed(cfg.seed, 1)
        self.ng, self.axis_neuron = cfg.neuron[-1], cfg.axis_neuron
        self.tebd_dim, self.type_one_side = cfg.tebd_dim, cfg.type_one_side
        self.concat = cfg.tebd_input_mode == "concat"
        self.smooth = cfg.smooth_type_embedding
        self.dpa1_attention = NeighborGatedAttention(cfg, self.ng, dtype, child_seed(seed, 0))
        tebd_in = cfg.tebd_dim * (1 if cfg.type_one_side else 2)
        in_dim = 1 + tebd_in if self.concat else 1
        self.filter_layers = NetworkCollection(0, ntypes, [EmbeddingNet(
            in_dim, cfg.neuron, cfg.activation_function, cfg.resnet_dt, dtype,
            child_seed(seed, 1))])
        self.filter_layers_strip: Optional[NetworkCollection] = None
        if not self.concat:
            self.filter_layers_strip = NetworkCollection(0, ntypes, [EmbeddingNet(
                tebd_in, cfg.neuron, cfg.activation_function, cfg.resnet_dt, dtype,
                child_seed(seed, 2))])
        self.compress_info = compression_slots(1, dtype)
        self.compress_data = compression_slots(1, dtype)
        self.register_buffer("type_embd_data", torch.zeros(0, dtype=dtype))
        self.tebd_compress = False
        self.geo_compress = False
        self.geo_table: nn.Module = _NoTable()
        # strip mode without attention: the radial net and its contraction by the fused
        # embedding op (dpx.ops.se_a_embed), as se_e2_a runs its nets
        code = activation_code(parse_activation(cfg.activation_function)[0])
        self.activation_code = -1 if code is None else code
        self.resnet_dt = cfg.resnet_dt
        self.widths = [1, *cfg.neuron]
        self.fusable = (not self.concat and cfg.attn_layer == 0 and code is not None
                        and options.fused_embedding and self.backend.has_fused_embedding())
        # the table op's padding fold: DeePMD-kit 3.2.0's block sets is_sorted from the
        # exclusions and then resets it to False, so its files always sum every slot
        self.is_sorted = False
        self.strategy = "dense"
        self.zero_padding = True
        self.plan()

    def plan(self) -> None:
        """geo (the compressed embedding: DeePMD-kit's op on the full sorted list); dense when
        the statistics vary by slot (no statistics make them so); fused (strip mode without
        attention: the radial net on the filled slots in the fused op, see _fused_reduce)
        where the op library has it for this device; narrow (trailing all-padding columns in
        closed form) otherwise."""
        if self.geo_compress:
            self.strategy = "geo"
        elif not self.slot_constant_stats():
            self.strategy = "dense"
        elif self.fusable and self.backend.fused_embedding_on(self.mean.device):
            self.strategy = "fused"
        else:
            self.strategy = "narrow"
        self.zero_padding = bool((self.mean[:, 0, 0] == 0).all())

    def need_sorted_nlist_for_lower(self) -> bool:
        """The table op folds the trailing padding of a distance-sorted list."""
        return self.geo_compress

    def get_dim_out(self) -> int:
        return self.ng * self.axis_neuron

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor, tebd: torch.Tensor) -> torch.Tensor:
        """D [nf, nloc, ng * axis_neuron] of centers of type atype [nf, nloc] (>= 0) on the
        mixed list nlist [nf, nloc, nnei]; tebd: the type embedding table [ntypes + 1, td]."""
        nf, nloc = nlist.shape[0], nlist.shape[1]
        ext_coord = ext_coord.to(self.mean.dtype)
        if self.strategy == "narrow" or self.strategy == "fused":
            nlist = _narrow(nlist)
        width = nlist.shape[2]
        em, mask = self.env_mat(ext_coord, ext_atype, nlist, atype, self.mean[:, :width],
                                self.stddev[:, :width])
        em = em.view(nf * nloc, width, 4)
        mask = mask.view(nf * nloc, width)
        sw = self._switch(ext_coord, nlist, mask)
        # padding and excluded slots take the type of extended atom 0, as in DeePMD-kit
        nb_type = torch.gather(ext_atype, 1, torch.where(mask.view(nf, -1), nlist.reshape(nf, -1),
                                                         0)).view(nf * nloc, width)
        center = atype.reshape(-1)
        if self.strategy == "geo":
            g_t = self._gate(nb_type, center, sw, tebd)
            t = self.geo_table(self.compress_data[0], self.compress_info[0],
                               em[..., :1].reshape(-1, 1), em, g_t.reshape(-1, self.ng),
                               self.ng, self.is_sorted)
            return self.backend.gram(t / self.nnei, self.axis_neuron).reshape(nf, nloc, -1)
        if self.strategy == "fused":
            t = self._fused_reduce(em, mask, nb_type, center, sw, tebd)
            if not self.zero_padding:
                npad = self.nnei - (nlist >= 0).sum(dim=-1).view(-1, 1, 1).to(t.dtype)
                t = t + npad * self._padding_term(ext_atype, center, tebd, nf, nloc)
            return self.backend.gram(t / self.nnei, self.axis_neuron).reshape(nf, nloc, -1)
        g = self._embed(em[..., :1], nb_type, center, sw, tebd)
        rhat = em[..., 1:] / torch.linalg.vector_norm(em[..., 1:], dim=-1,
                                                      keepdim=True).clamp(min=1e-12)
        g = self.dpa1_attention(g, mask, rhat, sw, self.nnei - width)
        t = torch.matmul(em.transpose(1, 2), g)
        if width < self.nnei and not self.zero_padding:
            t = t + (self.nnei - width) * self._padding_term(ext_atype, center, tebd, nf, nloc)
        t = t / self.nnei
        d = self.backend.gram(t, self.axis_neuron)
        return d.reshape(nf, nloc, -1)

    def _switch(self, ext_coord: torch.Tensor, nlist: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """sw(r_ij) [nf * nloc, w], 0 on masked slots (only a smooth model reads it)."""
        if not self.smooth:
            return mask.to(ext_coord.dtype)
        nf, nloc, width = nlist.shape[0], nlist.shape[1], nlist.shape[2]
        idx = nlist.clamp(min=0).view(nf, -1, 1).expand(-1, -1, 3)
        xj = torch.gather(ext_coord, 1, idx).view(nf, nloc, width, 3)
        r = torch.linalg.vector_norm(xj - ext_coord[:, :nloc, None, :], dim=-1)
        sw = smooth_switch(r, self.rcut_smth, self.rcut).view(nf * nloc, width)
        return sw * mask.to(sw.dtype)

    def _embed(self, s: torch.Tensor, nb_type: torch.Tensor, center: torch.Tensor,
               sw: torch.Tensor, tebd: torch.Tensor) -> torch.Tensor:
        """G [B, w, ng] of radial entries s [B, w, 1], neighbor types [B, w], center types [B]
        (deepmd-dpa1 §5)."""
        net = self.filter_layers.networks[0]
        if self.concat:
            parts = [s, tebd[nb_type]]
            if not self.type_one_side:
                parts.append(tebd[center].unsqueeze(1).expand(-1, s.shape[1], -1))
            return net(torch.cat(parts, dim=-1))
        g_s = net(s)
        return torch.addcmul(g_s, g_s, self._gate(nb_type, center, sw, tebd))

    def _gate(self, nb_type: torch.Tensor, center: torch.Tensor, sw: torch.Tensor,
              tebd: torch.Tensor) -> torch.Tensor:
        """The strip mode's type factor N_t(e(t_j), e(t_i)) [B, w, ng], times sw when
        smooth."""
        g_t = self._type_pair_table(tebd)[self._pair_index(nb_type, center)]
        if self.smooth:
            g_t = g_t * sw.unsqueeze(-1)
        return g_t

    def _fused_reduce(self, em: torch.Tensor, mask: torch.Tensor, nb_type: torch.Tensor,
                      center: torch.Tensor, sw: torch.Tensor,
                      tebd: torch.Tensor) -> torch.Tensor:
        """sum over the filled slots of R_j (x) G_s(s_j) (1 + g_j) [B, 4, ng] in strip mode
        without attention, g_j = N_t(t_j, t_i) (times sw_j when smooth) taking one value per
        neighbor type t of a center:
          sum_j R_j (x) G_s(s_j) + sum_t N_t(t, t_i) * sum_{j of type t} w_j R_j (x) G_s(s_j)
        (w_j = sw_j, or 1). Both sums are one fused-op call on the slots grouped by (center,
        neighbor type): the contracted rows [R_j, sw_j R_j] (K = 8; R_j alone when not
        smooth), the net's input R_j[0]. Padding adds its own term (the caller); excluded
        pairs have R = 0."""
        b, w, nt = em.shape[0], em.shape[1], self.ntypes
        slot = torch.nonzero(mask.reshape(-1)).flatten()
        key = torch.div(slot, w, rounding_mode="floor") * nt + nb_type.reshape(-1)[slot]
        key, order = torch.sort(key, stable=True)  # the op wants its centers sorted
        slot = slot[order]
        rows = em.reshape(-1, 4).index_select(0, slot)
        if self.smooth:
            rows = torch.cat([rows, rows * sw.reshape(-1, 1).index_select(0, slot)], dim=1)
        net = self.filter_layers.networks[0]
        t = self.backend.embed_reduce(rows, key, net.flat_params(), self.widths,
                                      self.activation_code, self.resnet_dt, b * nt, 1.0)
        t = t.view(b, nt, -1, self.ng)
        gate_rows = self._type_pair_table(tebd)[
            self._pair_index(torch.arange(nt, device=em.device).unsqueeze(0).expand(b, -1),
                             center)]                                   # [B, nt, ng]
        weighted = t[:, :, 4:] if self.smooth else t
        return t[:, :, :4].sum(dim=1) + (weighted * gate_rows.unsqueeze(2)).sum(dim=1)

    def _pair_index(self, nb_type: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """Row of the strip table: the neighbor's type, or center * (ntypes + 1) + neighbor."""
        if self.type_one_side:
            return nb_type
        return center.unsqueeze(1) * (self.ntypes + 1) + nb_type

    def _type_pair_table(self, tebd: torch.Tensor) -> torch.Tensor:
        """N_t on every neighbor type [(nt+1), ng] or (center, neighbor) pair [(nt+1)^2, ng]
        (input [e(t_j), e(t_i)]); the compressed model's stored table when it has one."""
        if self.tebd_compress:
            return self.type_embd_data
        strip = self.filter_layers_strip
        assert strip is not None
        net = strip.networks[0]
        if self.type_one_side:
            return net(tebd)
        n = tebd.shape[0]
        pairs = torch.cat([tebd.unsqueeze(0).expand(n, -1, -1),
                           tebd.unsqueeze(1).expand(-1, n, -1)], dim=-1)
        return net(pairs.reshape(n * n, -1))

    def _padding_term(self, ext_atype: torch.Tensor, center: torch.Tensor, tebd: torch.Tensor,
                      nf: int, nloc: int) -> torch.Tensor:
        """[B, 4, ng]: R_pad (x) G_pad of one padded slot of each center, G_pad through the
        layers with a zero attention row; its neighbor type is that of extended atom 0."""
        r_pad = self.padding_rows()[center]                          # [B, 4]
        nb_type = ext_atype[:, :1].expand(-1, nloc).reshape(-1, 1)   # [B, 1]
        zero_sw = r_pad.new_zeros(r_pad.shape[0], 1)
        g_pad = self._embed(r_pad[:, None, :1], nb_type, center, zero_sw, tebd)
        g_pad = self.dpa1_attention.padding(g_pad[:, 0])
        return r_pad.unsqueeze(-1) * g_pad.unsqueeze(1)

    @torch.no_grad()
    def compress_type_embedding(self, tebd: torch.Tensor) -> None:
        """N_t on the whole (padded) table, stored (DeePMD-kit's type_embd_data); the forward
        then only indexes it (exact)."""
        self.type_embd_data = self._type_pair_table(tebd).detach().clone()
        self.tebd_compress = True

    @torch.no_grad()
    def compress_geometry(self, min_nbor_dist: float, step: float, extrapolate: float,
                          check_frequency: int) -> dict[str, tuple[float, float]]:
        """N_s as DeePMD-kit's table "filter_net" on the input range of every center type,
        in compress_data[0] / compress_info[0] (DeePMD-kit's places)."""
        check_min_nbor_dist(min_nbor_dist)
        lower, upper = input_range(self, min_nbor_dist)
        ll, uu = float(lower.min()), float(upper.max())
        table, info = tabulate(self.filter_layers.networks[0], ll, uu, step, extrapolate,
                               check_frequency, self.mean.dtype)
        self.compress_data[0] = nn.Parameter(table, requires_grad=False)
        self.compress_info[0] = nn.Parameter(info, requires_grad=False)
        self.geo_table = _AttenTable()
        self.geo_compress = True
        self.plan()
        return {"filter_net": (ll, uu)}


def _narrow(nlist: torch.Tensor) -> torch.Tensor:
    """The list without its trailing columns that no center fills."""
    nnei = nlist.shape[2]
    rank = torch.arange(1, nnei + 1, device=nlist.device)
    width = int(((nlist >= 0) * rank).max()) if nlist.numel() > 0 else 0
    return nlist[..., :width].contiguous()


class DescrptDPA1(BlockDescriptor):
    """DeePMD-kit's DescrptDPA1: the block `se_atten` and the type embedding
    `type_embedding`."""
    CONFIG = DPA1Config
    BLOCK = "se_atten"
    NEW_TYPES = True
    SHARE_LEVELS = {0: "everything: type embedding, embedding nets, attention and davg/dstd "
                       "(statistics merged over the sharing branches)",
                    1: "the type embedding only; each branch keeps its own embedding nets, "
                       "attention and davg/dstd"}

    def __init__(self, cfg, ntypes: int, options: ModelOptions):
        super().__init__()
        self.cfg, self.ntypes = cfg, ntypes
        dtype = DTYPES[cfg.precision]
        if cfg.use_econf_tebd:
            raise ValueError("descriptor/use_econf_tebd: the electronic-configuration type "
                             "embedding is not implemented in dpx; remove it or set it to false")
        self.se_atten = DescrptBlockSeAtten(cfg, ntypes, options)
        self.type_embedding = TypeEmbedding(ntypes, cfg, dtype, child_seed(cfg.seed, 2))
        self.concat_output_tebd = cfg.concat_output_tebd
        if not cfg.trainable_ln:
            log.warning("descriptor/trainable_ln false: as in DeePMD-kit 3.2.0's PyTorch backend "
                        "(whose numbers dpx matches), the layer norms are trained all the same")
        if not cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    def forward(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor) -> torch.Tensor:
        tebd = self.type_embedding()
        d = self.se_atten(ext_coord, ext_atype, nlist, atype, tebd)
        if self.concat_output_tebd:
            d = torch.cat([d, tebd[atype].to(d.dtype)], dim=-1)
        return d

    def get_dim_out(self) -> int:
        return self.se_atten.get_dim_out() + (self.cfg.tebd_dim if self.concat_output_tebd
                                               else 0)

    def shared_with(self, base: Descriptor, level: int) -> Descriptor:
        """Level 0: the very module of `base`; level 1: its type embedding."""
        self.check_same_kind(base)
        self.check_level(level)
        if level == 0:
            return base
        self.type_embedding = base.type_embedding
        return self

    @torch.no_grad()
    def transfer_from(self, src: Descriptor, index: list[int]) -> None:
        """The type embedding's rows and davg/dstd rows follow the type (a new type: a random
        row, and the statistics this model already has, from the new data); the nets and
        the attention are src's."""
        self.type_embedding.transfer_from(src.type_embedding, index)
        block, theirs = self.se_atten, src.se_atten
        block.transfer_stats(theirs, index)
        for name in ("filter_layers", "filter_layers_strip", "dpa1_attention"):
            part = getattr(block, name)
            if part is not None:
                part.load_state_dict(getattr(theirs, name).state_dict())
        block.plan()


    def enable_compression(self, min_nbor_dist: float, step: float = 0.01,
                           extrapolate: float = 5, check_frequency: int = -1) -> dict:
        """DeePMD-kit's DPA-1 compression (strip mode only): the type-pair factor N_t always
        (exact), the radial net N_s as a table when attn_layer is 0 (its output feeds the
        attention otherwise)."""
        cfg, block = self.cfg, self.se_atten
        if block.tebd_compress or block.geo_compress:
            raise ValueError("the descriptor is compressed already")
        if cfg.tebd_input_mode != "strip":
            raise ValueError("DPA-1 compresses in tebd_input_mode 'strip' only (DeePMD-kit's "
                             "rule); this model concatenates the type embedding to the "
                             "embedding net's input")
        if cfg.resnet_dt:
            raise ValueError("DPA-1 with resnet_dt true cannot be compressed (DeePMD-kit's "
                             "rule)")
        if len({tuple(sorted(p)) for p in cfg.exclude_types}) >= \
                self.ntypes * (self.ntypes + 1) // 2:
            raise ValueError("every type pair is excluded: nothing to compress")
        block.compress_type_embedding(self.type_embedding())
        if cfg.attn_layer > 0:
            log.warning("attn_layer %d > 0: only the type embedding is compressed (the "
                        "geometric part feeds the attention), as in DeePMD-kit",
                        cfg.attn_layer)
            return {}
        return block.compress_geometry(min_nbor_dist, step, extrapolate, check_frequency)


class DescrptSeAttenV2(DescrptDPA1):
    """se_atten_v2: DPA-1 in strip mode with the smooth type embedding (SeAttenV2Config)."""
    CONFIG = SeAttenV2Config
