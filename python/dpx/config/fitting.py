"""Fitting sections of the input, chosen by `type`; deepmd-compat §5.1."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dpx.config.descriptor import check_activation, check_precision, positive_ints
from dpx.config.schema import fail


@dataclass
class EnergyFittingConfig:
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
    SHAPE_KEYS = ("type", "neuron", "resnet_dt")
    FUNCTION_KEYS = ("activation_function",)

    def check(self, path):
        positive_ints(f"{path}/neuron", self.neuron)
        check_activation(f"{path}/activation_function", self.activation_function)
        check_precision(f"{path}/precision", self.precision)
        for key in ("numb_fparam", "numb_aparam", "dim_case_embd"):
            if getattr(self, key) != 0:
                fail(f"{path}/{key}", "is not supported by dpx yet (must be 0)")
        if isinstance(self.trainable, list):
            self.trainable = all(self.trainable)


# the fitting types of the input, by `type` (the first is the default)
FITTINGS = (EnergyFittingConfig,)
