"""Input file -> Config. A single-task input becomes one branch named "Default"; a multi-task
input (model/model_dict) is expanded first: string references into model/shared_dict are
replaced by copies of the shared part and remembered as SharedLinks (deepmd-compat §10.2).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from dpx.config.input import (
    BranchDataConfig,
    LearningRateConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
)
from dpx.config.schema import ConfigError, fail, parse, parse_kind
from dpx.config.text import read_input

SHAREABLE = ("type_map", "descriptor", "fitting_net")
TOP_KEYS = ("model", "learning_rate", "loss", "loss_dict", "training", "optimizer")


@dataclass
class SharedLink:
    """Branch `branch` uses shared part `part` (a `kind` in SHAREABLE) at `level`."""
    part: str
    kind: str
    branch: str
    level: int


@dataclass
class Branch:
    key: str
    model: ModelConfig
    loss: LossConfig
    data: BranchDataConfig


@dataclass
class Config:
    branches: dict[str, Branch]
    learning_rate: LearningRateConfig
    optimizer: OptimizerConfig
    training: TrainingConfig
    multi_task: bool
    links: list[SharedLink] = field(default_factory=list)
    model_params: dict = field(default_factory=dict)   # the model section as stored in checkpoints
    base_dir: Path = Path(".")


def load_input(path: str | Path) -> Config:
    path = Path(path)
    data = read_input(path)
    try:
        return parse_input(data, base_dir=path.resolve().parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_input(data: dict, base_dir: Path = Path(".")) -> Config:
    if not isinstance(data, dict):
        fail("input", "the input must be a JSON object")
    for key in data:
        if not key.startswith("_") and key not in TOP_KEYS:
            fail(key, f"unknown key (known: {', '.join(TOP_KEYS)})")
    if "model" not in data:
        fail("model", "missing required section")
    lr = parse(LearningRateConfig, data.get("learning_rate", {}), "learning_rate")
    opt = parse(OptimizerConfig, data.get("optimizer", {}), "optimizer")
    training = parse(TrainingConfig, data.get("training", {}), "training")
    model = data["model"]
    if isinstance(model, dict) and "model_dict" in model:
        cfg = _multi_task(data, model, training)
    else:
        cfg = _single_task(data, model, training)
    cfg.learning_rate, cfg.optimizer, cfg.base_dir = lr, opt, base_dir
    if training.numb_steps is None and training.numb_epoch is None and not training.num_epoch_dict:
        fail("training/numb_steps", "missing: give numb_steps (or numb_epoch)")
    return cfg


def _single_task(data, model, training) -> Config:
    if "loss_dict" in data:
        fail("loss_dict", "is for multi-task inputs (model/model_dict); use 'loss' here")
    for key in ("data_dict", "model_prob", "num_epoch_dict"):
        if getattr(training, key) is not None:
            fail(f"training/{key}", "is for multi-task inputs (model/model_dict)")
    if training.training_data is None:
        fail("training/training_data", "missing required section")
    branch = Branch("Default", parse(ModelConfig, model, "model"),
                    parse_kind(LossConfig, data.get("loss", {}), "loss"),
                    BranchDataConfig(training.training_data, training.validation_data,
                               training.stat_file))
    return Config({"Default": branch}, None, None, training, multi_task=False,
                  model_params=copy.deepcopy(model))


def _multi_task(data, model, training) -> Config:
    if "loss" in data:
        fail("loss", "a multi-task input gives one loss per branch in loss_dict")
    if training.training_data is not None:
        fail("training/training_data", "a multi-task input gives data per branch in "
                                       "training/data_dict")
    expanded, links = expand_shared(model)
    losses = data.get("loss_dict")
    if not isinstance(losses, dict):
        fail("loss_dict", "missing: a multi-task input needs one loss per branch of model/model_dict")
    data_dict = training.data_dict
    if data_dict is None:
        fail("training/data_dict", "missing: a multi-task input needs data per branch")
    keys = list(expanded)
    for name, given in (("loss_dict", losses), ("training/data_dict", data_dict)):
        for k in keys:
            if k not in given:
                fail(f"{name}", f"has no entry for branch '{k}' of model/model_dict")
        for k in given:
            if not k.startswith("_") and k not in keys:
                fail(f"{name}/{k}", f"names no branch of model/model_dict ({', '.join(keys)})")
    _check_weights(training, keys)
    branches = {k: Branch(k, parse(ModelConfig, expanded[k], f"model/model_dict/{k}"),
                          parse_kind(LossConfig, losses[k], f"loss_dict/{k}"), data_dict[k])
                for k in keys}
    _check_aliases(branches)
    _check_case_embd(branches)
    type_maps = {tuple(b.model.type_map) for b in branches.values()}
    if len(type_maps) != 1:
        fail("model/model_dict", "all branches must use one type_map (share it through "
                                 "model/shared_dict)")
    params = {"shared_dict": copy.deepcopy(model.get("shared_dict", {})), "model_dict": expanded}
    return Config(branches, None, None, training, multi_task=True, links=links,
                  model_params=params)


def _check_aliases(branches: dict) -> None:
    """model_branch_alias names are unique and name no other branch (they select branches in
    --head / --model-branch)."""
    seen = {k: k for k in branches}
    for key, branch in branches.items():
        for alias in branch.model.model_branch_alias:
            if alias in seen and seen[alias] != key:
                fail(f"model/model_dict/{key}/model_branch_alias", f"'{alias}' already names "
                                                                   f"branch '{seen[alias]}'")
            seen[alias] = key


def _check_case_embd(branches: dict) -> None:
    """fitting_net/dim_case_embd: one width for all branches, room for a one-hot per branch
    (each branch's case is its key's place in sorted order, as in DeePMD-kit)."""
    dims = {k: b.model.fitting_net.dim_case_embd for k, b in branches.items()}
    first = next(iter(dims))
    for key, dim in dims.items():
        where = f"model/model_dict/{key}/fitting_net/dim_case_embd"
        if dim != dims[first]:
            fail(where, f"is {dim}, branch '{first}' has {dims[first]}: all branches take "
                        f"one width of case embedding")
        if 0 < dim < len(dims):
            fail(where, f"is {dim}, fewer than the {len(dims)} branches: each branch's case "
                        f"is a one-hot vector of this length (set it to {len(dims)})")


def _check_weights(training, keys):
    for name in ("model_prob", "num_epoch_dict"):
        weights = getattr(training, name)
        if weights is None:
            continue
        if name == "num_epoch_dict" and (training.model_prob is not None or training.numb_steps):
            fail(f"training/{name}", "excludes model_prob and numb_steps")
        for k, w in weights.items():
            if k not in keys:
                fail(f"training/{name}/{k}", f"names no branch of model/model_dict "
                                             f"({', '.join(keys)})")
            if not w > 0:
                fail(f"training/{name}/{k}", f"weights must be > 0, got {w}")


def expand_shared(model: dict) -> tuple[dict, list[SharedLink]]:
    """Branches with shared references replaced by copies (deepmd-compat §10.2)."""
    shared = model.get("shared_dict", {})
    branches = model["model_dict"]
    if not isinstance(branches, dict) or not branches:
        fail("model/model_dict", "must be a non-empty object of branches")
    if not isinstance(shared, dict):
        fail("model/shared_dict", "must be an object")
    common = {k: v for k, v in model.items() if k not in ("shared_dict", "model_dict")}
    out, links = {}, []
    for key, branch in branches.items():
        if key.startswith("_"):
            continue
        if key == "RANDOM":
            fail("model/model_dict/RANDOM", "'RANDOM' is reserved (finetune) and cannot name a branch")
        if not isinstance(branch, dict):
            fail(f"model/model_dict/{key}", "must be an object")
        branch = copy.deepcopy(branch)
        for k, v in common.items():
            branch.setdefault(k, copy.deepcopy(v))
        for kind in SHAREABLE:
            ref = branch.get(kind)
            if isinstance(ref, str):
                part, level = _reference(ref, f"model/model_dict/{key}/{kind}", shared)
                branch[kind] = copy.deepcopy(shared[part])
                links.append(SharedLink(part, kind, key, level))
        out[key] = branch
    return out, links


def _reference(ref: str, path: str, shared: dict) -> tuple[str, int]:
    part, _, level = ref.partition(":")
    if part not in shared:
        fail(path, f"'{part}' is not in model/shared_dict (there: "
                   f"{', '.join(k for k in shared if not k.startswith('_')) or 'nothing'})")
    if level and not level.lstrip("-").isdigit():
        fail(path, f"the shared level after ':' must be an integer, got '{level}'")
    return part, int(level or 0)
