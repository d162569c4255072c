"""Losses. A loss is called as loss(predictions, labels, lr) -> (scalar, {display key: value})
and names its lcurve columns (display_keys); REGISTRY maps a `loss/type` to its class."""
from __future__ import annotations

from typing import Protocol

from dpx.loss.ener import EnergyLoss


class Loss(Protocol):
    def __call__(self, pred: dict, label: dict, lr: float): ...

    def display_keys(self) -> list[str]: ...


REGISTRY = {"ener": EnergyLoss}


def build(cfg, start_lr: float) -> Loss:
    return REGISTRY[cfg.type](cfg, start_lr)


__all__ = ["REGISTRY", "EnergyLoss", "Loss", "build"]
