"""The model parameters a checkpoint stores (`model._extra_state.model_params`: the input's
model section with every default filled in and sel resolved) and its branches.

A single-task checkpoint has one branch, "Default"; a multi-task one has `model_dict` with a
branch per key (and `shared_dict`). Every reader of a checkpoint goes through here.
"""
from __future__ import annotations

import dataclasses

from dpx.config import DescriptorConfig, FittingConfig, ModelConfig
from dpx.config.schema import parse

DEFAULT = "Default"

# keys DeePMD-kit's normalizer writes into model_params that do not change the model (a key
# that is a field of the section's config class is never dropped: DPA-1 has tebd_input_mode)
_IGNORED = {"descriptor": {"ntypes", "type_map", "spin", "stripped_type_embedding",
                           "tebd_input_mode", "use_econf_tebd", "use_tebd_bias", "type_one_side_"},
            "fitting_net": {"ntypes", "dim_descrpt", "mixed_types", "layer_name", "var_name",
                            "default_fparam", "dim_out", "exclude_types", "type_map",
                            "remove_vaccum_contribution"},
            "model": {"srtab_add_bias", "spin", "use_srtab", "model_branch_alias",
                      "smin_alpha", "sw_rmin", "sw_rmax", "compress", "hessian_mode",
                      "data_bias_nsample", "pair_exclude_types_", "enable_hessian"}}


def model_params(state: dict, path) -> dict:
    """The stored model parameters of a loaded checkpoint dict."""
    params = state["model"].get("_extra_state", {}).get("model_params")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: the checkpoint has no _extra_state.model_params (the model "
                         f"section it was trained with), so its model cannot be rebuilt")
    return params


def train_infos(state: dict) -> dict:
    """{lr, step} of the last step taken (step is 0-based, DeePMD-kit's layout)."""
    return dict(state["model"].get("_extra_state", {}).get("train_infos", {}))


def is_multi_task(params: dict) -> bool:
    return "model_dict" in params


def branches(params: dict) -> dict[str, dict]:
    """{branch name: its model section}."""
    return params["model_dict"] if is_multi_task(params) else {DEFAULT: params}


def aliases(params: dict) -> dict[str, str]:
    """{name or model_branch_alias: branch name}."""
    out = {k: k for k in branches(params)}
    for k, b in branches(params).items():
        for alias in b.get("model_branch_alias", []) if isinstance(b, dict) else []:
            out.setdefault(alias, k)
    return out


def select_branch(params: dict, branch: str | None, path) -> str:
    """The branch a --head/--model-branch value names, as DeePMD-kit resolves it: a name or a
    model_branch_alias, case-insensitively when nothing matches exactly; a multi-task file
    needs one, unless a branch is aliased "Default"."""
    if is_multi_task(params):
        known = aliases(params)
        if branch is None and "Default" in known:
            return known["Default"]
        if branch is None:
            raise ValueError(f"{path} is a multi-task checkpoint: choose a branch with --head "
                             f"({describe(params)})")
        found = known.get(branch)
        if found is None:
            matches = [v for k, v in known.items() if k.lower() == branch.lower()]
            found = matches[0] if matches else None
        if found is None:
            raise ValueError(f"{path} has no branch '{branch}' (branches: {describe(params)})")
        return found
    if branch not in (None, DEFAULT):
        raise ValueError(f"{path} is a single-task checkpoint; it has no branch '{branch}'")
    return DEFAULT


def describe(params: dict) -> str:
    """Branch names with their aliases, for messages: "water_1 (alias w1), water_2"."""
    out = []
    for name, section in branches(params).items():
        alias = section.get("model_branch_alias", []) if isinstance(section, dict) else []
        out.append(name + (f" (alias {', '.join(alias)})" if alias else ""))
    return ", ".join(out)


def model_config(section: dict, where: str) -> ModelConfig:
    """ModelConfig of one branch's stored section, tolerating DeePMD-kit's bookkeeping keys."""
    p = {k: v for k, v in section.items() if k not in _IGNORED["model"]}
    for part, base in (("descriptor", DescriptorConfig), ("fitting_net", FittingConfig)):
        if isinstance(p.get(part), dict):
            keep = _fields(base, p[part].get("type"))
            p[part] = {k: v for k, v in p[part].items()
                       if k in keep or k not in _IGNORED[part]}
    return parse(ModelConfig, p, where)


def _fields(base, kind) -> set[str]:
    """The keys of the section class of `base` whose type is `kind` (none if unknown)."""
    for cls in base.kinds():
        if kind in cls.TYPES or (kind is None and cls is base.kinds()[0]):
            return {f.name for f in dataclasses.fields(cls)}
    return set()


def branch_tensors(state: dict, branch: str) -> dict:
    """The state-dict entries of one branch, keys relative to its model."""
    prefix = f"model.{branch}."
    return {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
