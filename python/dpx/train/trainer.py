"""The training loop: single-task and multi-task (deepmd-compat §9, §10).

Every step draws one branch (model_prob weights, seeded and resumable), takes one batch of
that branch's data and one Adam step on that branch's loss. Only the drawn branch runs
forward and backward, so a step costs the same whatever the number of branches.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import torch

from dpx import ops
from dpx.config import Config
from dpx.loss import EnergyLoss
from dpx.model.energy import EnergyModel
from dpx.model.network import mix_entropy
from dpx.train import checkpoint, dist, startup
from dpx.train import finetune as ft
from dpx.train.data import BranchData
from dpx.train.display import LCurve, Progress
from dpx.train.lr import ExpDecayLR
from dpx.train.tasks import TaskSampler
from dpx.train.wrapper import ModelWrapper, unique_parameters

log = logging.getLogger(__name__)
# debugging and tests: verify after every step that all ranks hold the same parameters
_CHECK_SYNC = bool(os.environ.get("DPX_CHECK_SYNC"))


@dataclass
class Task:
    key: str
    model: EnergyModel
    loss: EnergyLoss
    data: BranchData


class Trainer:
    def __init__(self, cfg: Config, restart: str | None = None, init_model: str | None = None,
                 skip_neighbor_stat: bool = False, device: str | None = None,
                 finetune: str | None = None, model_branch: str | None = None,
                 use_pretrain_script: bool = False):
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.rank, self.world = dist.world()
        self.distributed = dist.init(self.device)
        seed = cfg.training.seed
        if seed is not None:
            torch.manual_seed(mix_entropy([self.rank, seed % 2 ** 32]))
        resumed = checkpoint.load(restart) if restart else None
        init = checkpoint.load(init_model) if init_model else None
        if finetune and (restart or init_model):
            raise ValueError("--finetune starts a new run from a pretrained model; it cannot be "
                             "combined with --restart or --init-model")
        if (model_branch is not None or use_pretrain_script) and finetune is None:
            raise ValueError("--model-branch and --use-pretrain-script go with --finetune "
                             "CHECKPOINT")
        # finetune fixes sel to the pretrained model's before any model is built
        pre = ft.prepare(cfg, finetune, model_branch, use_pretrain_script) if finetune else None
        data = {k: BranchData(b, cfg, seed, self.rank, self.world) for k, b in cfg.branches.items()}
        if pre is None:
            self._resolve_sel(data, resumed or init, skip_neighbor_stat)
        self.tasks = {k: Task(k, EnergyModel(b.model), EnergyLoss(b.loss, cfg.learning_rate.start_lr),
                              data[k]) for k, b in cfg.branches.items()}
        self.wrapper = ModelWrapper({k: t.model for k, t in self.tasks.items()},
                                    startup.stored_model_params(cfg))
        self.wrapper.share(cfg.links)
        self.num_steps = startup.num_steps(cfg, data)
        self.lr = ExpDecayLR(cfg.learning_rate, self.num_steps)
        self.lr_scale = dist.lr_scale(cfg.learning_rate.scale_by_worker, self.world)
        self.keys = list(self.tasks)
        same = cfg.training.task_sampling == "same_on_all_ranks"
        self.sampler = TaskSampler(self.keys, startup.task_probabilities(cfg, data), seed,
                                   0 if same else self.rank)
        self.start_step = 0
        self.last_trn: dict[str, dict] = {}
        if resumed is not None:
            self._restore(resumed)
        elif init is not None:
            self.wrapper.load_state_dict(init["model"], strict=False)
        elif pre is not None and self.rank == 0:
            ft.apply(pre, cfg, self.tasks)
        elif self.rank == 0:
            startup.compute_statistics(cfg, self.tasks, self.wrapper)
        self.wrapper.to(self.device)
        if self.distributed:
            dist.broadcast_state(self.wrapper)  # statistics computed once, on rank 0
        self._make_optimizer(resumed)

    def _resolve_sel(self, data, state, skip: bool) -> None:
        """sel from a checkpoint, or from the neighbor statistics of rank 0."""
        if state is not None:
            startup.sel_from_checkpoint(self.cfg, state)
            return
        if self.rank == 0:
            startup.resolve_sel(self.cfg, data, skip)
        if self.distributed:
            found = {k: (b.model.descriptor.sel, data[k].min_nbor_dist)
                     for k, b in self.cfg.branches.items()}
            for k, (sel, dmin) in dist.broadcast_object(found).items():
                self.cfg.branches[k].model.descriptor.sel = sel
                data[k].min_nbor_dist = dmin

    def _make_optimizer(self, resumed) -> None:
        opt = self.cfg.optimizer
        cls = torch.optim.AdamW if opt.type == "AdamW" else torch.optim.Adam
        self.params = unique_parameters(self.wrapper)
        self.optimizer = cls(self.params, lr=self.lr(self.start_step) * self.lr_scale,
                             betas=(opt.adam_beta1, opt.adam_beta2), weight_decay=opt.weight_decay)
        if resumed is not None and "optimizer" in resumed:
            self.optimizer.load_state_dict(resumed["optimizer"])

    # ---------------------------------------------------------------- resume
    def _restore(self, state: dict) -> None:
        self.wrapper.load_state_dict(state["model"])
        extra = state.get("dpx", {})
        # DeePMD-kit stores the index of the last step taken and takes it again on restart;
        # dpx checkpoints also say which step comes next, so a restart continues exactly
        self.start_step = int(extra.get("next_step", self.wrapper.train_infos["step"]))
        if "task_rng" in extra:
            self.sampler.load_state_dict(extra["task_rng"])
        for key, s in extra.get("samplers", {}).items():
            if key in self.tasks:
                self.tasks[key].data.load_state_dict(s)
        if "torch_rng" in extra:
            torch.set_rng_state(extra["torch_rng"])
        log.info("restarting from step %d", self.start_step)

    def _state(self, step: int, lr: float, next_step: int) -> dict:
        self.wrapper.train_infos = {"lr": lr, "step": step}
        return {"model": self.wrapper.state_dict(), "optimizer": self.optimizer.state_dict(),
                "dpx": {"next_step": next_step, "task_rng": self.sampler.state_dict(),
                        "samplers": {k: t.data.state_dict() for k, t in self.tasks.items()},
                        "torch_rng": torch.get_rng_state()}}

    # ---------------------------------------------------------------- the loop
    def step(self, key: str, lr: float) -> dict:
        task = self.tasks[key]
        batch = task.data.next_train(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.lr_scale
        self.optimizer.zero_grad(set_to_none=True)
        with ops.coords_constant_in_second_order():
            pred = task.model(batch["coord"], batch["atype"], batch["box"])
        loss, more = task.loss(pred, batch, lr)
        # only the weights: autograd then skips every term that leads to the coordinates
        # alone (the second derivatives of the embedding in s, the env-mat hvp)
        loss.backward(inputs=self.params)
        if self.distributed:
            dist.sync_gradients(self.params)
        if self.cfg.training.gradient_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.training.gradient_max_norm)
        self.optimizer.step()
        if self.distributed and _CHECK_SYNC:
            dist.check_in_sync(self.params)
        return more

    def run(self) -> None:
        t = self.cfg.training
        lcurve = LCurve(t.disp_file, {k: (task.loss.display_keys(), task.data.has_validation)
                                      for k, task in self.tasks.items()},
                        self.cfg.multi_task, append=self.start_step > 0) if self.rank == 0 else None
        progress = Progress(self.start_step, self.num_steps)
        interval = {k: [] for k in self.keys}  # display values of this interval's steps
        log.info("training %d steps from step %d on %s", self.num_steps, self.start_step,
                 self.device)
        # mode switches walk every module of every branch: once per display, not per step
        self.wrapper.train()
        for s in range(self.start_step, self.num_steps):
            lr = self.lr(s)
            key = self.sampler.draw()
            interval[key].append(self.step(key, lr))
            display_step = s + 1
            if lcurve is not None and (display_step % t.disp_freq == 0 or display_step == 1):
                values = self.evaluate(interval, lr)
                lcurve.write(display_step, values, lr)
                progress.report(display_step, lr, {k: len(v) for k, v in interval.items()},
                                {k: {m: v[1] for m, v in vals.items()} for k, vals in values.items()})
                interval = {k: [] for k in self.keys}
                self.wrapper.train()
            if self.rank == 0 and (display_step == self.num_steps or
                                   (display_step % t.save_freq == 0 and s != self.start_step)):
                checkpoint.save(self._state(s, lr, s + 1), t.save_ckpt, display_step,
                                t.max_ckpt_keep)
        if self.num_steps == 0 and self.rank == 0:
            checkpoint.save(self._state(0, self.lr(0), 0), t.save_ckpt, 0, t.max_ckpt_keep)
        if lcurve is not None:
            lcurve.close()
        log.info("finished %d steps in %.1f s", self.num_steps - self.start_step,
                 progress.total_time())

    def evaluate(self, interval: dict, lr: float) -> dict[str, dict[str, tuple[float, float]]]:
        """{branch: {metric: (val, trn)}}. trn: the branch's last step (the interval's mean
        with disp_avg); a branch that took no step in the interval keeps its last value, so
        displaying costs no extra forward passes per branch (only a branch that never
        stepped is evaluated on a fresh batch). val: numb_btch validation batches weighted by
        atom count (§9.2)."""
        out = {}
        self.wrapper.eval()
        for key, task in self.tasks.items():
            steps = interval[key]
            if steps:
                self.last_trn[key] = (_mean(steps) if self.cfg.training.disp_avg else steps[-1])
            elif key not in self.last_trn:
                self.last_trn[key] = self._eval_batch(task, task.data.next_train(self.device), lr)
            trn = self.last_trn[key]
            val = {}
            if task.data.has_validation:
                vals = [(self._eval_batch(task, b, lr), b["atype"].shape[1])
                        for b in task.data.valid_batches(self.device)]
                total = sum(n for _, n in vals)
                val = {m: sum(v[m] * n for v, n in vals) / total for m in vals[0][0]}
            out[key] = {m: (val.get(m, math.nan), trn[m]) for m in trn}
        return out

    def _eval_batch(self, task: Task, batch: dict, lr: float) -> dict:
        pred = task.model(batch["coord"], batch["atype"], batch["box"])
        pred = {k: v.detach() for k, v in pred.items()}
        _, more = task.loss(pred, batch, lr)
        return more


def _mean(values: list[dict]) -> dict:
    return {m: sum(v[m] for v in values) / len(values) for m in values[0]}
