"""Descriptors: the interface (base.Descriptor), the machinery of the se_e2_* family
(base.EnvMatBlock) and one module per descriptor type. REGISTRY maps each config class of
dpx.config.descriptor to its module; build() makes the one an input names."""
from __future__ import annotations

from dpx.config import SeAConfig
from dpx.model.backend import ModelOptions
from dpx.model.descriptor.base import Descriptor, EnvMatBlock
from dpx.model.descriptor.se_a import DescrptSeA

REGISTRY: dict[type, type[Descriptor]] = {
    SeAConfig: DescrptSeA,
}


def build(cfg, ntypes: int, options: ModelOptions) -> Descriptor:
    return REGISTRY[type(cfg)](cfg, ntypes, options)


__all__ = ["REGISTRY", "Descriptor", "DescrptSeA", "EnvMatBlock", "build"]
