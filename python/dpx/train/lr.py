"""Learning-rate schedules, as DeePMD-kit 3.2.0 defines them (deepmd-compat §8): a linear
warmup from warmup_start_factor * start_lr (warmup_steps, or warmup_ratio of the run), then
the decay of `learning_rate/type` over the remaining T steps (t counts from the warmup's end):

- exp: start_lr * decay_rate ** (t // decay_steps) (t / decay_steps with smooth), never below
  stop_lr; decay_rate, when not given, brings start_lr to stop_lr over T;
- cosine: stop_lr + (start_lr - stop_lr) (1 + cos(pi t / T)) / 2, stop_lr from T on;
- wsd (warmup, stable, decay): start_lr for T - D steps, then to stop_lr over the last
  D = max(1, min(int(decay_phase_ratio * num_steps), T)) steps by decay_type
  (inverse_linear: 1 / (tau / stop_lr + (1 - tau) / start_lr), cosine, linear), tau the
  fraction of the decay phase done.
"""
from __future__ import annotations

import math

from dpx.config import LearningRateConfig


class LearningRate:
    def __init__(self, cfg: LearningRateConfig, num_steps: int):
        self.cfg = cfg
        self.start_lr, self.stop_lr = cfg.start_lr, cfg.stop_lr
        self.warmup = cfg.warmup_steps or (int(cfg.warmup_ratio * num_steps)
                                           if cfg.warmup_ratio else 0)
        self.warmup_start = cfg.warmup_start_factor * cfg.start_lr
        self.num_steps = num_steps
        if self.warmup and self.warmup >= max(num_steps, 1):
            # DeePMD-kit's rule; the decay would have T <= 0 steps (a division by zero)
            key = "warmup_steps" if cfg.warmup_steps else "warmup_ratio"
            raise ValueError(f"learning_rate/{key}: gives {self.warmup} warmup steps, not "
                             f"fewer than the run's {num_steps} steps")
        self.decay = num_steps - self.warmup  # T
        if cfg.type == "exp":
            self._init_exp()
        elif cfg.type == "wsd":
            self.decay_phase = max(1, min(int(cfg.decay_phase_ratio * num_steps), self.decay))
            self.stable = self.decay - self.decay_phase

    def _init_exp(self) -> None:
        cfg, decay = self.cfg, self.decay
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
        if self.cfg.type == "cosine":
            return self._cosine(t)
        if self.cfg.type == "wsd":
            return self._wsd(t)
        power = t / self.decay_steps if self.cfg.smooth else t // self.decay_steps
        return max(self.start_lr * self.decay_rate ** power, self.stop_lr)

    def _cosine(self, t: int) -> float:
        if self.decay == 0:
            return self.start_lr
        if t >= self.decay:
            return self.stop_lr
        floor = self.stop_lr / self.start_lr
        return self.start_lr * (floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * t
                                                                             / self.decay)))

    def _wsd(self, t: int) -> float:
        if t >= self.decay:
            return self.stop_lr
        if t < self.stable:
            return self.start_lr
        tau = min(max((t - self.stable) / self.decay_phase, 0.0), 1.0)
        start, stop = self.start_lr, self.stop_lr
        rule = self.cfg.decay_type
        if rule == "inverse_linear":
            return 1.0 / (tau / stop + (1.0 - tau) / start)
        if rule == "cosine":
            return stop + (start - stop) * 0.5 * (1.0 + math.cos(math.pi * tau))
        return start + (stop - start) * tau
