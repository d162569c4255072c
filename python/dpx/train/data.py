"""A branch's data at train time: training sampler, optional validation sampler, statistics
frames. One in-process sampler per data section (no worker pools), so 32 branches cost 32
small objects, not 32 process pools."""
from __future__ import annotations

import torch

from dpx.data import (
    DataSampler,
    check_labels,
    check_parameters,
    load_systems,
    resolve_batch_size,
)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


class BranchData:
    """Under data parallelism every rank draws the same global batch of world x batch_size
    frames (the stream does not depend on the rank) and keeps its own slice of it, so N ranks
    with batch b see exactly what one process with batch N b sees."""

    def __init__(self, branch, cfg, seed, rank: int = 0, world: int = 1):
        data, model = branch.data, branch.model
        prefix = "training" if not cfg.multi_task else f"training/data_dict/{branch.key}"
        ntypes = len(model.type_map)
        self.rank, self.world, self.prefix = rank, world, prefix
        seed = 0 if seed is None else seed
        self.train_systems = load_systems(data.training_data.systems, base_dir=cfg.base_dir,
                                          type_map=model.type_map, fmt=data.training_data.format,
                                          key=f"{prefix}/training_data/systems")
        fit = model.fitting_net
        has_default = fit.default_fparam is not None
        check_parameters(self.train_systems, fit.numb_fparam, fit.numb_aparam, has_default,
                         f"{prefix}/training_data/systems")
        t = data.training_data
        systems, batch_size = self.train_systems, t.batch_size
        if world > 1:
            sizes = resolve_batch_size(batch_size, [s.natoms for s in systems],
                                       f"{prefix}/training_data/batch_size")
            systems = [s for s, b in zip(systems, sizes) if b is not None]
            batch_size = [b * world for b in sizes if b is not None]
        self.train = DataSampler(systems, batch_size, sys_probs=t.sys_probs,
                                 auto_prob=t.auto_prob, seed=(seed, _tag(branch.key)),
                                 ntypes=ntypes, key=f"{prefix}/training_data")
        self.valid, self.numb_btch = None, 0
        v = data.validation_data
        if v is not None:
            systems = load_systems(v.systems, base_dir=cfg.base_dir, type_map=model.type_map,
                                   fmt=v.format, key=f"{prefix}/validation_data/systems")
            check_parameters(systems, fit.numb_fparam, fit.numb_aparam, has_default,
                             f"{prefix}/validation_data/systems")
            self.valid = DataSampler(systems, v.batch_size, sys_probs=v.sys_probs,
                                     auto_prob=v.auto_prob, seed=(seed, _tag(branch.key), 1),
                                     ntypes=ntypes, key=f"{prefix}/validation_data")
            self.numb_btch = v.numb_btch
        self.seed = seed

    def check_labels(self, weighted: dict[str, str]) -> None:
        """Each system, training and validation, gives the labels the loss weights."""
        check_labels(self.train.systems, weighted, f"{self.prefix}/training_data/systems")
        if self.valid is not None:
            check_labels(self.valid.systems, weighted, f"{self.prefix}/validation_data/systems")

    @property
    def has_validation(self) -> bool:
        return self.valid is not None

    def next_train(self, device) -> dict:
        """This rank's share of the next global batch; only its frames are read."""
        if self.world == 1:
            return _to(self.train.next_batch(), device)
        return _to(self.train.next_share(self.rank, self.world), device)

    def valid_batches(self, device) -> list[dict]:
        return [_to(b, device) for b in self.valid.sample(self.numb_btch)]

    def stat_frames(self, nbatch: int, order=None) -> list[dict]:
        return self.train.stat_input(nbatch, seed=self.seed, order=order)

    def batches_per_epoch(self) -> int:
        return self.train.total_numb_batch()

    def state_dict(self) -> dict:
        s = {"train": self.train.state_dict()}
        if self.valid is not None:
            s["valid"] = self.valid.state_dict()
        return s

    def load_state_dict(self, state: dict) -> None:
        self.train.load_state_dict(state["train"])
        if self.valid is not None and "valid" in state:
            self.valid.load_state_dict(state["valid"])


def _tag(key: str) -> int:
    """A stable integer per branch name (Python's hash() is salted per process)."""
    return int.from_bytes(key.encode()[:8].ljust(8, b"\0"), "little") % (2 ** 31)
