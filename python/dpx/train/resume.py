"""Starting from a checkpoint of one's own: --restart (continue the run) and --init-model
(start a new run from its weights). Both are checked against the input before any data is
read, and both load strictly: what cannot be loaded exactly is an error that names the key.

- --restart continues the same run: the same branches, type map (in the same order: Adam's
  state is per tensor) and model sections (every key but `seed`; `sel` may be "auto").
- --init-model starts from the weights and statistics of the checkpoint's branch of the same
  name (a single-task input from a multi-task checkpoint names one with --model-branch). The
  type map must hold the same elements; a reordered one is mapped by element, as finetune
  maps it. Keys that fix the weights' shapes or change their function must match.
"""
from __future__ import annotations

import copy
import dataclasses

from dpx.config import Config
from dpx.io import params
from dpx.train import finetune as ft


def _where(cfg: Config, name: str) -> str:
    return "model" if not cfg.multi_task else f"model/model_dict/{name}"


def _same_branches(cfg: Config, stored: dict, path, option: str) -> None:
    if params.is_multi_task(stored) != cfg.multi_task:
        kind = "multi-task" if params.is_multi_task(stored) else "single-task"
        raise ValueError(f"{option} {path}: a {kind} checkpoint cannot continue a "
                         f"{'multi-task' if cfg.multi_task else 'single-task'} input"
                         + (" (choose its branch with --model-branch)"
                            if option == "--init-model" and kind == "multi-task" else "")
                         + ("; start the branches from it with --finetune"
                            if option == "--init-model" and kind == "single-task" else ""))


def check_restart(cfg: Config, state: dict, path) -> None:
    """The input continues the run of the checkpoint: same branches and model sections;
    sel is set in cfg (a resolved copy) from the checkpoint."""
    stored = params.model_params(state, path)
    _same_branches(cfg, stored, path, "--restart")
    theirs = params.branches(stored)
    if set(theirs) != set(cfg.branches):
        raise ValueError(f"--restart {path}: the checkpoint's branches are {list(theirs)}, the "
                         f"input's {list(cfg.branches)}; a restart continues the same branches")
    for name, branch in cfg.branches.items():
        where = _where(cfg, name)
        src = params.model_config(theirs[name], f"{path}:model_params")
        mine = branch.model
        if isinstance(mine.descriptor.sel, str):
            mine.descriptor.sel = copy.deepcopy(src.descriptor.sel)
        _equal(f"{where}/type_map", mine.type_map, src.type_map, path)
        for part in ("descriptor", "fitting_net"):
            a, b = dataclasses.asdict(getattr(mine, part)), dataclasses.asdict(getattr(src, part))
            for key in a:
                if key != "seed":
                    _equal(f"{where}/{part}/{key}", a[key], b.get(key), path)
        for key in ("pair_exclude_types", "atom_exclude_types"):
            _equal(f"{where}/{key}", getattr(mine, key), getattr(src, key), path)


def _equal(key: str, mine, theirs, path) -> None:
    if mine != theirs:
        raise ValueError(f"{key}: {mine} differs from the checkpoint's {theirs} ({path}); "
                         f"--restart continues a run with the same model (start a new run "
                         f"from it with --init-model or --finetune)")


def init_model_rules(cfg: Config, state: dict, path, branch: str | None) -> dict[str, ft.Rule]:
    """Which checkpoint branch feeds each input branch, its type index map, sel set in cfg
    (a resolved copy); every mismatch an error naming the key."""
    stored = params.model_params(state, path)
    theirs = params.branches(stored)
    if not cfg.multi_task and params.is_multi_task(stored):
        if branch is None:
            raise ValueError(f"--init-model {path} is a multi-task checkpoint: choose the "
                             f"branch to start from with --model-branch ({', '.join(theirs)})")
        sources = {"Default": params.select_branch(stored, branch, path)}
    else:
        _same_branches(cfg, stored, path, "--init-model")
        if branch is not None:
            raise ValueError(f"--model-branch {branch}: a multi-task input takes each branch "
                             f"from the checkpoint's branch of the same name")
        missing = [k for k in cfg.branches if k not in theirs]
        if missing:
            raise ValueError(f"{_where(cfg, missing[0])}: --init-model {path} has no branch "
                             f"'{missing[0]}' (its branches: {', '.join(theirs)})")
        sources = {k: k for k in cfg.branches}
    rules = {}
    for name, source in sources.items():
        rule = ft.Rule(name, source)
        ft.align_branch(cfg, rule, theirs[source], path, strict=True, what="the checkpoint")
        rules[name] = rule
    return rules
