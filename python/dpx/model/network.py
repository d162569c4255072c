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


def activation(name: str):
    """DeePMD-kit's activation functions by name (deepmd-compat §0.3)."""
    key, _, arg = (name or "linear").lower().partition(":")
    if key in ("silut", "custom_silu"):
        return _silut(float(arg) if arg else 3.0)
    table = {
        "tanh": torch.tanh, "relu": torch.relu, "relu6": nn.functional.relu6,
        "softplus": nn.functional.softplus, "sigmoid": torch.sigmoid,
        "silu": nn.functional.silu, "linear": lambda x: x, "none": lambda x: x,
        "gelu": lambda x: nn.functional.gelu(x, approximate="tanh"),
        "gelu_tf": lambda x: nn.functional.gelu(x, approximate="tanh"),
    }
    if key not in table:
        raise ValueError(f"unknown activation function '{name}'")
    return table[key]


def _silut(thr: float):
    sig = 1.0 / (1.0 + math.exp(-thr))
    slope = sig + thr * sig * (1.0 - sig)  # silu'(thr)
    at_thr = thr * sig

    def f(x):
        return torch.where(x < thr, nn.functional.silu(x), torch.tanh(slope * (x - thr)) + at_thr)
    return f


class MLPLayer(nn.Module):
    """y = act(x W + b), times idt when timestep is active, plus the resnet skip: x when the
    width is kept, concat(x, x) when it doubles (deepmd-compat §4.1)."""

    def __init__(self, num_in: int, num_out: int, act: str, resnet: bool, use_timestep: bool,
                 bias: bool = True, dtype=torch.float64, seed=None):
        super().__init__()
        g = generator(seed)
        self.resnet = resnet and num_out in (num_in, 2 * num_in)
        self.act_name = act
        self.act = activation(act)
        w = torch.empty(num_in, num_out, dtype=dtype)
        self.matrix = nn.Parameter(w.normal_(0.0, 1.0 / math.sqrt(num_in + num_out), generator=g))
        self.bias = nn.Parameter(torch.empty(num_out, dtype=dtype).normal_(0.0, 1.0, generator=g)) \
            if bias else None
        self.idt = None
        if use_timestep and num_out in (num_in, 2 * num_in):
            self.idt = nn.Parameter(torch.empty(num_out, dtype=dtype).normal_(0.1, 0.001, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.matrix
        if self.bias is not None:
            y = y + self.bias
        y = self.act(y)
        if self.idt is not None:
            y = y * self.idt
        if self.resnet:
            y = y + (x if y.shape[-1] == x.shape[-1] else torch.cat([x, x], dim=-1))
        return y


class EmbeddingNet(nn.Module):
    """Layers in_dim -> neuron[0] -> ... -> neuron[-1], each with resnet skips (§4.2)."""

    def __init__(self, in_dim: int, neuron: list[int], act: str, resnet_dt: bool, dtype, seed):
        super().__init__()
        widths = [in_dim, *neuron]
        self.layers = nn.ModuleList(
            MLPLayer(widths[k], widths[k + 1], act, True, resnet_dt, dtype=dtype,
                     seed=child_seed(seed, k)) for k in range(len(neuron)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class FittingNet(EmbeddingNet):
    """EmbeddingNet hidden layers followed by a linear output layer (§4.2)."""

    def __init__(self, in_dim: int, out_dim: int, neuron: list[int], act: str, resnet_dt: bool,
                 dtype, seed):
        super().__init__(in_dim, neuron, act, resnet_dt, dtype, seed)
        self.layers.append(MLPLayer(neuron[-1], out_dim, "linear", False, False, dtype=dtype,
                                    seed=child_seed(seed, len(neuron))))


class NetworkCollection(nn.Module):
    """Networks indexed by type: ndim 1 (one per type) or 2 (one per (center, neighbor) pair,
    stored at flat index center + neighbor * ntypes). The list is registered under two names,
    `networks` and `_networks`, because DeePMD-kit's state dicts carry both (§3.4, §11)."""

    def __init__(self, ndim: int, ntypes: int, networks: list[nn.Module]):
        super().__init__()
        self.ndim, self.ntypes = ndim, ntypes
        self.networks = nn.ModuleList(networks)
        self._networks = self.networks

    def __getitem__(self, key) -> nn.Module:
        if self.ndim == 2:
            center, neighbor = key
            return self.networks[center + neighbor * self.ntypes]
        return self.networks[key]
