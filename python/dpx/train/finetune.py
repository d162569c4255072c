"""Fine-tuning from a pretrained checkpoint (deepmd-compat §12): which pretrained branch feeds
each branch of the new input (rules), the weight transfer with the type map remapped, and
the energy-bias adjustment on the new data.

Unlike DeePMD-kit (which refuses it for se_e2_a), the new type_map may reorder or drop
elements of the pretrained one: every per-type tensor follows its element. New type i takes
pretrained type index[i]; the embedding net of (center, neighbor) = (i, j) is the pretrained
net of (index[i], index[j]); davg/dstd rows follow the center type and their slot sections
(sel) the neighbor type; fitting nets, out_bias and out_std follow the atom type.

A descriptor with a type embedding (DPA-1; Descriptor.NEW_TYPES) also takes elements the
pretrained model never saw, as DeePMD-kit does (index[i] = -1): their type-embedding rows
start random, their davg/dstd come from the new data, their bias from the bias adjustment.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

from dpx.config import Config
from dpx.io import checkpoint, load_model
from dpx.io.params import branches as branches_of
from dpx.io.params import describe, model_config, model_params, select_branch
from dpx.model.bias import adjust_bias
from dpx.model.descriptor import Descriptor
from dpx.model.energy import EnergyModel
from dpx.model.stat import PROTECTION

log = logging.getLogger(__name__)

RANDOM = "RANDOM"


@dataclass
class Rule:
    """Branch `branch` of the new input starts from pretrained branch `source`."""
    branch: str
    source: str
    random_fitting: bool = False
    resuming: bool = False          # multi-task: same branch name, plain copy, bias kept
    index: list[int] | None = None  # new type i -> pretrained type index[i]


@dataclass
class Pretrained:
    path: str
    params: dict
    rules: dict[str, Rule]


def prepare(cfg: Config, path: str, model_branch: str | None,
            use_pretrain_script: bool = False) -> Pretrained:
    """Load the checkpoint, build the rules and make the model sections of cfg (the run's
    resolved copy of the input) fit the pretrained weights (sel inherited, shapes checked;
    with use_pretrain_script the pretrained sections replace the input's). Runs before any
    model is built."""
    stored = model_params(checkpoint.load(path), path)
    rules = build_rules(cfg, stored, model_branch, path)
    for rule in rules.values():
        align_branch(cfg, rule, branches_of(stored)[rule.source], path, use_pretrain_script)
    log.info("finetune from %s: %s", path, ", ".join(
        f"{r.branch} <- {r.source}" + (" (random fitting)" if r.random_fitting else "") +
        (" (resuming)" if r.resuming else "") for r in rules.values()))
    return Pretrained(str(path), stored, rules)


# ---------------------------------------------------------------- rules (§12.1)
def build_rules(cfg: Config, params: dict, model_branch: str | None, path) -> dict[str, Rule]:
    if not cfg.multi_task:
        source = model_branch or cfg.branches["Default"].model.finetune_head or ""
        return {"Default": single_rule("Default", source, params, path)}
    if model_branch:
        raise ValueError(f"--model-branch {model_branch}: a multi-task input chooses the "
                         f"pretrained branch of each of its branches with "
                         f"model/model_dict/<branch>/finetune_head")
    pretrained = branches_of(params)
    rules = {}
    for name, branch in cfg.branches.items():
        source = branch.model.finetune_head
        if source is None and name in pretrained:
            rules[name] = Rule(name, name, resuming=True)
        else:
            rules[name] = single_rule(name, source or RANDOM, params, path,
                                      f"model/model_dict/{name}/finetune_head")
    return rules


def single_rule(name: str, source: str, params: dict, path, where="--model-branch") -> Rule:
    """The rule of new branch `name` from pretrained branch `source`. Single-task source: ""
    or Default copies its fitting, RANDOM starts a fresh one. Multi-task source: a branch
    name (or alias) copies that branch; "" or RANDOM takes the descriptor of the first branch
    and a fresh fitting."""
    if "model_dict" not in params:
        if source not in ("", "Default", RANDOM):
            raise ValueError(f"{where} '{source}': {path} is a single-task checkpoint (its only "
                             f"branch is 'Default'; or RANDOM for a fresh fitting net)")
        return Rule(name, "Default", random_fitting=source == RANDOM)
    branches = params["model_dict"]
    if source in ("", RANDOM):
        first = next(iter(branches))
        log.warning("%s: the fitting net starts fresh (bias set by statistics); the descriptor "
                    "comes from branch '%s' of %s", name, first, path)
        return Rule(name, first, random_fitting=True)
    try:
        return Rule(name, select_branch(params, source, path))
    except ValueError:
        raise ValueError(f"{where} '{source}': {path} has no such branch (branches: "
                         f"{describe(params)}; or RANDOM for a fresh fitting net)") from None


# ---------------------------------------------------------------- config alignment
def align_branch(cfg: Config, rule: Rule, source: dict, path,
                 use_pretrain_script: bool = False, strict: bool = False,
                 what: str = "the pretrained model") -> None:
    """Type index map, sel from the pretrained branch (per type, following the type map),
    and the shape-defining keys checked; exclusions translated and checked. strict (for
    --init-model): the keys that change the function must match too, and the type map must
    hold the same elements."""
    model = cfg.branches[rule.branch].model
    where = "model" if not cfg.multi_task else f"model/model_dict/{rule.branch}"
    src = model_config(source, f"{path}:model_params")
    _check_elements(where, model, src, strict, path, what, rule.source)
    rule.index = [src.type_map.index(t) if t in src.type_map else -1 for t in model.type_map]
    if rule.index != list(range(len(src.type_map))):
        log.info("%s: type_map %s remapped from the pretrained %s%s", rule.branch,
                 model.type_map, src.type_map, "" if -1 not in rule.index else
                 f" (new: {[t for t in model.type_map if t not in src.type_map]})")
    if use_pretrain_script:
        _take_pretrained_sections(model, src, rule)
    sel = src.descriptor.sel if src.descriptor.MIXED_TYPES else \
        [src.descriptor.sel[i] for i in rule.index]
    given = model.descriptor.sel
    if not isinstance(given, str) and given != sel:
        raise ValueError(f"{where}/descriptor/sel: {given} differs from {what}'s "
                         f"{sel} (type_map {model.type_map}); use {sel} or 'auto'")
    model.descriptor.sel = copy.deepcopy(sel)
    _compare(f"{where}/descriptor", model.descriptor, src.descriptor, path, strict, what)
    if not rule.random_fitting:
        _compare(f"{where}/fitting_net", model.fitting_net, src.fitting_net, path, strict, what)
    _check_exclusions(where, model, src, rule.index, path, what)


def _check_elements(where: str, model, src, strict: bool, path, what: str, source) -> None:
    """Every element of the new type map has pretrained weights, unless the descriptor has a
    type embedding (new elements start from a random row); with strict (--init-model) the
    same elements."""
    missing = [t for t in model.type_map if t not in src.type_map]
    new_types_allowed = Descriptor.REGISTRY[type(src.descriptor)].NEW_TYPES and not strict
    if missing and not new_types_allowed:
        raise ValueError(f"{where}/type_map: element(s) {missing} are not in {what} "
                         f"({path}, branch {source}: type_map {src.type_map}); "
                         f"it has no weights for them" + ("" if strict else
                         f" (a {src.descriptor.type} descriptor has no type embedding that "
                         f"could take new elements)"))
    if strict and sorted(model.type_map) != sorted(src.type_map):
        raise ValueError(f"{where}/type_map: {model.type_map} lacks element(s) "
                         f"{sorted(set(src.type_map) - set(model.type_map))} of {what} "
                         f"({path}: {src.type_map}); start from a subset with --finetune")


def _take_pretrained_sections(model, src, rule: Rule) -> None:
    """--use-pretrain-script: the pretrained descriptor (and fitting net, unless RANDOM)
    replace the input's, keeping the input's trainable flags; the descriptor's exclusions
    are rewritten in the new type indices (sel follows in align_branch)."""
    inv = {old: new for new, old in enumerate(rule.index)}
    d = copy.deepcopy(src.descriptor)
    d.trainable, d.sel = model.descriptor.trainable, "auto"
    d.exclude_types = [[inv[a], inv[b]] for a, b in d.exclude_types if a in inv and b in inv]
    model.descriptor = d
    parts = "descriptor"
    if not rule.random_fitting:
        f = copy.deepcopy(src.fitting_net)
        f.trainable = model.fitting_net.trainable
        model.fitting_net = f
        parts += " and fitting_net"
    log.info("%s: %s from the pretrained branch %s (--use-pretrain-script)", rule.branch,
             parts, rule.source)


def _compare(where: str, mine, theirs, path, strict: bool = False,
             what: str = "the pretrained model") -> None:
    """The keys a section's config class names as fixing the weights' shapes must match (the
    type first); those that change only the function may differ, with a warning (an error
    when strict)."""
    shape_keys = ("type",) + tuple(k for k in type(mine).SHAPE_KEYS if k != "type")
    for key in shape_keys:
        if getattr(mine, key) != getattr(theirs, key):
            raise ValueError(f"{where}/{key}: {getattr(mine, key)} differs from {what}'s "
                             f"{getattr(theirs, key)} ({path}); the weights cannot be loaded")
    for key in type(mine).FUNCTION_KEYS:
        if getattr(mine, key) != getattr(theirs, key):
            if strict:
                raise ValueError(f"{where}/{key}: {getattr(mine, key)} differs from {what}'s "
                                 f"{getattr(theirs, key)} ({path}); its weights compute another "
                                 f"function with it (--finetune allows the change)")
            log.warning("%s/%s: %s differs from %s's %s", where, key,
                        getattr(mine, key), what, getattr(theirs, key))


def _check_exclusions(where: str, model, src, index: list[int], path,
                      what: str = "the pretrained model") -> None:
    """Exclusions are part of what the pretrained weights compute: the input must give the
    pretrained ones, written in its own type indices (pairs of dropped types vanish)."""
    def pairs(xs):
        return sorted(tuple(sorted(p)) for p in xs)
    inv = {old: new for new, old in enumerate(index)}
    for key, mine, theirs in (
            ("descriptor/exclude_types", model.descriptor.exclude_types,
             src.descriptor.exclude_types),
            ("pair_exclude_types", model.pair_exclude_types, src.pair_exclude_types)):
        want = pairs([inv[a], inv[b]] for a, b in theirs if a in inv and b in inv)
        if pairs(mine) != want:
            raise ValueError(f"{where}/{key}: {mine} differs from {what}'s "
                             f"{theirs} ({path}); in this type_map that is {want}")
    want = sorted(inv[t] for t in src.atom_exclude_types if t in inv)
    if sorted(model.atom_exclude_types) != want:
        raise ValueError(f"{where}/atom_exclude_types: {model.atom_exclude_types} differs from "
                         f"{what}'s {src.atom_exclude_types} ({path}); in this "
                         f"type_map that is {want}")


# ---------------------------------------------------------------- weights (§12.2)
@torch.no_grad()
def transfer(src: EnergyModel, dst: EnergyModel, index: list[int], random_fitting: bool) -> None:
    """Copy src's weights into dst, type i of dst taking type index[i] of src. With a random
    fitting only the descriptor is copied."""
    dst.atomic_model.transfer_from(src.atomic_model, index, random_fitting)
    dst.min_nbor_dist.copy_(src.min_nbor_dist)


def _descriptor_statistics(run, model_cfg) -> None:
    """davg/dstd of a branch's descriptor from its own data (DeePMD-kit's
    model_with_new_type_stat: the rows of the elements the pretrained model lacks)."""
    am = run.model.atomic_model
    frames = run.data.stat_frames(model_cfg.data_stat_nbatch)
    excluded = am.pair_excluded if am.has_pair_exclusion else None
    am.descriptor.set_stats(am.descriptor.compute_stats(frames, excluded))


def apply(pre: Pretrained, cfg: Config, branches: dict) -> None:
    """Weights from the pretrained branches, then each branch's bias from its new data
    (resuming branches keep theirs). branches: {name: BranchRun}."""
    sources: dict[str, EnergyModel] = {}
    for name, rule in pre.rules.items():
        if rule.source not in sources:
            sources[rule.source], _ = load_model(pre.path, rule.source)
        log.info("%s: weights from %s, branch %s%s", name, pre.path, rule.source,
                 " (descriptor only)" if rule.random_fitting else "")
        if -1 in rule.index:  # new elements keep the statistics of the new data
            _descriptor_statistics(branches[name], cfg.branches[name].model)
        transfer(sources[rule.source], branches[name].model, rule.index, rule.random_fitting)
    for name, rule in pre.rules.items():
        if rule.resuming:
            continue
        branch = cfg.branches[name]
        frames = branches[name].data.stat_frames(branch.model.data_stat_nbatch)
        fitting = branches[name].model.atomic_model.fitting_net
        if rule.random_fitting and fitting.input_stat_names():
            # a new fitting normalizes its fparam / aparam by the new data (set-by-statistic),
            # std floored at DeePMD-kit's fixed protection, as `change-bias -m set` does
            fitting.set_input_stats(fitting.input_sums(lambda frames=frames: frames),
                                    PROTECTION)
        adjust_bias(branches[name].model, branch.model, frames, change=not rule.random_fitting)

