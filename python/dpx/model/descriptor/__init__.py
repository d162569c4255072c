"""Descriptors: the interface (base.Descriptor), the environment-matrix machinery they share
(base.EnvMatBlock; base.TypedEnvMatBlock for the se_e2_* family's per-type nets) and one
module per descriptor type. Each descriptor class names its config class (CONFIG, from
dpx.config.descriptor) and so registers itself (dpx.plugin); importing its module here is what
makes it available."""
from __future__ import annotations

from dpx.model.backend import ModelOptions
from dpx.model.descriptor.base import Descriptor, EnvMatBlock, TypedEnvMatBlock
from dpx.model.descriptor.dpa1 import DescrptDPA1, DescrptSeAttenV2
from dpx.model.descriptor.se_a import DescrptSeA
from dpx.model.descriptor.se_r import DescrptSeR


def build(cfg, ntypes: int, options: ModelOptions) -> Descriptor:
    return Descriptor.build(cfg, ntypes, options)


__all__ = ["DescrptDPA1", "DescrptSeA", "DescrptSeAttenV2", "DescrptSeR", "Descriptor",
           "EnvMatBlock", "TypedEnvMatBlock", "build"]
