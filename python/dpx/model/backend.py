"""Where a model's environment matrix and se_e2_a reductions come from, chosen when the model
is built (ModelOptions):

- "ops": dpx's compiled op library (C++/CUDA kernels with their autograd chains), the
  training path;
- "reference": their pure-PyTorch twins (dpx.ops.reference), which TorchScript compiles into
  a frozen file that runs where dpx is not installed (a stock LAMMPS).

Both backends are modules with the same methods, so a model holding either one scripts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from dpx.ops import _library, paths, reference, se_a_embed

DTYPES = {"default": torch.float64, "float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class ModelOptions:
    """How a model is built, beyond what the input says.

    backend: "ops" or "reference" (ops fall back to reference where the library is absent).
    coords_second_order: forces keep their graph to the coordinates (False in training: a
        force loss needs d(force)/d(weights) only, and the env-mat hvp is skipped).
    narrow_padding: the se_e2_a descriptor drops the trailing slot columns that no atom of
        the call fills and adds their (constant) padding term analytically; it costs a
        device synchronization per call, so only the frozen model does it.
    in_place_assembly: se_e2_a writes the filled slots' embeddings into a copy of the
        padding rows in place, which saves a copy when the graph is differentiated once
        (forces: 7 % of a frozen call at 192 atoms); training differentiates it again, and
        there one gather from the concatenated rows is faster (its backward is one
        scatter-add into the smaller sources).
    fused_embedding: se_e2_a runs each embedding net and its reduction as one op
        (dpx.ops.se_a_embed) where the op library has it, the device is a CPU, the statistics
        are slot-constant and the activation is one the kernels implement; G is then never
        in memory. Off, or anywhere else, the nets run as PyTorch modules.
    fused_embedding_cuda: the same on a GPU, where the op family runs its device-generic
        implementation (chunked ATen/cuBLAS operations). Off by default until it is timed on
        a GPU against the unfused nets (scripts/gpu_check.sh); DPX_FUSED_CUDA=1 turns it on
        for training, and then only where `dpx check` passed the family on that GPU.
    """
    backend: str = "ops"
    coords_second_order: bool = True
    narrow_padding: bool = False
    in_place_assembly: bool = False
    fused_embedding: bool = True
    fused_embedding_cuda: bool = False

    def __post_init__(self):
        if self.backend not in ("ops", "reference"):
            raise ValueError(f"backend must be 'ops' or 'reference', got {self.backend!r}")


DEFAULT = ModelOptions()
TRAINING = ModelOptions(coords_second_order=False,
                        fused_embedding_cuda=os.environ.get("DPX_FUSED_CUDA") == "1")
EXPORT = ModelOptions(backend="reference", narrow_padding=True, in_place_assembly=True,
                      fused_embedding=False)


class OpsBackend(nn.Module):
    """dpx's op library (torch.ops.dpx), called without the argument checks of the public
    functions in dpx.ops: the model builds every argument itself. Each call runs the kernel
    only where ops/paths.py runs it on the tensors' device (on a GPU: where `dpx check`
    passed it), else the twin."""

    def __init__(self, coords_second_order: bool = True, fused_cuda: bool = False):
        super().__init__()
        self.coords_second_order = coords_second_order
        self.fused_cuda = fused_cuda
        # ops/paths.py's selection, read once here as plain flags so that the module scripts
        cpu = paths.resolve(torch.device("cpu"))[0]
        gpu = paths.resolve(torch.device("cuda"))[0] if torch.cuda.is_available() \
            else dict.fromkeys(paths.FAMILIES, False)
        self.env_mat_cpu, self.env_mat_gpu = cpu["env_mat"], gpu["env_mat"]
        self.se_a_cpu, self.se_a_gpu = cpu["se_a"], gpu["se_a"]

    def _kernel(self, t: torch.Tensor, cpu: bool, gpu: bool) -> bool:
        return cpu if t.device.type == "cpu" else gpu and t.is_cuda

    def env_mat(self, ext_coord: torch.Tensor, nlist: torch.Tensor, atype: torch.Tensor,
                davg: torch.Tensor, dstd: torch.Tensor, rcut: float, rcut_smth: float,
                protection: float) -> torch.Tensor:
        if self._kernel(ext_coord, self.env_mat_cpu, self.env_mat_gpu):
            return torch.ops.dpx.env_mat_se_a(ext_coord, nlist, atype, davg, dstd, rcut,
                                              rcut_smth, protection, self.coords_second_order)
        return reference.env_mat_se_a(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth,
                                      protection)

    def reduce(self, em: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self._kernel(em, self.se_a_cpu, self.se_a_gpu):
            return torch.ops.dpx.se_a_reduce(em, g)
        return reference.se_a_reduce(em, g)

    def gram(self, t: torch.Tensor, axis_neuron: int) -> torch.Tensor:
        if self._kernel(t, self.se_a_cpu, self.se_a_gpu):
            return torch.ops.dpx.se_a_gram(t, t, axis_neuron)
        return reference.se_a_gram(t, t, axis_neuron)

    def has_fused_embedding(self) -> bool:
        return se_a_embed.AVAILABLE

    def fused_embedding_on(self, device: torch.device) -> bool:
        """The fused family runs on this device: where its kernels run (ops/paths.py) and,
        on a GPU, only when asked for (fused_embedding_cuda: not yet timed there)."""
        return se_a_embed.runs_on(device) and (device.type == "cpu" or self.fused_cuda)

    def embed_reduce(self, em: torch.Tensor, center: torch.Tensor, params: torch.Tensor,
                     widths: list[int], activation: int, resnet_dt: bool, ncenter: int,
                     scale: float) -> torch.Tensor:
        return torch.ops.dpx.se_a_embed_reduce(em, center, params, widths, activation,
                                               resnet_dt, ncenter, scale)


class ReferenceBackend(nn.Module):
    """The pure-PyTorch twins of the ops; plain autograd gives every derivative."""

    def env_mat(self, ext_coord: torch.Tensor, nlist: torch.Tensor, atype: torch.Tensor,
                davg: torch.Tensor, dstd: torch.Tensor, rcut: float, rcut_smth: float,
                protection: float) -> torch.Tensor:
        return reference.env_mat_se_a(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth,
                                      protection)

    def reduce(self, em: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return reference.se_a_reduce(em, g)

    def gram(self, t: torch.Tensor, axis_neuron: int) -> torch.Tensor:
        return reference.se_a_gram(t, t, axis_neuron)

    def has_fused_embedding(self) -> bool:
        return False

    def fused_embedding_on(self, device: torch.device) -> bool:
        return False

    def embed_reduce(self, em: torch.Tensor, center: torch.Tensor, params: torch.Tensor,
                     widths: list[int], activation: int, resnet_dt: bool, ncenter: int,
                     scale: float) -> torch.Tensor:
        return reference.se_a_embed_reduce(em, center, params, widths, activation, resnet_dt,
                                           ncenter, scale)


def make_backend(options: ModelOptions) -> nn.Module:
    if options.backend == "ops" and _library.LOADED:
        return OpsBackend(options.coords_second_order, options.fused_embedding_cuda)
    return ReferenceBackend()
