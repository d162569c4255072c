"""lcurve.out in DeePMD-kit's format (deepmd-compat §9.3) and the progress log."""
from __future__ import annotations

import logging
import math
import time

from dpx.io.checkpoint import WriteError
from dpx.progress import hms

log = logging.getLogger(__name__)


class LCurve:
    """columns: per branch (in model_dict order), per sorted loss key, val then trn (trn only
    for a branch without validation data); multi-task names carry a _<branch> suffix."""

    def __init__(self, path: str, branches: dict[str, tuple[list[str], bool]], multi_task: bool,
                 append: bool):
        self.branches, self.multi, self.path = branches, multi_task, path
        try:
            self.file = open(path, "a" if append else "w", buffering=1)
        except OSError as e:
            raise WriteError(f"cannot write {path}: {e.strerror}") from None
        self.header_written = append

    def _names(self):
        for key, (metrics, has_val) in self.branches.items():
            suffix = f"_{key}" if self.multi else ""
            for m in metrics:
                yield key, m, has_val, suffix

    def write(self, step: int, values: dict[str, dict[str, tuple[float, float]]], lr: float):
        try:
            self._write(step, values, lr)
        except OSError as e:
            raise WriteError(f"cannot write {self.path}: {e.strerror}") from None

    def _write(self, step: int, values: dict[str, dict[str, tuple[float, float]]], lr: float):
        if not self.header_written:
            head = "# {:5s}".format("step")
            for _, m, has_val, sfx in self._names():
                head += ("   %11s %11s" % (f"{m}_val{sfx}", f"{m}_trn{sfx}") if has_val
                         else "   %11s" % f"{m}_trn{sfx}")
            self.file.write(head + "   {:8s}\n".format("lr"))
            self.file.write("# If there is no available reference data, rmse_*_{val,trn} will "
                            "print nan\n")
            self.header_written = True
        line = "%7d" % step
        for key, m, has_val, _ in self._names():
            val, trn = values[key].get(m, (math.nan, math.nan))
            line += "   %11.2e %11.2e" % (val, trn) if has_val else "   %11.2e" % trn
        self.file.write(line + "   %8.1e\n" % lr)

    def close(self):
        self.file.close()


class Progress:
    """Step timing: seconds per step over the last interval, and the time left."""

    def __init__(self, start_step: int, num_steps: int):
        self.start, self.total = start_step, num_steps
        self.t0 = self.t_last = time.perf_counter()
        self.step_last = start_step

    def report(self, step: int, lr: float, counts: dict[str, int], train: dict[str, dict]):
        now = time.perf_counter()
        dt = (now - self.t_last) / max(step - self.step_last, 1)
        left = dt * (self.total - step)
        self.t_last, self.step_last = now, step
        parts = []
        for key, more in train.items():
            metrics = ", ".join(f"{k} = {v:.3e}" for k, v in sorted(more.items()))
            steps = f" ({counts[key]} steps)" if len(train) > 1 else ""
            parts.append(f"{key}{steps}: {metrics}")
        log.info("step %d/%d  lr %.2e  %.3f s/step  %s left  |  %s", step, self.total, lr, dt,
                 hms(left), " | ".join(parts))

    def total_time(self) -> float:
        return time.perf_counter() - self.t0
