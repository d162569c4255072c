"""Losses by `loss/type`: the interface (base.Loss) and one module per loss type; each class
registers itself by naming its config class."""
from __future__ import annotations

from dpx.loss.base import Loss
from dpx.loss.ener import EnergyLoss


def build(cfg, start_lr: float) -> Loss:
    return Loss.build(cfg, start_lr)


__all__ = ["EnergyLoss", "Loss", "build"]
