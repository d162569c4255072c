"""Fittings: the interface (base.Fitting) and one module per fitting type; each class
registers itself by naming its config class (dpx.plugin)."""
from __future__ import annotations

from dpx.model.fitting.base import Fitting
from dpx.model.fitting.ener import EnergyFittingNet


def build(cfg, ntypes: int, dim_descrpt: int, mixed_types: bool = False) -> Fitting:
    """The fitting of cfg's type on a descriptor of width dim_descrpt; mixed_types: one net
    for every type (a descriptor that encodes the type itself, as DeePMD-kit does)."""
    return Fitting.build(cfg, ntypes, dim_descrpt, mixed_types)


__all__ = ["EnergyFittingNet", "Fitting", "build"]
