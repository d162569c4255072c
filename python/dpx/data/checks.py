"""Does the data give what the model and the loss take: labels the loss weights, frame and
atomic parameters in the model's widths. Run once the systems are read."""
from __future__ import annotations

from dpx.data.schema import System


def check_labels(systems: list[System], weighted: dict[str, str], key: str) -> None:
    """Every system gives, in some set, each label the loss weights ({label: the loss keys
    that weight it}). A set without it is DeePMD-kit's find_<label> = 0 (that set adds no
    such term), but a system without it anywhere would train on a term that is never there
    and show nan for it: refused. A label the loss does not weight may be absent."""
    for s in systems:
        for label, prefactors in weighted.items():
            if label not in s.labels or not s.find[label].any():
                raise ValueError(f"{key}: system {s.name} has no {label}.npy in any set, and "
                                 f"{prefactors} weight it; add the file, or set those "
                                 f"prefactors to 0 to train without it")


def check_parameters(systems: list[System], numb_fparam: int, numb_aparam: int,
                     has_default_fparam: bool, key: str) -> None:
    """Every system gives the frame / atomic parameters the model takes, in its widths
    (fparam.npy [nf, numb_fparam], aparam.npy [nf, natoms * numb_aparam] in every set); a
    model with default_fparam takes systems without fparam.npy. Parameters the model does
    not take are ignored, as DeePMD-kit ignores them."""
    for s in systems:
        for name, width in (("fparam", numb_fparam), ("aparam", numb_aparam)):
            if width == 0:
                continue
            where = f"{key}: system {s.name}"
            if name not in s.labels or not s.find[name].all():
                if name == "fparam" and has_default_fparam:
                    continue
                missing = ("has no" if name not in s.labels or not s.find[name].any()
                           else "lacks in some of its sets")
                default = " and has no default_fparam" if name == "fparam" else ""
                raise ValueError(f"{where} {missing} {name}.npy; the model takes "
                                 f"numb_{name} {width}{default}")
            got = s.labels[name].shape[-1]
            if got != width:
                per = "per atom" if name == "aparam" else "per frame"
                raise ValueError(f"{where}: {name}.npy has {got} values {per}, the model "
                                 f"takes numb_{name} {width}")
