"""What a loss is to the trainer: called as loss(predictions, labels, lr) -> (scalar, {display
key: value}) and naming its lcurve columns (display_keys). A loss class names its config
class (CONFIG, from dpx.config.input) and so registers itself (dpx.plugin)."""
from __future__ import annotations

from dpx.plugin import Registered


class Loss(Registered):
    REGISTRY = {}

    def __call__(self, pred: dict, label: dict, lr: float):
        raise NotImplementedError

    def display_keys(self) -> list[str]:
        raise NotImplementedError

    def weighted_labels(self, where: str) -> dict[str, str]:
        """{label: the keys under `where` (loss or loss_dict/<branch>) that weight it} for
        each label this loss uses with a non-zero weight."""
        raise NotImplementedError
