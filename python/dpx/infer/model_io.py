"""Models out of checkpoints (dpx's or DeePMD-kit's, single or multi-task): the branch's
EnergyModel rebuilt from _extra_state.model_params and its weights loaded."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.model.energy import EnergyModel
from dpx.train import checkpoint

log = logging.getLogger(__name__)

# keys DeePMD-kit's normalizer writes into model_params that do not change an se_e2_a energy model
_IGNORED = {"descriptor": {"ntypes", "type_map", "spin", "stripped_type_embedding",
                           "tebd_input_mode", "use_econf_tebd", "use_tebd_bias", "type_one_side_"},
            "fitting_net": {"ntypes", "dim_descrpt", "mixed_types", "layer_name", "var_name",
                            "default_fparam", "dim_out", "exclude_types", "type_map",
                            "remove_vaccum_contribution"},
            "model": {"srtab_add_bias", "spin", "use_srtab", "model_branch_alias",
                      "smin_alpha", "sw_rmin", "sw_rmax", "compress", "hessian_mode",
                      "data_bias_nsample", "pair_exclude_types_", "enable_hessian"}}


def branches_of(params: dict) -> dict[str, dict]:
    return params["model_dict"] if "model_dict" in params else {"Default": params}


def model_config(params: dict, where: str) -> ModelConfig:
    """ModelConfig from stored model_params, tolerating the bookkeeping keys DeePMD-kit adds."""
    p = {k: v for k, v in params.items() if k not in _IGNORED["model"]}
    for part in ("descriptor", "fitting_net"):
        if isinstance(p.get(part), dict):
            p[part] = {k: v for k, v in p[part].items() if k not in _IGNORED[part]}
    return parse(ModelConfig, p, where)


def select_head(params: dict, head: str | None, path) -> str:
    heads = list(branches_of(params))
    if "model_dict" in params:
        if head is None:
            raise ValueError(f"{path} is a multi-task checkpoint: choose a branch with --head "
                             f"({', '.join(heads)})")
        if head not in heads:
            raise ValueError(f"{path} has no branch '{head}' (branches: {', '.join(heads)})")
        return head
    if head not in (None, "Default"):
        raise ValueError(f"{path} is a single-task checkpoint; it has no branch '{head}'")
    return "Default"


class FrozenModel:
    """A frozen (TorchScript .pth) model, dpx's or DeePMD-kit's, called like EnergyModel."""

    def __init__(self, module):
        self.module = module
        self.type_map = list(module.get_type_map())

    def __call__(self, coord, atype, box=None):
        return self.module(coord, atype, box)


def is_frozen(path) -> bool:
    """A frozen (TorchScript) file, told by its suffix as DeePMD-kit tells it."""
    return Path(path).suffix == ".pth"


def load_frozen(path) -> FrozenModel:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frozen model {path} does not exist")
    try:
        module = torch.jit.load(str(path), map_location="cpu",
                                _extra_files={"data_modifier.pth": ""})
    except RuntimeError as e:
        raise ValueError(f"{path} is not a loadable TorchScript model: {e}") from None
    return FrozenModel(module.eval())


def load_model(path, head: str | None = None) -> tuple[EnergyModel | FrozenModel, dict]:
    """(model in eval mode, the checkpoint's extra state) of branch `head`; a frozen .pth
    file gives (FrozenModel, {}) and has no branches."""
    if is_frozen(path):
        if head not in (None, "Default"):
            raise ValueError(f"{path} is a frozen model; it has no branch '{head}'")
        return load_frozen(path), {}
    state = checkpoint.load(path)
    sd = state["model"]
    extra = sd.get("_extra_state", {})
    params = extra.get("model_params")
    if params is None:
        raise ValueError(f"{path}: the checkpoint has no _extra_state.model_params")
    key = select_head(params, head, path)
    model = EnergyModel(model_config(branches_of(params)[key], f"{path}:model_params"))
    prefix = f"model.{key}."
    weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing:
        raise ValueError(f"{path}: branch {key} lacks tensors {missing[:5]}...")
    if unexpected:
        log.debug("ignored tensors in %s: %s", path, unexpected)
    model.eval()
    return model, extra


def evaluate(model: EnergyModel, coord, atype, box, batch: int = 8) -> dict:
    """energy [nf], force [nf, nloc, 3], virial [nf, 9], atom_energy [nf, nloc] as float64
    numpy arrays, frames evaluated `batch` at a time."""
    out = {"energy": [], "force": [], "virial": [], "atom_energy": []}
    at = torch.as_tensor(atype, dtype=torch.long)
    for lo in range(0, len(coord), batch):
        c = torch.as_tensor(coord[lo:lo + batch])
        b = None if box is None else torch.as_tensor(box[lo:lo + batch])
        res = model(c, at.expand(c.shape[0], -1), b)
        out["energy"].append(res["energy"].detach().reshape(-1))
        out["force"].append(res["force"].detach())
        out["virial"].append(res["virial"].detach())
        out["atom_energy"].append(res["atom_energy"].detach().squeeze(-1))
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}
