"""Layers and networks with DeePMD-kit's parameter names, shapes and initialization
(deepmd-compat §4), so that state dicts move between the two unchanged."""
from __future__ import annotations

import math

import torch
from torch import nn

_M64 = (1 << 64) - 1


def _hash(v: int) -> int:
    # NumPy SeedSequence's hashmix with a fixed multiplier, as DeePMD-kit's mix_entropy uses it
    v = ((v ^ 0x43B0D7E5) * 0x43B0D7E5) & _M64
    return v ^ (v >> 16)


def mix_entropy(seeds: list[int]) -> int:
    """One 64-bit seed from a list (deepmd-compat §4.3)."""
    m = _hash(seeds[0])
    for e in seeds[1:]:
        m = (0xCA01F9DD * m - 0x4973F715 * _hash(e)) & _M64
        m ^= m >> 16
    return m


def child_seed(seed, i: int):
    """Seed of the i-th child: None stays None, s -> [i, s], [s...] -> [i, s...]."""
    if seed is None:
        return None
    return [i, seed] if isinstance(seed, int) else [i, *seed]


def generator(seed) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator()
    g.manual_seed(mix_entropy(seed) if isinstance(seed, list) else seed)
    return g


def parse_activation(name: str | None) -> tuple[str, float]:
    """(function key, threshold) of an activation name such as "tanh" or "silut:2.5"."""
    key, _, arg = (name or "linear").lower().partition(":")
    return key, float(arg) if arg else 3.0


def activate(x: torch.Tensor, key: str, thr: float) -> torch.Tensor:
    """DeePMD-kit's activation functions (deepmd-compat §0.3) by parsed name; scriptable."""
    if key == "tanh":
        return torch.tanh(x)
    if key == "relu":
        return torch.relu(x)
    if key == "relu6":
        return nn.functional.relu6(x)
    if key == "softplus":
        return nn.functional.softplus(x)
    if key == "sigmoid":
        return torch.sigmoid(x)
    if key == "silu":
        return nn.functional.silu(x)
    if key in ("gelu", "gelu_tf"):
        return nn.functional.gelu(x, approximate="tanh")
    if key in ("silut", "custom_silu"):
        # silu below thr; above, tanh with silu's slope and value at thr (C1 at thr)
        sig = 1.0 / (1.0 + math.exp(-thr))
        slope = sig + thr * sig * (1.0 - sig)
        tail = torch.tanh(slope * (x - thr)) + thr * sig
        return torch.where(x < thr, nn.functional.silu(x), tail)
    return x  # linear / none


class MLPLayer(nn.Module):
    """y = act(x W + b), times idt when timestep is active, plus the resnet skip: x when the
    width is kept, concat(x, x) when it doubles (deepmd-compat §4.1). Scriptable."""

    def __init__(self, num_in: int, num_out: int, act: str, resnet: bool, use_timestep: bool,
                 bias: bool = True, dtype=torch.float64, seed=None):
        super().__init__()
        g = generator(seed)
        self.resnet = resnet and num_out in (num_in, 2 * num_in)
        self.act_name = act
        self.act, self.thr = parse_activation(act)
        w = torch.empty(num_in, num_out, dtype=dtype)
        self.matrix = nn.Parameter(w.normal_(0.0, 1.0 / math.sqrt(num_in + num_out), generator=g))
        self.bias = nn.Parameter(torch.empty(num_out, dtype=dtype).normal_(0.0, 1.0, generator=g)) \
            if bias else None
        self.idt = None
        if use_timestep and num_out in (num_in, 2 * num_in):
            idt = torch.empty(num_out, dtype=dtype)
            self.idt = nn.Parameter(idt.normal_(0.1, 0.001, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., num_in] -> [..., num_out]."""
        bias = self.bias
        shape = list(x.shape[:-1])
        x2 = x.reshape(-1, x.shape[-1])
        if bias is not None:
            y = torch.addmm(bias, x2, self.matrix)  # one fused call: product and bias
        else:
            y = torch.mm(x2, self.matrix)
        y = activate(y, self.act, self.thr)
        idt = self.idt
        if idt is not None:
            y = y * idt
        if self.resnet:
            width = x2.shape[-1]
            if y.shape[-1] == width:
                y = y + x2
            else:  # y + concat(x, x), without building the concatenation
                y = (y.view(-1, 2, width) + x2.view(-1, 1, width)).view(y.shape)
        return y.view(shape + [y.shape[-1]])


class EmbeddingNet(nn.Module):
    """Layers in_dim -> neuron[0] -> ... -> neuron[-1], each with resnet skips (§4.2).
    Scriptable."""

    def __init__(self, in_dim: int, neuron: list[int], act: str, resnet_dt: bool, dtype, seed,
                 bias: bool = True):
        super().__init__()
        widths = [in_dim, *neuron]
        self.layers = nn.ModuleList(
            MLPLayer(widths[k], widths[k + 1], act, True, resnet_dt, bias=bias, dtype=dtype,
                     seed=child_seed(seed, k)) for k in range(len(neuron)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def contract(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, 4, M]: sum_j rows[:, j]^T (x) net(s_j) of env-mat rows [n, w, 4] whose first
        column is s. A compressed net (dpx.model.tabulate.TabulatedNet) has the same call."""
        return torch.matmul(rows.transpose(1, 2), self(rows[..., :1]))

    def flat_params(self) -> torch.Tensor:
        """Every layer's matrix, bias and idt, in order, as one vector: the packing of the
        fused embedding op (dpx.ops.reference.embed_net); gradients flow back to the layers."""
        parts: list[torch.Tensor] = []
        for layer in self.layers:
            parts.append(layer.matrix.reshape(-1))
            bias = layer.bias
            if bias is not None:
                parts.append(bias)
            idt = layer.idt
            if idt is not None:
                parts.append(idt)
        return torch.cat(parts)


class FittingNet(EmbeddingNet):
    """EmbeddingNet hidden layers followed by a linear output layer (§4.2)."""

    def __init__(self, in_dim: int, out_dim: int, neuron: list[int], act: str, resnet_dt: bool,
                 dtype, seed):
        super().__init__(in_dim, neuron, act, resnet_dt, dtype, seed)
        self.layers.append(MLPLayer(neuron[-1], out_dim, "linear", False, False, dtype=dtype,
                                    seed=child_seed(seed, len(neuron))))


class NetworkCollection(nn.Module):
    """Networks indexed by type: ndim 0 (one net for every type: descriptors with a type
    embedding and their fittings), 1 (one per type) or 2 (one per (center, neighbor) pair,
    stored at flat index center + neighbor * ntypes). The list is registered under two names,
    `networks` and `_networks`, because DeePMD-kit's state dicts carry both (§3.4, §11).
    Scripted code iterates `networks` (TorchScript cannot index a ModuleList by a variable);
    Python code may index the collection by type or (center, neighbor)."""

    def __init__(self, ndim: int, ntypes: int, networks: list[nn.Module]):
        super().__init__()
        self.ndim, self.ntypes = ndim, ntypes
        self.networks = nn.ModuleList(networks)
        self._networks = self.networks

    def __getitem__(self, key) -> nn.Module:
        if self.ndim == 0:
            return self.networks[0]
        if self.ndim == 2:
            center, neighbor = key
            return self.networks[center + neighbor * self.ntypes]
        return self.networks[key]


class LayerNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * matrix + bias over the last axis (population
    variance), matrix starting at 1 and bias at 0: DeePMD-kit's LayerNorm and its names."""

    def __init__(self, num_in: int, eps: float, dtype=torch.float64):
        super().__init__()
        self.eps = float(eps)
        self.matrix = nn.Parameter(torch.ones(num_in, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(num_in, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # aten's fused kernel (and its derivatives, also of second order): the same formula
        return nn.functional.layer_norm(x, [x.shape[-1]], self.matrix, self.bias, self.eps)
