"""DeePMD-kit's statistics frames under the same seed (deepmd-compat §1.7, §4.3).

DeePMD-kit 3.2.0 draws its statistics frames from torch's global generator: each system's
shuffled DataLoader, iterated afresh for the statistics, takes two 64-bit draws and a
permutation. What the global generator has done before that is fixed by the input: every
data section reseeds it with mix_entropy([rank, seed]) and then starts one iterator per
system (two draws each); every model then builds its embedding-net layers and fitting-net
hidden layers twice, once seeded and once unseeded from the global generator (normal_ on
each matrix, bias and idt; the fitting's output layer is built seeded only).

DeepmdStatStream replays that sequence on a forked generator, so that dpx samples the very
frames DeePMD-kit samples, and davg/dstd and the energy bias are equal also when
data_stat_nbatch does not cover every frame. dpx's own generator is left untouched."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from dpx.model.network import MLPLayer, mix_entropy


class DeepmdStatStream:
    def __init__(self, cfg, branches: dict, rank: int = 0):
        """cfg: the run's Config (seed, branch order); branches: {name: BranchRun} in
        model_dict order, with their data and models."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_entropy([rank, cfg.training.seed % 2 ** 32]))
            last = list(branches.values())[-1].data  # the last data section made reseeds last
            sampler = last.valid if last.valid is not None else last.train
            for _ in sampler.systems:
                _iterator_draw()
            for run in branches.values():
                _model_draws(run.model)
            self.state = torch.get_rng_state()

    def permutations(self, systems, batch_sizes, nbatch: int) -> list[np.ndarray]:
        """Per system, the frame order of the first min(nbatch, nbatches) batches DeePMD-kit's
        fresh loader yields, continuing the stream (a branch after another)."""
        out = []
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.state)
            for system, b in zip(systems, batch_sizes):
                loader = DataLoader(range(system.nframes), batch_size=b, shuffle=True)
                batches = iter(loader)
                nb = min(nbatch, len(loader))
                out.append(np.concatenate([next(batches).numpy() for _ in range(nb)]))
            self.state = torch.get_rng_state()
        return out


def _iterator_draw() -> None:
    """What starting a DataLoader iterator takes from the global generator (its base seed)."""
    torch.empty((), dtype=torch.int64).random_()


def _model_draws(model) -> None:
    """The unseeded re-initialization of each layer DeePMD-kit rebuilds from its serialized
    form: descriptor embedding nets, then the fitting's hidden layers, in module order."""
    am = model.atomic_model
    layers = [m for m in am.descriptor.modules() if isinstance(m, MLPLayer)]
    for net in am.fitting_net.filter_layers.networks:
        layers += list(net.layers)[:-1]  # the output layer is built seeded only
    for layer in layers:
        for p in (layer.matrix, layer.bias, layer.idt):
            if p is not None:
                torch.empty(p.shape, dtype=p.dtype).normal_()
