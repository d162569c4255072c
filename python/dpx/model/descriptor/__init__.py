"""Descriptors: the interface (base.Descriptor), the machinery of the se_e2_* family
(base.EnvMatBlock) and one module per descriptor type, each naming its config class (CONFIG,
from dpx.config.descriptor). REGISTRY maps config classes to modules; build() makes the one an
input names."""
from __future__ import annotations

from dpx.model.backend import ModelOptions
from dpx.model.descriptor.base import Descriptor, EnvMatBlock
from dpx.model.descriptor.se_a import DescrptSeA
from dpx.model.descriptor.se_r import DescrptSeR

REGISTRY: dict[type, type[Descriptor]] = {cls.CONFIG: cls for cls in (DescrptSeA, DescrptSeR)}


def build(cfg, ntypes: int, options: ModelOptions) -> Descriptor:
    return REGISTRY[type(cfg)](cfg, ntypes, options)


__all__ = ["REGISTRY", "Descriptor", "EnvMatBlock", "build"]
