"""Progress lines for long start-up stages (reading thousands of systems, the neighbor
statistics of millions of frames): silent when a stage is quick, otherwise one line every
`every` seconds with what is done and the time left at the rate so far."""
from __future__ import annotations

import logging
import time


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Ticker:
    """stage: what runs ("neighbor statistics"); total: units to do (frames, systems)."""

    def __init__(self, log: logging.Logger, stage: str, total: int, unit: str,
                 every: float = 5.0):
        self.log, self.stage, self.total, self.unit, self.every = log, stage, total, unit, every
        self.done = 0
        self.t0 = self.t_last = time.perf_counter()

    def advance(self, n: int, note: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.t_last < self.every or self.done >= self.total:
            return
        self.t_last = now
        rate = self.done / max(now - self.t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.log.info("%s: %d/%d %s%s, %s elapsed, %s left", self.stage, self.done, self.total,
                      self.unit, f" ({note})" if note else "", hms(now - self.t0),
                      hms(left) if left != float("inf") else "?")

    def iterate(self, items):
        """items, advancing one a piece as they are taken."""
        for item in items:
            yield item
            self.advance(1)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
