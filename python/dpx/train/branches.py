"""The branches of a run: each branch's parts (model, loss, data), which branch takes the next
step (a seeded, resumable weighted draw, deepmd-compat §10.5), and how many steps a run takes.
A single-task run has one branch, "Default"."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dpx.config import Config
from dpx.loss import Loss
from dpx.model import EnergyModel
from dpx.train.data import BranchData


@dataclass
class BranchRun:
    name: str
    model: EnergyModel
    loss: Loss
    data: BranchData


class BranchSampler:
    """Draws branch names with probabilities prob (normalized here). The stream depends only
    on (seed, rank), so a run is reproducible and a restart resumes the same stream."""

    def __init__(self, names: list[str], prob, seed: int | None, rank: int = 0):
        self.names = list(names)
        p = np.asarray(prob, dtype=np.float64)
        if len(p) != len(self.names) or not (p > 0).all():
            raise ValueError(f"branch probabilities must be positive, one per branch; got {p}")
        self.prob = p / p.sum()
        self.rng = np.random.default_rng([rank, (seed or 0) % 2 ** 32, 7])

    def draw(self) -> str:
        if len(self.names) == 1:
            return self.names[0]
        return self.names[int(self.rng.choice(len(self.names), p=self.prob))]

    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def num_steps(cfg: Config, data: dict[str, BranchData]) -> int:
    t = cfg.training
    if t.numb_steps is not None:
        return t.numb_steps
    if t.num_epoch_dict:
        return int(math.ceil(sum(_epoch_weights(cfg, data).values())))
    (only,) = data.values()
    return int(math.ceil(t.numb_epoch * only.batches_per_epoch()))


def _epoch_weights(cfg: Config, data: dict[str, BranchData]) -> dict[str, float]:
    return {k: cfg.training.num_epoch_dict[k] * data[k].batches_per_epoch() for k in data}


def weighting_rule(cfg: Config) -> str:
    """Which rule gives the branch probabilities, for the log. Without model_prob dpx follows
    DeePMD-kit's documentation (equal weights); DeePMD-kit 3.2's code weights each branch by
    its number of systems instead (dpmodel/utils/training_utils.py resolve_model_prob)."""
    t = cfg.training
    if t.num_epoch_dict:
        return "training/num_epoch_dict (epochs x batches per epoch)"
    if t.model_prob:
        return "training/model_prob"
    return ("equal weights, as training/model_prob is not given (DeePMD-kit 3.2 weights each "
            "branch by its number of systems instead; give model_prob to choose)")


def probabilities(cfg: Config, data: dict[str, BranchData]) -> np.ndarray:
    """model_prob normalized; num_epoch_dict -> epochs x batches per epoch; else equal."""
    names = list(cfg.branches)
    t = cfg.training
    if t.num_epoch_dict:
        w = _epoch_weights(cfg, data)
    elif t.model_prob:
        missing = [k for k in names if k not in t.model_prob]
        if missing:
            raise ValueError(f"training/model_prob: no weight for branch(es) {missing}; give "
                             f"every branch a weight or drop model_prob for equal weights")
        w = t.model_prob
    else:
        w = {k: 1.0 for k in names}
    p = np.array([w[k] for k in names], dtype=np.float64)
    return p / p.sum()
