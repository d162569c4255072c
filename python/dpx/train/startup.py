"""What happens once before the first step: sel from neighbor statistics, the number of
steps, task probabilities, and the descriptor / energy-bias statistics (with stat-file cache)."""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time

import numpy as np
import torch

from dpx import ops
from dpx.config import Config
from dpx.model import stat
from dpx.train.stat_file import StatFile

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- sel
def neighbor_counts(systems, rcut: float, ntypes: int) -> tuple[np.ndarray, float]:
    """Per-type maximum neighbor count within rcut over all frames, and the minimum pair
    distance (deepmd-compat §2, update_sel)."""
    counts, dmin = np.zeros(ntypes, dtype=np.int64), math.inf
    for sys in systems:
        for lo in range(0, sys.nframes, 64):
            coord = torch.from_numpy(sys.coord[lo:lo + 64])
            atype = torch.from_numpy(sys.atype).expand(coord.shape[0], -1)
            box = None if sys.box is None else torch.from_numpy(sys.box[lo:lo + 64])
            nl = ops.neighbor_list(coord, atype, box, rcut, [0] * ntypes)
            counts = np.maximum(counts, nl.nnei_max.max(dim=0).values.numpy())
            dmin = min(dmin, float(nl.min_dist.min()))
    return counts, dmin


def descriptor_groups(cfg: Config) -> list[list[str]]:
    """Branches that share one descriptor part (any level) form a group; others stand alone."""
    groups: dict[str, list[str]] = {}
    for link in cfg.links:
        if link.kind == "descriptor":
            groups.setdefault(link.part, []).append(link.branch)
    grouped = {k for g in groups.values() for k in g}
    return list(groups.values()) + [[k] for k in cfg.branches if k not in grouped]


def resolve_sel(cfg: Config, data: dict, skip: bool) -> None:
    """Replace sel "auto[:f]" by 4 * ceil(floor(c_t * f) / 4) from the training data; warn
    when a user sel is below the counts seen. A shared descriptor sees the data of every
    branch that links it, and all of them get the same sel."""
    for group in descriptor_groups(cfg):
        d = cfg.branches[group[0]].model.descriptor
        auto = isinstance(d.sel, str)
        if skip and auto:
            raise ValueError(f"sel '{d.sel}' of branch {group[0]} needs the neighbor statistics;"
                             f" drop --skip-neighbor-stat or give sel as a list")
        if skip:
            continue
        t0 = time.perf_counter()
        systems = [s for k in group for s in data[k].train_systems]
        counts, dmin = neighbor_counts(systems, d.rcut, len(cfg.branches[group[0]].model.type_map))
        log.info("neighbor statistics of %s: max neighbors per type %s, min distance %.3f "
                 "(%.1f s)", ", ".join(group), counts.tolist(), dmin, time.perf_counter() - t0)
        sel = d.sel
        if auto:
            factor = float(d.sel.split(":")[1]) if ":" in d.sel else 1.1
            sel = [int(4 * math.ceil(int(c * factor) / 4)) for c in counts]
            log.info("sel '%s' -> %s", d.sel, sel)
        elif any(s < c for s, c in zip(d.sel, counts)):
            log.warning("sel %s is below the neighbor counts in the data %s; the farthest "
                        "neighbors will be dropped (consider sel %s)", d.sel, counts.tolist(),
                        [int(4 * math.ceil(int(c * 1.1) / 4)) for c in counts])
        for k in group:
            cfg.branches[k].model.descriptor.sel = list(sel)
            data[k].min_nbor_dist = dmin


def sel_from_checkpoint(cfg: Config, state: dict) -> None:
    """Take sel from the checkpoint's model_params (a restart must build the same shapes)."""
    params = state["model"].get("_extra_state", {}).get("model_params", {})
    branches = params.get("model_dict", {"Default": params})
    for key, branch in cfg.branches.items():
        stored = branches.get(key, {}).get("descriptor", {})
        if isinstance(stored, dict) and isinstance(stored.get("sel"), list):
            branch.model.descriptor.sel = list(stored["sel"])
        elif isinstance(branch.model.descriptor.sel, str):
            raise ValueError(f"cannot resolve sel 'auto' of branch {key} from the checkpoint")


def stored_model_params(cfg: Config) -> dict:
    """The model section as a checkpoint stores it (_extra_state.model_params): the input with
    every default filled in and sel resolved."""
    def one(model):
        d = dataclasses.asdict(model)
        return {k: v for k, v in d.items() if v is not None}
    if not cfg.multi_task:
        return one(cfg.branches["Default"].model)
    params = copy.deepcopy(cfg.model_params)
    params["model_dict"] = {k: one(b.model) for k, b in cfg.branches.items()}
    return params


# ---------------------------------------------------------------- steps and tasks
def num_steps(cfg: Config, data: dict) -> int:
    t = cfg.training
    if t.numb_steps is not None:
        return t.numb_steps
    if t.num_epoch_dict:
        return int(math.ceil(sum(_epoch_weights(cfg, data).values())))
    (only,) = data.values()
    return int(math.ceil(t.numb_epoch * only.batches_per_epoch()))


def _epoch_weights(cfg: Config, data: dict) -> dict[str, float]:
    return {k: cfg.training.num_epoch_dict[k] * data[k].batches_per_epoch() for k in data}


def task_probabilities(cfg: Config, data: dict) -> np.ndarray:
    """model_prob normalized; num_epoch_dict -> epochs x batches per epoch; else equal."""
    keys = list(cfg.branches)
    t = cfg.training
    if t.num_epoch_dict:
        w = _epoch_weights(cfg, data)
    elif t.model_prob:
        missing = [k for k in keys if k not in t.model_prob]
        if missing:
            raise ValueError(f"training/model_prob: no weight for branch(es) {missing}; give "
                             f"every branch a weight or drop model_prob for equal weights")
        w = t.model_prob
    else:
        w = {k: 1.0 for k in keys}
    p = np.array([w[k] for k in keys], dtype=np.float64)
    return p / p.sum()


# ---------------------------------------------------------------- statistics
def compute_statistics(cfg: Config, tasks: dict, wrapper) -> None:
    """davg/dstd per descriptor block (sums merged over the branches that share the block),
    then each branch's out_bias from its own data (deepmd-compat §3.3, §5.3, §10.4)."""
    t0 = time.perf_counter()
    frames = {}
    block_stats: dict[int, tuple[object, dict]] = {}
    for key, task in tasks.items():
        branch = cfg.branches[key]
        cache = StatFile.open(branch.data.stat_file, branch.model, cfg.base_dir)
        block = task.model.atomic_model.descriptor.sea
        sums = cache.load_env_stats() if cache else None
        if sums is None:
            frames[key] = frames.get(key) or task.data.stat_frames(branch.model.data_stat_nbatch)
            sums = stat.env_mat_stats(block, frames[key])
            if cache:
                cache.save_env_stats(sums)
        prev = block_stats.get(id(block))
        block_stats[id(block)] = (block, sums if prev is None else
                                  {n: prev[1][n] + sums[n] for n in sums})
        _set_bias(task, branch, cache, frames, key)
        task.model.min_nbor_dist.fill_(getattr(task.data, "min_nbor_dist", -1.0))
    for block, sums in block_stats.values():
        stat.set_env_mat_stats(block, sums)
    log.info("data statistics in %.1f s", time.perf_counter() - t0)


def _set_bias(task, branch, cache, frames, key) -> None:
    am = task.model.atomic_model
    ntypes = len(branch.model.type_map)
    cached = cache.load_bias() if cache else None
    if cached is None:
        frames[key] = frames.get(key) or task.data.stat_frames(branch.model.data_stat_nbatch)
        energy, counts = stat.type_counts(frames[key], ntypes)
        preset = (branch.model.preset_out_bias or {}).get("energy")
        cached = stat.solve_bias(energy, counts, preset, branch.model.atom_exclude_types)
        if cache:
            cache.save_bias(*cached)
    bias, std = cached
    am.out_bias.copy_(torch.as_tensor(bias).reshape(1, ntypes, 1))
    am.out_std.copy_(torch.as_tensor(std).reshape(1, ntypes, 1))
    log.info("branch %s: energy bias per type %s", key,
             dict(zip(branch.model.type_map, np.round(bias, 6).tolist())))
