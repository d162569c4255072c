"""Learning-rate schedule `exp` with warmup, exactly deepmd-compat §8."""
from __future__ import annotations

import math

from dpx.config import LearningRateConfig


class ExpDecayLR:
    def __init__(self, cfg: LearningRateConfig, num_steps: int):
        self.start_lr, self.stop_lr = cfg.start_lr, cfg.stop_lr
        self.smooth = cfg.smooth
        self.warmup = cfg.warmup_steps or (int(cfg.warmup_ratio * num_steps)
                                           if cfg.warmup_ratio else 0)
        self.warmup_start = cfg.warmup_start_factor * cfg.start_lr
        decay = num_steps - self.warmup
        self.decay_steps = cfg.decay_steps
        if cfg.decay_rate is None and self.decay_steps >= decay:
            self.decay_steps = 100 if decay // 10 > 100 else decay // 100 + 1
        if cfg.decay_rate is not None:
            self.decay_rate = cfg.decay_rate
        elif decay == 0:
            self.decay_rate = 1.0
        else:
            self.decay_rate = math.exp(math.log(max(self.stop_lr, 1e-10) / self.start_lr)
                                       / (decay / self.decay_steps))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.warmup_start + (self.start_lr - self.warmup_start) * step / self.warmup
        t = step - self.warmup
        power = t / self.decay_steps if self.smooth else t // self.decay_steps
        return max(self.start_lr * self.decay_rate ** power, self.stop_lr)
