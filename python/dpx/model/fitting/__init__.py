"""Fittings: the interface (base.Fitting) and one module per fitting type. REGISTRY maps each
config class of dpx.config.fitting to its module."""
from __future__ import annotations

from dpx.config import EnergyFittingConfig
from dpx.model.fitting.base import Fitting
from dpx.model.fitting.ener import EnergyFittingNet

REGISTRY: dict[type, type[Fitting]] = {
    EnergyFittingConfig: EnergyFittingNet,
}


def build(cfg, ntypes: int, dim_descrpt: int) -> Fitting:
    return REGISTRY[type(cfg)](cfg, ntypes, dim_descrpt)


__all__ = ["REGISTRY", "EnergyFittingNet", "Fitting", "build"]
