"""All branches of a run in one module, with DeePMD-kit's state-dict layout (deepmd-compat §11):
keys `model.<branch>.<path>` plus `_extra_state = {model_params, train_infos}`.

Shared parts are the same module objects in every branch that links them (§10.3), so one
optimizer sees each shared parameter once and a state dict carries it under every branch.
What a shared level means is the part's own business (Descriptor.shared_with,
Fitting.shared_with).
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
                try:
                    if link.kind == "descriptor":
                        target.descriptor = target.descriptor.shared_with(base.descriptor,
                                                                          link.level)
                    elif link.kind == "fitting_net":
                        target.fitting_net = target.fitting_net.shared_with(base.fitting_net,
                                                                            link.level)
                except ValueError as e:
                    raise ValueError(f"model/model_dict/{link.branch}/{link.kind}: {e}") from None


def unique_parameters(module: nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters, each once (named_parameters dedupes aliases), in a stable order."""
    return [p for _, p in module.named_parameters() if p.requires_grad]
