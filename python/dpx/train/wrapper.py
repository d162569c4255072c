"""All branches of a run in one module, with DeePMD-kit's state-dict layout (deepmd-compat §11):
keys `model.<branch>.<path>` plus `_extra_state = {model_params, train_infos}`.

Shared parts are the same module objects in every branch that links them (§10.3), so one
optimizer sees each shared parameter once and a state dict carries it under every branch.
"""
from __future__ import annotations

import torch
from torch import nn

from dpx.config import SharedLink


class ModelWrapper(nn.Module):
    def __init__(self, models: dict[str, nn.Module], model_params: dict):
        super().__init__()
        self.model = nn.ModuleDict(models)
        self.model_params = model_params
        self.train_infos = {"lr": 0.0, "step": 0}

    def get_extra_state(self):
        return {"model_params": self.model_params, "train_infos": dict(self.train_infos)}

    def set_extra_state(self, state):
        self.train_infos = dict(state.get("train_infos", self.train_infos))

    def share(self, links: list[SharedLink]) -> None:
        """Alias the shared parts: the first branch that links a part (lowest level first)
        owns it; later branches take the owner's modules for what their level shares."""
        by_part: dict[str, list[SharedLink]] = {}
        for link in links:
            by_part.setdefault(link.part, []).append(link)
        for group in by_part.values():
            group = sorted(group, key=lambda x: x.level)
            base = self.model[group[0].branch].atomic_model
            for link in group[1:]:
                target = self.model[link.branch].atomic_model
                if link.kind == "descriptor":
                    share_descriptor(base, target, link)
                elif link.kind == "fitting_net":
                    share_fitting(base, target, link)


def share_descriptor(base, target, link: SharedLink) -> None:
    """Level 0: the whole descriptor (nets, davg, dstd). Level 1: the embedding nets only;
    each branch keeps its own davg/dstd."""
    if link.level == 0:
        target.descriptor = base.descriptor
    elif link.level == 1:
        target.descriptor.sea.filter_layers = base.descriptor.sea.filter_layers
    else:
        raise ValueError(f"model/model_dict/{link.branch}/descriptor: shared level "
                         f"{link.level} is not defined for se_e2_a (0: everything, "
                         f"1: embedding nets only)")


def share_fitting(base, target, link: SharedLink) -> None:
    """Level 0: every layer of every per-type net. Level 1: the hidden layers; each branch
    keeps its own output layer. out_bias lives in the atomic model and is never shared."""
    if link.level not in (0, 1):
        raise ValueError(f"model/model_dict/{link.branch}/fitting_net: shared level "
                         f"{link.level} is not defined for the energy fitting (0: all layers, "
                         f"1: hidden layers only)")
    nets_b = base.fitting_net.filter_layers.networks
    nets_t = target.fitting_net.filter_layers.networks
    for net_b, net_t in zip(nets_b, nets_t):
        last = len(net_b.layers) - (1 if link.level == 1 else 0)
        for k in range(last):
            net_t.layers[k] = net_b.layers[k]


def unique_parameters(module: nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters, each once (named_parameters dedupes aliases), in a stable order."""
    return [p for _, p in module.named_parameters() if p.requires_grad]
