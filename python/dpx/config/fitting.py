"""Fitting sections of the input, chosen by `type`; deepmd-compat §5.1."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dpx.config.descriptor import check_activation, check_precision, positive_ints
from dpx.config.schema import fail
from dpx.plugin import RegisteredSection


class FittingConfig(RegisteredSection):
    """The base of the fitting sections; a subclass with TYPES is a choice of
    model/fitting_net/type (the first defined is the default)."""
    REGISTRY = {}


@dataclass
class EnergyFittingConfig(FittingConfig):
    """The energy fitting net ("ener")."""
    type: str = "ener"
    neuron: list[int] = field(default_factory=lambda: [120, 120, 120])
    activation_function: str = "tanh"
    precision: str = "default"
    resnet_dt: bool = True
    trainable: Union[bool, list[bool]] = True
    rcond: float | None = None
    seed: int | None = None
    numb_fparam: int = 0
    numb_aparam: int = 0
    dim_case_embd: int = 0
    atom_ener: list[float | None] = field(default_factory=list)
    use_aparam_as_mask: bool = False
    default_fparam: list[float] | None = None
    TYPES = ("ener",)
    ALIASES = {"n_neuron": "neuron"}
    SHAPE_KEYS = ("type", "neuron", "resnet_dt", "numb_fparam", "numb_aparam", "dim_case_embd")
    FUNCTION_KEYS = ("activation_function",)

    def check(self, path):
        positive_ints(f"{path}/neuron", self.neuron)
        check_activation(f"{path}/activation_function", self.activation_function)
        check_precision(f"{path}/precision", self.precision)
        for key in ("numb_fparam", "numb_aparam", "dim_case_embd"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                fail(f"{path}/{key}", f"must be an integer >= 0, got {getattr(self, key)!r}")
        if self.use_aparam_as_mask:
            fail(f"{path}/use_aparam_as_mask", "is not supported by dpx (must be false)")
        if self.default_fparam is not None:
            if self.numb_fparam == 0:
                fail(f"{path}/default_fparam", "is given but numb_fparam is 0")
            if len(self.default_fparam) != self.numb_fparam:
                fail(f"{path}/default_fparam", f"has {len(self.default_fparam)} values, "
                     f"numb_fparam is {self.numb_fparam}")
        if isinstance(self.trainable, list):
            self.trainable = all(self.trainable)
