"""How a run starts, as explicit stages:

1. the start mode, a value: Fresh, Restart, InitModel or Finetune (start_mode);
2. the input resolved against the checkpoint (resolve_from_checkpoint, before any data is
   read: a restart must continue the same model, --init-model must load exactly, see
   dpx.train.resume) or the data (resolve_from_data): a copy of the user's Config in which
   every sel is a list and finetune's model sections are aligned, plus the data's
   min_nbor_dist per branch; the user's Config is never changed. The run's files are locked
   here, and a new run refuses to replace an earlier run's files (dpx.train.run_files);
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
import os
import time
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from dpx import heap
from dpx import loss as losses
from dpx.config import Config
from dpx.io import checkpoint, is_frozen
from dpx.io.load import model_from_state
from dpx.model import TRAINING, EnergyModel
from dpx.model.network import mix_entropy
from dpx.model.stat import StatItem
from dpx.nlist.stat import neighbor_counts
from dpx.ops import paths
from dpx.progress import Ticker
from dpx.train import dist, resume
from dpx.train import finetune as ft
from dpx.train.branches import BranchRun, probabilities
from dpx.train.data import BranchData
from dpx.train.run_files import RunFiles
from dpx.train.stat_file import NeighborStatCache, StatFile, contents_digest
from dpx.train.stat_order import DeepmdStatStream
from dpx.train.trainer import Trainer
from dpx.train.wrapper import ModelWrapper

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- 1. start modes
@dataclass(frozen=True)
class NeighborScan:
    """How a start from data gets its neighbor statistics: from every frame (the default,
    exact), not at all (skip: --skip-neighbor-stat; sel must be a list), or estimated from at
    most `frames` frames of each system (--neighbor-stat-frames; logged as an estimate)."""
    skip: bool = False
    frames: int | None = None


@dataclass(frozen=True)
class Fresh:
    """From scratch: sel and statistics from the data."""
    scan: NeighborScan = NeighborScan()


@dataclass(frozen=True)
class Restart:
    """Continue a run: weights, optimizer, learning rate, step and random state."""
    path: str


@dataclass(frozen=True)
class InitModel:
    """Start from a checkpoint's weights (and statistics), step 0, a fresh optimizer; branch:
    the checkpoint branch a single-task input starts from (multi-task checkpoints)."""
    path: str
    branch: str | None = None
    scan: NeighborScan = NeighborScan()


@dataclass(frozen=True)
class Finetune:
    """Start from a pretrained checkpoint's branch (deepmd-compat §12)."""
    path: str
    branch: str | None = None
    use_pretrain_script: bool = False
    scan: NeighborScan = NeighborScan()


StartMode = Union[Fresh, Restart, InitModel, Finetune]


def start_mode(restart: str | None = None, init_model: str | None = None,
               finetune: str | None = None, model_branch: str | None = None,
               use_pretrain_script: bool = False,
               scan: NeighborScan = NeighborScan()) -> StartMode:
    """The start mode the command-line options name (at most one of restart, init_model,
    finetune)."""
    given = [name for name, v in (("--restart", restart), ("--init-model", init_model),
                                  ("--finetune", finetune)) if v]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} exclude each other: --restart continues a run, "
                         f"--init-model and --finetune start a new one from a checkpoint")
    if model_branch is not None and not (finetune or init_model):
        raise ValueError("--model-branch goes with --finetune or --init-model CHECKPOINT")
    if use_pretrain_script and finetune is None:
        raise ValueError("--use-pretrain-script goes with --finetune CHECKPOINT")
    if restart:
        return Restart(restart)
    if init_model:
        return InitModel(init_model, model_branch, scan)
    if finetune:
        return Finetune(finetune, model_branch, use_pretrain_script, scan)
    return Fresh(scan)


# ---------------------------------------------------------------- 2. resolve
@dataclass
class ResolvedConfig:
    """The input resolved against the checkpoint or the data: `config` is a copy of the
    user's Config with every sel a list; min_nbor_dist is the data's shortest pair distance
    per branch (-1: unknown, e.g. when it comes with the checkpoint)."""
    config: Config
    min_nbor_dist: dict[str, float]


def resolve_from_checkpoint(cfg: Config, mode: StartMode, state: dict | None):
    """The resolved copy of the input for a start from a checkpoint, checked against it
    before any data is read: (ResolvedConfig, what the initial state needs: finetune's
    Pretrained or init-model's rules, or None)."""
    resolved = ResolvedConfig(copy.deepcopy(cfg), {k: -1.0 for k in cfg.branches})
    if isinstance(mode, Restart):
        resume.check_restart(resolved.config, state, mode.path)
        return resolved, None
    if isinstance(mode, InitModel):
        return resolved, resume.init_model_rules(resolved.config, state, mode.path, mode.branch)
    if isinstance(mode, Finetune):
        return resolved, ft.prepare(resolved.config, mode.path, mode.branch,
                                    mode.use_pretrain_script)
    return resolved, None


def resolve_from_data(resolved: ResolvedConfig, mode: Fresh | InitModel | Finetune,
                      data: dict[str, BranchData], distributed: bool, rank: int) -> None:
    """sel and min_nbor_dist from the neighbor statistics of rank 0, on every rank. A start
    from a checkpoint scans its new data too (DeePMD-kit records that data's min_nbor_dist,
    which sets a compressed table's range), unless --skip-neighbor-stat."""
    if rank == 0:
        with dist.alone_on_node(distributed):
            resolve_sel(resolved, data, mode.scan)
    if distributed:
        found = {k: (b.model.descriptor.sel, resolved.min_nbor_dist[k])
                 for k, b in resolved.config.branches.items()}
        for k, (sel, dmin) in dist.broadcast_object(found).items():
            resolved.config.branches[k].model.descriptor.sel = sel
            resolved.min_nbor_dist[k] = dmin


def descriptor_groups(cfg: Config) -> list[list[str]]:
    """Branches that share one descriptor part (any level) form a group; others stand alone."""
    groups: dict[str, list[str]] = {}
    for link in cfg.links:
        if link.kind == "descriptor":
            groups.setdefault(link.part, []).append(link.branch)
    grouped = {k for g in groups.values() for k in g}
    return list(groups.values()) + [[k] for k in cfg.branches if k not in grouped]


def resolve_sel(resolved: ResolvedConfig, data: dict[str, BranchData],
                scan: NeighborScan = NeighborScan()) -> None:
    """sel "auto[:f]" -> 4 * ceil(floor(c * f) / 4) from the training data, c the most
    neighbors any atom has (per type; of all types as one for a mixed-type descriptor, whose
    sel is one number); a user sel below the counts seen is warned about. A shared descriptor
    sees the data of every branch that links it, and all of them get the same sel. Each
    branch's stat file (if any) keeps its systems' numbers for the next run."""
    cfg = resolved.config
    for group in descriptor_groups(cfg):
        d = cfg.branches[group[0]].model.descriptor
        auto = isinstance(d.sel, str)
        if scan.skip and auto:
            raise ValueError(f"sel '{d.sel}' of branch {group[0]} needs the neighbor statistics;"
                             f" drop --skip-neighbor-stat or give sel as a list")
        if scan.skip:
            continue
        t0 = time.perf_counter()
        # each branch's closest pair is its own (DeePMD-kit records it per branch); the
        # counts of the group decide its one sel
        found = {k: _branch_counts(cfg, k, d, data[k], scan) for k in group}
        counts = np.max(np.stack([c for c, _ in found.values()]), axis=0)
        log.info("neighbor statistics of %s: max neighbors %s%s, min distance %s (%.1f s)%s",
                 ", ".join(group), "" if d.MIXED_TYPES else "per type ", counts.tolist(),
                 ", ".join(f"{dmin:.3f}" for _, dmin in found.values()),
                 time.perf_counter() - t0,
                 f", an ESTIMATE from at most {scan.frames} frame(s) per system "
                 f"(--neighbor-stat-frames): sel and min_nbor_dist may differ from the full "
                 f"scan's" if scan.frames else "")
        sel = d.sel
        if auto:
            factor = float(d.sel.split(":")[1]) if ":" in d.sel else 1.1
            sel = [_wrap_up_4(c * factor) for c in counts]
            sel = sel[0] if d.MIXED_TYPES else sel
            log.info("sel '%s' -> %s", d.sel, sel)
        else:
            given = [sum(d.sel_list())] if d.MIXED_TYPES else d.sel
            if any(s < c for s, c in zip(given, counts)):
                log.warning("sel %s is below the neighbor counts in the data %s; the farthest "
                            "neighbors will be dropped (consider sel %s)", d.sel,
                            counts.tolist(), [_wrap_up_4(c * 1.1) for c in counts])
        for k in group:
            cfg.branches[k].model.descriptor.sel = copy.deepcopy(sel)
            resolved.min_nbor_dist[k] = found[k][1]


def _branch_counts(cfg: Config, name: str, descriptor, data: BranchData, scan: NeighborScan):
    """One branch's (counts, closest pair) over its training systems, through its stat
    file's record of earlier scans."""
    branch = cfg.branches[name]
    cache = NeighborStatCache.open(branch.data.stat_file, branch.model.type_map, cfg.base_dir)
    found = neighbor_counts(data.train_systems, descriptor.rcut, len(branch.model.type_map),
                            one_type=descriptor.MIXED_TYPES, cache=cache, at_most=scan.frames,
                            stage=f"neighbor statistics of {name}")
    if cache:
        cache.save()
    return found


def _wrap_up_4(x: float) -> int:
    """DeePMD-kit's rounding of a neighbor count to a sel: floor, then up to a multiple of 4."""
    return int(4 * math.ceil(int(x) / 4))


def normalized_input(cfg: Config) -> dict:
    """The whole input as the run uses it (out.json): every default filled in, sel resolved,
    multi-task references expanded."""
    def plain(section):
        return _drop_none(dataclasses.asdict(section))
    out = {"model": stored_model_params(cfg), "learning_rate": plain(cfg.learning_rate),
           "optimizer": plain(cfg.optimizer)}
    training = plain(cfg.training)
    if cfg.multi_task:
        out["loss_dict"] = {k: plain(b.loss) for k, b in cfg.branches.items()}
        training["data_dict"] = {k: plain(b.data) for k, b in cfg.branches.items()}
    else:
        out["loss"] = plain(cfg.branches["Default"].loss)
    out["training"] = training
    return out


def _drop_none(x):
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


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
def build_trainer(cfg: Config, mode: StartMode = Fresh(), device: str | None = None,
                  overwrite: bool = False) -> Trainer:
    """The stages above, in order, and the Trainer that wires their results. A new run
    (not --restart) refuses to replace an earlier run's files unless overwrite."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        device = dist.local_device(device, int(os.environ.get("LOCAL_RANK", 0)),
                                   torch.cuda.device_count())
        torch.cuda.set_device(device)
    rank, world = dist.world()
    distributed = dist.init(device)
    log.info(paths.describe(device))
    seed = cfg.training.seed
    if seed is not None:
        torch.manual_seed(mix_entropy([rank, seed % 2 ** 32]))
    state = read_checkpoint(mode)
    resolved, source = resolve_from_checkpoint(cfg, mode, state)
    files = RunFiles(cfg.training.save_ckpt, cfg.training.disp_file)
    if rank == 0:
        files.make_folders()
        files.lock()
    try:
        if rank == 0:
            files.remove_temporaries()
            if not isinstance(mode, Restart) and not overwrite:
                files.refuse_overwrite()
        data = {k: BranchData(b, cfg, seed, rank, world) for k, b in cfg.branches.items()}
        if not isinstance(mode, Restart):
            resolve_from_data(resolved, mode, data, distributed, rank)
        trainer = _wire(resolved, mode, state, source, data, device, rank, world, distributed)
    except BaseException:
        files.unlock()
        raise
    trainer.files = files
    return trainer


def read_checkpoint(mode: StartMode) -> dict | None:
    """The checkpoint dict of --restart / --init-model (a frozen file is refused, for
    --finetune too: DeePMD-kit fine-tunes from a .pth, dpx from checkpoints only)."""
    if isinstance(mode, Fresh):
        return None
    option = {Restart: "--restart", InitModel: "--init-model", Finetune: "--finetune"}[type(mode)]
    if is_frozen(mode.path):
        raise ValueError(f"{option} {mode.path}: a frozen model (.pth) holds no training state; "
                         f"{option} takes a checkpoint (.pt) or a folder with a 'checkpoint' "
                         f"file")
    if isinstance(mode, Finetune):
        return None  # read by finetune.prepare
    return checkpoint.load(mode.path)


def _wire(resolved: ResolvedConfig, mode: StartMode, state, source, data, device, rank,
          world, distributed) -> Trainer:
    run_cfg = resolved.config
    branches = {k: BranchRun(k, EnergyModel(b.model, TRAINING),
                             losses.build(b.loss, run_cfg.learning_rate.start_lr), data[k])
                for k, b in run_cfg.branches.items()}
    for k, r in branches.items():
        r.data.check_labels(r.loss.weighted_labels("loss" if not run_cfg.multi_task
                                                   else f"loss_dict/{k}"))
    wrapper = ModelWrapper({k: r.model for k, r in branches.items()},
                           stored_model_params(run_cfg))
    wrapper.share(run_cfg.links)
    if isinstance(mode, Fresh):
        set_cases(run_cfg, branches)
    if isinstance(mode, Restart):
        _load_strict(wrapper, state, mode.path)
    elif isinstance(mode, InitModel):
        for name, rule in source.items():
            src, _ = model_from_state(state, rule.source, mode.path)
            ft.transfer(src, branches[name].model, rule.index, random_fitting=False)
        log.info("weights and statistics from %s: %s", mode.path,
                 ", ".join(f"{r.branch} <- {r.source}" for r in source.values()))
    elif rank == 0 and isinstance(mode, Finetune):
        with dist.alone_on_node(distributed):
            ft.apply(source, run_cfg, branches)
    elif rank == 0:
        # DeePMD-kit's frames under the same seed (one process: its DDP sampler differs)
        same_frames = run_cfg.training.seed is not None and world == 1
        with dist.alone_on_node(distributed):
            compute_statistics(resolved, branches,
                               DeepmdStatStream(run_cfg, branches) if same_frames else None)
    if isinstance(mode, (InitModel, Finetune)):
        _record_min_nbor_dist(resolved, branches)
    wrapper.to(device)
    if distributed:
        dist.broadcast_state(wrapper)  # statistics computed once, on rank 0
    trainer = Trainer(run_cfg, branches, wrapper, device, rank, world, distributed)
    if isinstance(mode, Restart):
        trainer.restore(state)
    return trainer


def _record_min_nbor_dist(resolved: ResolvedConfig, branches: dict[str, BranchRun]) -> None:
    """The new data's closest pair where it was scanned; the checkpoint's otherwise
    (--skip-neighbor-stat), as DeePMD-kit 3.2 keeps it."""
    for name, run in branches.items():
        if resolved.min_nbor_dist[name] >= 0:
            run.model.min_nbor_dist.fill_(resolved.min_nbor_dist[name])


def set_cases(cfg: Config, branches: dict[str, BranchRun]) -> None:
    """A new multi-task run with fitting_net/dim_case_embd: each branch's case embedding is
    the one-hot vector of its key's place in sorted order, as DeePMD-kit sets it (a run
    from a checkpoint keeps the checkpoint's)."""
    if not cfg.multi_task:
        return
    for index, name in enumerate(sorted(branches)):
        fitting = branches[name].model.atomic_model.fitting_net
        if cfg.branches[name].model.fitting_net.dim_case_embd:
            fitting.set_case_embd(index)


def _load_strict(wrapper: ModelWrapper, state: dict, path) -> None:
    """Every tensor of the run from the checkpoint, nothing missing, nothing left over."""
    try:
        wrapper.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise ValueError(f"--restart {path}: its tensors do not fit the model of the input: "
                         f"{first[0].strip()}") from None


# ---------------------------------------------------------------- 4. statistics
def compute_statistics(resolved: ResolvedConfig, branches: dict[str, BranchRun],
                       stream: DeepmdStatStream | None = None) -> None:
    """Each descriptor's davg/dstd from the sums of every branch that shares it at level 0
    (one module), each branch's out_bias from its own data, and each fitting's fparam/aparam
    statistics from the probability-weighted sums of the branches that share it
    (deepmd-compat §3.3, §5.2, §5.3, §10.4); a stat file caches all three. stream: the
    frames DeePMD-kit would sample with the same seed (sampled only when needed, in branch
    order, as DeePMD-kit does)."""
    cfg = resolved.config
    t0 = time.perf_counter()
    frames: dict[str, list[dict]] = {}

    def frames_of(name):
        if name not in frames:
            nbatch = cfg.branches[name].model.data_stat_nbatch
            order = None if stream is None else stream.permutations
            frames[name] = branches[name].data.stat_frames(nbatch, order)
        return frames[name]

    merged: dict[int, tuple[object, dict]] = {}
    fitting_sums: dict[int, tuple[object, list]] = {}
    for name, run in branches.items():
        model_cfg = cfg.branches[name].model
        am = run.model.atomic_model
        stat_file = cfg.branches[name].data.stat_file
        cache = StatFile.open(stat_file, am.descriptor, model_cfg.type_map, cfg.base_dir,
                              _provenance(run, model_cfg) if stat_file else None)
        sums = _descriptor_sums(name, am, cache, frames_of)
        prev = merged.get(id(am.descriptor))
        merged[id(am.descriptor)] = (am.descriptor, sums if prev is None else
                                     {n: prev[1][n] + sums[n] for n in sums})
        _set_bias(name, run, model_cfg, cache, frames_of)
        fitting = am.fitting_net
        if fitting.input_stat_names():
            group = fitting_sums.setdefault(fitting.input_key(), ([], []))
            group[0].append(fitting)
            group[1].append((name, _fitting_sums(fitting, cache,
                                                 lambda name=name: frames_of(name))))
        run.model.min_nbor_dist.fill_(resolved.min_nbor_dist[name])
        # the branch's samples are done with: holding every branch's (10 frames of each
        # system) would grow with the number of systems (~200 MB at issue 28's 2000), and
        # glibc would keep their pages for the rest of the run
        frames.pop(name, None)
        heap.trim()
    for descriptor, sums in merged.values():
        descriptor.set_stats(sums)
    for fittings, per_branch in fitting_sums.values():
        base, sums = per_branch[0]
        if len(per_branch) > 1:
            prob = probabilities(cfg, {k: r.data for k, r in branches.items()})
            sums = _weighted_sums(per_branch, dict(zip(cfg.branches, prob)))
        for fitting in fittings:  # branches sharing the input layers share the statistics
            fitting.set_input_stats(sums, cfg.branches[base].model.data_stat_protect)
    log.info("data statistics in %.1f s", time.perf_counter() - t0)


def _descriptor_sums(name: str, am, cache, frames_of) -> dict:
    """A branch's descriptor sums, from its stat file or its samples (then cached). The
    samples are referenced only here, so they go when compute_statistics drops them."""
    sums = cache.load_env_stats(am.descriptor.stat_names()) if cache else None
    if sums is None:
        excluded = am.pair_excluded if am.has_pair_exclusion else None
        samples = frames_of(name)
        ticker = Ticker(log, f"descriptor statistics of {name}", len(samples), "samples")
        sums = am.descriptor.compute_stats(ticker.iterate(samples), excluded)
        if cache:
            cache.save_env_stats(sums)
    return sums


def _fitting_sums(fitting, cache, frames) -> dict:
    """A branch's fitting-input sums, from its stat file or its frames (then cached)."""
    cached = cache.load_fitting_stats(fitting.input_stat_names()) if cache else {}
    sums = fitting.input_sums(frames, cached)
    if cache and set(sums) != set(cached):
        cache.save_fitting_stats(sums)
    return sums


def _weighted_sums(per_branch: list[tuple[str, dict]], prob: dict[str, float]) -> dict:
    """The sums of a fitting shared by several branches, as DeePMD-kit merges them: the first
    branch's plus each other's scaled by p_branch / p_first (the branch probabilities)."""
    base, merged = per_branch[0]
    merged = {n: list(items) for n, items in merged.items()}
    for name, sums in per_branch[1:]:
        w = prob[name] / prob[base]
        for n, items in sums.items():
            merged[n] = [m + StatItem(i.number * w, i.sum * w, i.squared_sum * w)
                         for m, i in zip(merged[n], items)]
    return merged


def _provenance(run: BranchRun, model_cfg) -> dict:
    """What a branch's statistics are computed from (recorded in its stat file)."""
    systems = run.data.train_systems
    return {"systems": [s.name for s in systems], "nframes": [s.nframes for s in systems],
            "data_stat_nbatch": model_cfg.data_stat_nbatch,
            "contents": [contents_digest(s) for s in systems]}


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
