"""Which branch takes the next step: a seeded, resumable weighted draw (deepmd-compat §10.5)."""
from __future__ import annotations

import numpy as np


class TaskSampler:
    """Draws branch keys with probabilities prob (normalized here). The stream depends only on
    (seed, rank), so a run is reproducible and a restart resumes the same stream."""

    def __init__(self, keys: list[str], prob, seed: int | None, rank: int = 0):
        self.keys = list(keys)
        p = np.asarray(prob, dtype=np.float64)
        if len(p) != len(self.keys) or not (p > 0).all():
            raise ValueError(f"task probabilities must be positive, one per branch; got {p}")
        self.prob = p / p.sum()
        self.rng = np.random.default_rng([rank, (seed or 0) % 2 ** 32, 7])

    def draw(self) -> str:
        if len(self.keys) == 1:
            return self.keys[0]
        return self.keys[int(self.rng.choice(len(self.keys), p=self.prob))]

    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state
