"""Models out of files: a checkpoint branch (dpx's or DeePMD-kit's, rebuilt from its stored
model parameters, weights loaded) or a frozen TorchScript file (dpx's or DeePMD-kit's)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from dpx.io import checkpoint, params
from dpx.model.energy import EnergyModel
from dpx.ops import deepmd as deepmd_ops

log = logging.getLogger(__name__)


class FrozenModel:
    """A frozen (TorchScript .pth) model, dpx's or DeePMD-kit's, called like EnergyModel."""

    def __init__(self, module):
        self.module = module
        self.type_map = list(module.get_type_map())

    def __call__(self, coord, atype, box=None, fparam=None, aparam=None,
                 do_atomic_virial: bool = False):
        return self.module(coord, atype, box, fparam, aparam, do_atomic_virial=do_atomic_virial)

    def get_dim_fparam(self) -> int:
        return int(self.module.get_dim_fparam())

    def get_dim_aparam(self) -> int:
        return int(self.module.get_dim_aparam())

    def has_default_fparam(self) -> bool:
        # DeePMD-kit's files before 3.1 lack the method
        return hasattr(self.module, "has_default_fparam") and bool(
            self.module.has_default_fparam())

    def params(self) -> dict:
        """The model section it was frozen from (model_def_script), {} if it has none."""
        script = self.module.get_model_def_script() if hasattr(
            self.module, "get_model_def_script") else ""
        return json.loads(script) if script else {}


def is_frozen(path) -> bool:
    """A frozen (TorchScript) file, told by its suffix as DeePMD-kit tells it."""
    return Path(path).suffix == ".pth"


def load_frozen(path) -> FrozenModel:
    """A frozen file, dpx's or DeePMD-kit's (whose files name DeePMD-kit's custom ops: see
    dpx.ops.deepmd), compressed se_e2_a / se_e2_r ones included."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frozen model {path} does not exist")

    def load():
        return torch.jit.load(str(path), map_location="cpu",
                              _extra_files={"data_modifier.pth": ""})
    try:
        try:
            module = load()
        except RuntimeError as e:
            if "Unknown builtin op: deepmd::" not in str(e):
                raise
            deepmd_ops.ensure()
            module = load()
    except RuntimeError as e:
        raise ValueError(f"{path} is not a loadable TorchScript model: "
                         f"{str(e).strip().splitlines()[0]}") from None
    kind = deepmd_ops.unsupported_compression(module) if deepmd_ops.STUBBED else None
    if kind is not None:
        raise ValueError(f"{path} is a compressed DeePMD-kit model (`dp compress`) of a "
                         f"descriptor ({kind}) whose tabulated embedding nets need DeePMD-kit's "
                         f"op library, which is not installed here. Test the frozen file from "
                         f"before compression or its checkpoint with dpx, or this file with "
                         f"`dp --pt test`")
    return FrozenModel(module.eval())


def model_from_params(section: dict, tensors: dict, path, what: str = "") -> EnergyModel:
    """The eager model (eval mode) of a stored model section and its tensors: a checkpoint
    branch's, or a frozen file's state dict (dpx's or DeePMD-kit's: the keys are the same)."""
    model = EnergyModel(params.model_config(section, f"{path}:model_params"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing:
        raise ValueError(f"{path}: {what}lacks tensors {missing[:5]}...")
    if unexpected:
        log.debug("ignored tensors in %s: %s", path, unexpected)
    return model.eval()


def model_from_state(state: dict, branch: str | None, path) -> tuple[EnergyModel, str]:
    """(model in eval mode, branch name) of one branch of a loaded checkpoint dict."""
    stored = params.model_params(state, path)
    key = params.select_branch(stored, branch, path)
    model = model_from_params(params.branches(stored)[key], params.branch_tensors(state, key),
                              path, f"branch {key} ")
    return model, key


def load_model(path, branch: str | None = None) -> tuple[EnergyModel | FrozenModel, dict]:
    """(model in eval mode, the checkpoint's stored model parameters) of branch `branch`; a
    frozen .pth file gives (FrozenModel, {}) and has no branches."""
    if is_frozen(path):
        if branch not in (None, params.DEFAULT):
            raise ValueError(f"{path} is a frozen model; it has no branch '{branch}'")
        return load_frozen(path), {}
    state = checkpoint.load(path)
    model, _ = model_from_state(state, branch, path)
    return model, params.model_params(state, path)
