"""How a run starts, as explicit stages:

1. the start mode, a value: Fresh, Restart, InitModel or Finetune (start_mode);
2. the input resolved against the data (resolve): a copy of the user's Config in which every
   sel is a list (from the neighbor statistics, the checkpoint or the pretrained model) and
   finetune's model sections are aligned, plus the data's min_nbor_dist per branch; the
   user's Config is never changed;
3. the parts: one model (on dpx's ops, TRAINING options), loss and data per branch, shared
   parts aliased in one ModelWrapper (build_trainer);
4. the initial state by mode: statistics from the data (Fresh, with the stat-file cache),
   a checkpoint's full state (Restart), its weights (InitModel), or the pretrained weights
   and a bias fitted to the new data (Finetune).
The Trainer then only wires these parts together and runs the loop.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from dpx import loss as losses
from dpx import ops
from dpx.config import Config
from dpx.io import checkpoint, params
from dpx.model import TRAINING, EnergyModel
from dpx.model.network import mix_entropy
from dpx.train import dist
from dpx.train import finetune as ft
from dpx.train.branches import BranchRun
from dpx.train.data import BranchData
from dpx.train.stat_file import StatFile
from dpx.train.trainer import Trainer
from dpx.train.wrapper import ModelWrapper

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- 1. start modes
@dataclass(frozen=True)
class Fresh:
    """From scratch: sel and statistics from the data."""
    skip_neighbor_stat: bool = False


@dataclass(frozen=True)
class Restart:
    """Continue a run: weights, optimizer, learning rate, step and random state."""
    path: str


@dataclass(frozen=True)
class InitModel:
    """Start from a checkpoint's weights (and statistics), step 0, a fresh optimizer."""
    path: str


@dataclass(frozen=True)
class Finetune:
    """Start from a pretrained checkpoint's branch (deepmd-compat §12)."""
    path: str
    branch: str | None = None
    use_pretrain_script: bool = False


StartMode = Union[Fresh, Restart, InitModel, Finetune]


def start_mode(restart: str | None = None, init_model: str | None = None,
               finetune: str | None = None, model_branch: str | None = None,
               use_pretrain_script: bool = False, skip_neighbor_stat: bool = False) -> StartMode:
    """The start mode the command-line options name (at most one of restart, init_model,
    finetune)."""
    given = [name for name, v in (("--restart", restart), ("--init-model", init_model),
                                  ("--finetune", finetune)) if v]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} exclude each other: --restart continues a run, "
                         f"--init-model and --finetune start a new one from a checkpoint")
    if (model_branch is not None or use_pretrain_script) and finetune is None:
        raise ValueError("--model-branch and --use-pretrain-script go with --finetune "
                         "CHECKPOINT")
    if restart:
        return Restart(restart)
    if init_model:
        return InitModel(init_model)
    if finetune:
        return Finetune(finetune, model_branch, use_pretrain_script)
    return Fresh(skip_neighbor_stat)


# ---------------------------------------------------------------- 2. resolve
@dataclass
class ResolvedConfig:
    """The input resolved against the data: `config` is a copy of the user's Config with every
    sel a list; min_nbor_dist is the data's shortest pair distance per branch (-1: unknown,
    e.g. when it comes with the checkpoint)."""
    config: Config
    min_nbor_dist: dict[str, float]


def resolve(cfg: Config, mode: StartMode, data: dict[str, BranchData],
            state: dict | None, distributed: bool, rank: int) -> tuple[ResolvedConfig,
                                                                       ft.Pretrained | None]:
    resolved = ResolvedConfig(copy.deepcopy(cfg), {k: -1.0 for k in cfg.branches})
    pretrained = None
    if isinstance(mode, Finetune):
        pretrained = ft.prepare(resolved.config, mode.path, mode.branch, mode.use_pretrain_script)
    elif state is not None:
        sel_from_checkpoint(resolved.config, state, mode.path)
    else:
        if rank == 0:
            resolve_sel(resolved, data, mode.skip_neighbor_stat)
        if distributed:
            found = {k: (b.model.descriptor.sel, resolved.min_nbor_dist[k])
                     for k, b in resolved.config.branches.items()}
            for k, (sel, dmin) in dist.broadcast_object(found).items():
                resolved.config.branches[k].model.descriptor.sel = sel
                resolved.min_nbor_dist[k] = dmin
    return resolved, pretrained


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


def resolve_sel(resolved: ResolvedConfig, data: dict[str, BranchData], skip: bool) -> None:
    """sel "auto[:f]" -> 4 * ceil(floor(c_t * f) / 4) from the training data; a user sel below
    the counts seen is warned about. A shared descriptor sees the data of every branch that
    links it, and all of them get the same sel."""
    cfg = resolved.config
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
            resolved.min_nbor_dist[k] = dmin


def sel_from_checkpoint(cfg: Config, state: dict, path) -> None:
    """sel from the checkpoint's model parameters (a restart must build the same shapes)."""
    stored = params.branches(params.model_params(state, path))
    for name, branch in cfg.branches.items():
        section = stored.get(name, {}).get("descriptor", {})
        if isinstance(section, dict) and isinstance(section.get("sel"), list):
            branch.model.descriptor.sel = list(section["sel"])
        elif isinstance(branch.model.descriptor.sel, str):
            raise ValueError(f"{path}: cannot resolve sel 'auto' of branch {name} from the "
                             f"checkpoint (it has no such branch)")


def stored_model_params(cfg: Config) -> dict:
    """The model section as a checkpoint stores it (_extra_state.model_params): the input with
    every default filled in and sel resolved."""
    def one(model):
        d = dataclasses.asdict(model)
        return {k: v for k, v in d.items() if v is not None}
    if not cfg.multi_task:
        return one(cfg.branches["Default"].model)
    stored = copy.deepcopy(cfg.model_params)
    stored["model_dict"] = {k: one(b.model) for k, b in cfg.branches.items()}
    return stored


# ---------------------------------------------------------------- 3. parts
def build_trainer(cfg: Config, mode: StartMode = Fresh(), device: str | None = None) -> Trainer:
    """The stages above, in order, and the Trainer that wires their results."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world = dist.world()
    distributed = dist.init(device)
    seed = cfg.training.seed
    if seed is not None:
        torch.manual_seed(mix_entropy([rank, seed % 2 ** 32]))
    state = checkpoint.load(mode.path) if isinstance(mode, (Restart, InitModel)) else None
    data = {k: BranchData(b, cfg, seed, rank, world) for k, b in cfg.branches.items()}
    resolved, pretrained = resolve(cfg, mode, data, state, distributed, rank)
    run_cfg = resolved.config
    branches = {k: BranchRun(k, EnergyModel(b.model, TRAINING),
                             losses.build(b.loss, run_cfg.learning_rate.start_lr), data[k])
                for k, b in run_cfg.branches.items()}
    wrapper = ModelWrapper({k: r.model for k, r in branches.items()},
                           stored_model_params(run_cfg))
    wrapper.share(run_cfg.links)
    if isinstance(mode, Restart):
        wrapper.load_state_dict(state["model"])
    elif isinstance(mode, InitModel):
        wrapper.load_state_dict(state["model"], strict=False)
    elif rank == 0 and isinstance(mode, Finetune):
        ft.apply(pretrained, run_cfg, branches)
    elif rank == 0:
        compute_statistics(resolved, branches)
    wrapper.to(device)
    if distributed:
        dist.broadcast_state(wrapper)  # statistics computed once, on rank 0
    trainer = Trainer(run_cfg, branches, wrapper, device, rank, world, distributed)
    if isinstance(mode, Restart):
        trainer.restore(state)
    return trainer


# ---------------------------------------------------------------- 4. statistics
def compute_statistics(resolved: ResolvedConfig, branches: dict[str, BranchRun]) -> None:
    """Each descriptor's davg/dstd from the sums of every branch that shares it at level 0
    (one module), then each branch's out_bias from its own data (deepmd-compat §3.3, §5.3,
    §10.4); a stat file caches both."""
    cfg = resolved.config
    t0 = time.perf_counter()
    frames: dict[str, list[dict]] = {}

    def frames_of(name):
        if name not in frames:
            nbatch = cfg.branches[name].model.data_stat_nbatch
            frames[name] = branches[name].data.stat_frames(nbatch)
        return frames[name]

    merged: dict[int, tuple[object, dict]] = {}
    for name, run in branches.items():
        model_cfg = cfg.branches[name].model
        am = run.model.atomic_model
        cache = StatFile.open(cfg.branches[name].data.stat_file, am.descriptor,
                              model_cfg.type_map, cfg.base_dir)
        sums = cache.load_env_stats(am.descriptor.stat_names()) if cache else None
        if sums is None:
            excluded = am.pair_excluded if am.has_pair_exclusion else None
            sums = am.descriptor.compute_stats(frames_of(name), excluded)
            if cache:
                cache.save_env_stats(sums)
        prev = merged.get(id(am.descriptor))
        merged[id(am.descriptor)] = (am.descriptor, sums if prev is None else
                                     {n: prev[1][n] + sums[n] for n in sums})
        _set_bias(name, run, model_cfg, cache, frames_of)
        am.fitting_net.compute_input_stats(lambda name=name: frames_of(name),
                                           model_cfg.data_stat_protect)
        run.model.min_nbor_dist.fill_(resolved.min_nbor_dist[name])
    for descriptor, sums in merged.values():
        descriptor.set_stats(sums)
    log.info("data statistics in %.1f s", time.perf_counter() - t0)


def _set_bias(name, run: BranchRun, model_cfg, cache, frames_of) -> None:
    am = run.model.atomic_model
    ntypes = len(model_cfg.type_map)
    cached = cache.load_bias() if cache else None
    if cached is None:
        preset = (model_cfg.preset_out_bias or {}).get("energy")
        cached = am.fitting_net.fit_bias(frames_of(name), ntypes, None, preset,
                                         model_cfg.atom_exclude_types)
        if cache:
            cache.save_bias(*cached)
    bias, std = cached
    am.set_out_stat(bias, std)
    log.info("branch %s: energy bias per type %s", name,
             dict(zip(model_cfg.type_map, np.round(bias, 6).tolist())))
