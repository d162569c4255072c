"""Descriptor sections of the input, one dataclass per descriptor type, chosen by `type`.
Defaults are those DeePMD-kit's argument checker applies to `dp train` (deepmd-compat §3.1).

A new descriptor adds its class here (TYPES: the `type` values it answers to); defining a
subclass of DescriptorConfig registers it in DESCRIPTORS, the choices of model/descriptor/type
(in the order defined: the first is the default). Its model module is registered in
dpx.model.descriptor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dpx.config.schema import fail

ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "gelu_tf", "silu",
               "linear", "none")
PRECISIONS = ("default", "float64", "float32")


def positive_ints(path, xs, what="neuron"):
    if not xs or any(x <= 0 for x in xs):
        fail(path, f"{what} must be a non-empty list of positive integers, got {xs}")


def check_activation(path, name):
    base = name.lower().split(":")[0]
    if base not in ACTIVATIONS and not base.startswith(("silut", "custom_silu")):
        fail(path, f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)}, silut[:thr])")


def check_precision(path, p):
    if p not in PRECISIONS:
        fail(path, f"precision must be one of {PRECISIONS}, got '{p}'")


DESCRIPTORS: list[type] = []


@dataclass
class DescriptorConfig:
    """What every two-body embedding descriptor (se_e2_*) takes; each subclass sets `type`."""
    type: str = ""
    sel: Union[list[int], str] = "auto"
    rcut: float = 6.0
    rcut_smth: float = 0.5
    neuron: list[int] = field(default_factory=lambda: [10, 20, 40])
    activation_function: str = "tanh"
    resnet_dt: bool = False
    precision: str = "default"
    trainable: bool = True
    seed: int | None = None
    exclude_types: list[list[int]] = field(default_factory=list)
    env_protection: float = 0.0
    set_davg_zero: bool = False
    # keys that fix the shapes of the weights (a finetune must keep them) and keys that change
    # the function but not the shapes (a finetune may change them, with a warning)
    SHAPE_KEYS = ("type", "neuron", "resnet_dt")
    FUNCTION_KEYS = ("rcut", "rcut_smth", "activation_function", "env_protection",
                     "set_davg_zero")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        DESCRIPTORS.append(cls)

    def check(self, path):
        self.type = self.TYPES[0]
        if not self.rcut > 0:
            fail(f"{path}/rcut", f"must be > 0, got {self.rcut}")
        if not 0 <= self.rcut_smth < self.rcut:
            fail(f"{path}/rcut_smth", f"must satisfy 0 <= rcut_smth < rcut = {self.rcut}, "
                                      f"got {self.rcut_smth}")
        positive_ints(f"{path}/neuron", self.neuron)
        if isinstance(self.sel, str) and not (self.sel == "auto" or self.sel.startswith("auto:")):
            fail(f"{path}/sel", f"must be a list of integers, 'auto' or 'auto:factor', "
                                f"got '{self.sel}'")
        if isinstance(self.sel, list) and any(s < 0 for s in self.sel):
            fail(f"{path}/sel", f"entries must be >= 0, got {self.sel}")
        for i, pair in enumerate(self.exclude_types):
            if len(pair) != 2:
                fail(f"{path}/exclude_types/{i}", f"must be a pair of types, got {pair}")
        if self.env_protection < 0:
            fail(f"{path}/env_protection", f"must be >= 0, got {self.env_protection}")
        check_activation(f"{path}/activation_function", self.activation_function)
        check_precision(f"{path}/precision", self.precision)


@dataclass
class SeAConfig(DescriptorConfig):
    """se_e2_a (DeepPot-SE): radial and angular information; deepmd-compat §3.1."""
    type: str = "se_e2_a"
    axis_neuron: int = 4
    type_one_side: bool = False
    TYPES = ("se_e2_a", "se_a")
    ALIASES = {"n_axis_neuron": "axis_neuron"}
    SHAPE_KEYS = DescriptorConfig.SHAPE_KEYS + ("axis_neuron", "type_one_side")

    def check(self, path):
        super().check(path)
        if not 1 <= self.axis_neuron <= self.neuron[-1]:
            fail(f"{path}/axis_neuron", f"must lie in [1, neuron[-1] = {self.neuron[-1]}], "
                                        f"got {self.axis_neuron}")


@dataclass
class SeRConfig(DescriptorConfig):
    """se_e2_r: the radial part of se_e2_a only, one embedding net per neighbor type.
    `type_one_side` is accepted as DeePMD-kit accepts it; its PyTorch backend, whose numbers
    dpx matches, builds one net per neighbor type whatever the key says."""
    type: str = "se_e2_r"
    type_one_side: bool = False
    TYPES = ("se_e2_r", "se_r")
