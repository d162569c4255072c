"""The training loop: single-task and multi-task (deepmd-compat §9, §10).

Every step draws one branch (model_prob weights, seeded and resumable), takes one batch of
that branch's data and one Adam step on that branch's loss. Only the drawn branch runs
forward and backward, so a step costs the same whatever the number of branches. The parts
(models, losses, data, the wrapper that shares parameters) come from dpx.train.startup.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from dpx.config import Config
from dpx.data.frames import BadFrame
from dpx.io import checkpoint
from dpx.model.bias import adjust_bias
from dpx.model.energy import model_inputs
from dpx.train import branches as branch_util
from dpx.train import dist
from dpx.train.branches import BranchRun, BranchSampler
from dpx.train.display import LCurve, Progress
from dpx.train.lr import LearningRate
from dpx.train.run_files import RunFiles, truncate_lcurve
from dpx.train.wrapper import ModelWrapper, unique_parameters

log = logging.getLogger(__name__)
# debugging and tests: verify after every step that all ranks hold the same parameters
_CHECK_SYNC = bool(os.environ.get("DPX_CHECK_SYNC"))


class Trainer:
    """Wires the parts of a run: the learning rate, the branch sampler and the optimizer over
    the wrapper's parameters (each shared one once); restore() continues a checkpoint."""

    def __init__(self, cfg: Config, branches: dict[str, BranchRun], wrapper: ModelWrapper,
                 device: torch.device, rank: int = 0, world: int = 1,
                 distributed: bool = False, files: RunFiles | None = None):
        self.cfg, self.branches, self.wrapper, self.device = cfg, branches, wrapper, device
        self.files = files
        self.written: list[str] = []  # this run's checkpoint files, oldest first (pruning)
        self.rank, self.world, self.distributed = rank, world, distributed
        data = {k: b.data for k, b in branches.items()}
        self.num_steps = branch_util.num_steps(cfg, data)
        self.lr = LearningRate(cfg.learning_rate, self.num_steps)
        self.lr_scale = dist.lr_scale(cfg.learning_rate.scale_by_worker, world)
        self.names = list(branches)
        same = cfg.training.task_sampling == "same_on_all_ranks"
        prob = branch_util.probabilities(cfg, data)
        if cfg.multi_task:
            log.info("branch probabilities %s: %s", dict(zip(self.names, prob.round(4).tolist())),
                     branch_util.weighting_rule(cfg))
        self.sampler = BranchSampler(self.names, prob, cfg.training.seed, 0 if same else rank)
        self.start_step = 0
        opt = cfg.optimizer
        cls = torch.optim.AdamW if opt.type == "AdamW" else torch.optim.Adam
        self.params = unique_parameters(wrapper)
        # fused: the whole update of a parameter in one pass over its memory. The loop that
        # DeePMD-kit runs (and foreach, on CPU) makes ~8 passes: 5-7 ms of a ~95 ms step on the
        # CPU of benchmarks/RESULTS.md against 1.8 fused. Its rounding differs from the loop's:
        # the water example's weights after 200 steps agree to 5e-14 relative, the size of the
        # differences the kernels' summation order makes already; restarts stay exact (it is
        # deterministic).
        self.optimizer = cls(self.params, lr=self.lr(0) * self.lr_scale,
                             betas=(opt.adam_beta1, opt.adam_beta2), weight_decay=opt.weight_decay,
                             fused=True)

    # ---------------------------------------------------------------- resume
    def restore(self, state: dict) -> None:
        """Continue where a checkpoint's run stopped: optimizer, step, branch draws, data
        streams and the torch RNG (the weights are loaded before the parts are wired)."""
        if "optimizer" in state:
            # a saved group brings its own flags (DeePMD-kit's: fused False); said fused before
            # loading, torch also moves each Adam step count to its parameter's device, which
            # the fused update on CUDA needs
            saved = state["optimizer"]
            groups = [{**g, "foreach": None, "fused": True} for g in saved["param_groups"]]
            self.optimizer.load_state_dict({**saved, "param_groups": groups})
        extra = state.get("dpx", {})
        # DeePMD-kit stores the index of the last step taken and takes it again on restart;
        # dpx checkpoints also say which step comes next, so a restart continues exactly
        self.start_step = int(extra.get("next_step", self.wrapper.train_infos["step"]))
        if "task_rng" in extra:
            self.sampler.load_state_dict(extra["task_rng"])
        for name, s in extra.get("samplers", {}).items():
            if name in self.branches:
                self.branches[name].data.load_state_dict(s)
        if "torch_rng" in extra:
            torch.set_rng_state(extra["torch_rng"])
        self.written = list(extra.get("written", []))
        log.info("restarting from step %d", self.start_step)

    def _state(self, step: int, lr: float, next_step: int) -> dict:
        self.wrapper.train_infos = {"lr": lr, "step": step}
        optimizer = self.optimizer.state_dict()
        for group in optimizer["param_groups"]:  # what DeePMD-kit's files say (its defaults)
            group["foreach"], group["fused"] = None, False
        return {"model": self.wrapper.state_dict(), "optimizer": optimizer,
                "dpx": {"next_step": next_step, "task_rng": self.sampler.state_dict(),
                        "samplers": {k: b.data.state_dict() for k, b in self.branches.items()},
                        "torch_rng": torch.get_rng_state(), "written": list(self.written)}}

    def save(self, step: int, lr: float, next_step: int) -> None:
        """Checkpoint <save_ckpt>-<next_step>.pt, then prune the oldest files this run wrote
        beyond max_ckpt_keep."""
        t = self.cfg.training
        name = checkpoint.file_name(t.save_ckpt, next_step).name
        self.written = [w for w in self.written if w != name] + [name]
        checkpoint.save(self._state(step, lr, next_step), t.save_ckpt, next_step)
        self.written = checkpoint.prune(t.save_ckpt, self.written, t.max_ckpt_keep)

    # ---------------------------------------------------------------- the loop
    def step(self, name: str, lr: float) -> dict:
        branch = self.branches[name]
        batch = branch.data.next_train(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.lr_scale
        self.optimizer.zero_grad(set_to_none=True)
        pred = branch.model(batch["coord"], batch["atype"], batch["box"],
                            **model_inputs(batch))
        loss, more = branch.loss(pred, batch, lr)
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
        try:
            if self._nothing_to_train():
                return
            self._run()
        except dist.LostRank as e:
            e.checkpoint = self._last_checkpoint()
            raise
        finally:
            if self.files is not None:
                self.files.unlock()

    def _last_checkpoint(self) -> str:
        """The checkpoint a restart would continue: the one the `checkpoint` file names
        (rank 0 writes it; the other ranks of this host read it)."""
        try:
            return str(checkpoint.resolve(Path(self.cfg.training.save_ckpt).parent))
        except OSError:  # FileNotFoundError: no pointer, or the file it names is gone
            return "none (none written yet)"

    def _nothing_to_train(self) -> bool:
        """A restart whose checkpoint is at or past the run's last step: said, and nothing
        written or removed (lcurve.out rows, checkpoints), since no step runs."""
        if self.start_step == 0 or self.start_step < self.num_steps:
            return False
        log.warning("nothing to train: the checkpoint is at step %d and the run has %d steps "
                    "(training/numb_steps); raise numb_steps to continue it. No file changed",
                    self.start_step, self.num_steps)
        return True

    def _run(self) -> None:
        t = self.cfg.training
        if self.rank == 0 and self.start_step > 0:
            truncate_lcurve(Path(t.disp_file), self.start_step)
        lcurve = LCurve(t.disp_file, {k: (b.loss.display_keys(), b.data.has_validation)
                                      for k, b in self.branches.items()},
                        self.cfg.multi_task, append=self.start_step > 0) if self.rank == 0 else None
        progress = Progress(self.start_step, self.num_steps)
        interval = {k: [] for k in self.names}  # display values of this interval's steps
        log.info("training %d steps from step %d on %s", self.num_steps, self.start_step,
                 self.device)
        # mode switches walk every module of every branch: once per display, not per step
        self.wrapper.train()
        prof = self._profiler()
        try:
            self._steps(lcurve, progress, interval, prof)
        except BadFrame as err:
            self._stop_on_bad_frame(err)
        if prof is not None:
            self._finish_profile(prof)
        if (t.change_bias_after_training and self.num_steps > self.start_step
                and self.rank == 0):
            self.change_bias()
        if self.num_steps == 0 and self.rank == 0:
            # no step: the initial model's errors, and its checkpoint
            lcurve.write(0, self.evaluate({k: [] for k in self.names}, self.lr(0)), self.lr(0))
            self.save(0, self.lr(0), 0)
        if lcurve is not None:
            lcurve.close()
        log.info("finished %d steps in %.1f s", self.num_steps - self.start_step,
                 progress.total_time())

    def _steps(self, lcurve, progress, interval, prof) -> None:
        """The training steps, each with its display and checkpoint when due."""
        t = self.cfg.training
        self.done = self.start_step  # steps whose update is in the weights
        for s in range(self.start_step, self.num_steps):
            if prof is not None:
                prof.step()
            lr = self.lr(s)
            name = self.sampler.draw()
            interval[name].append(self.step(name, lr))
            self.done = s + 1
            display_step = s + 1
            if display_step % t.disp_freq == 0 or display_step == 1:
                if lcurve is not None:
                    values = self.evaluate(interval, lr, name)
                    lcurve.write(display_step, values, lr)
                    progress.report(display_step, lr, {k: len(v) for k, v in interval.items()},
                                    {k: {m: v[1] for m, v in vals.items()}
                                     for k, vals in values.items()})
                    self.wrapper.train()
                else:  # rank 0's report draws these; every rank's streams stay aligned
                    for k in self._scored_fresh(interval, name):
                        self.branches[k].data.next_train(self.device)
                interval = {k: [] for k in self.names}
            if self.rank == 0 and (display_step == self.num_steps or
                                   (display_step % t.save_freq == 0 and s != self.start_step)):
                self.save(s, lr, display_step)

    def _stop_on_bad_frame(self, err: BadFrame) -> None:
        """A frame that cannot be read mid-run (corrupt, cut short, NaN): the steps done are
        kept in a checkpoint (rank 0 writes them; all ranks hold the same weights), then the
        run stops with the file and frame named (rc 2). The sampler's state there is past
        the failed draw, so a restart continues with the next batch."""
        if self.rank == 0 and self.done > self.start_step:
            self.save(self.done - 1, self.lr(self.done - 1), self.done)
        raise BadFrame(f"{err}; stopped before step {self.done}, the steps done are in "
                       f"{self._last_checkpoint()}: repair or remove the file, then continue "
                       "with --restart") from None

    def _profiler(self):
        """training/profiling, enable_profiler: torch.profiler as DeePMD-kit schedules it."""
        t = self.cfg.training
        if not (t.profiling or t.enable_profiler) or self.rank != 0:
            return None
        handler = (torch.profiler.tensorboard_trace_handler(t.tensorboard_log_dir)
                   if t.enable_profiler else None)
        prof = torch.profiler.profile(
            schedule=torch.profiler.schedule(wait=1, warmup=15, active=3, repeat=1),
            on_trace_ready=handler, record_shapes=True, with_stack=True)
        prof.start()
        return prof

    def _finish_profile(self, prof) -> None:
        t = self.cfg.training
        prof.stop()
        if t.enable_profiler:
            log.info("profiling traces saved under %s", t.tensorboard_log_dir)
        elif self.num_steps - self.start_step < 20:
            log.warning("profiling: %d steps are too few for the profiler's schedule (1 "
                        "skipped, 15 warm-up, 3 recorded); no trace written",
                        self.num_steps - self.start_step)
        else:
            prof.export_chrome_trace(t.profiling_file)
            log.info("profiling trace saved to %s", t.profiling_file)

    def change_bias(self) -> None:
        """training/change_bias_after_training: each branch's out_bias changed by statistic on
        its statistics frames, and the last checkpoint written again with it."""
        for name, branch in self.branches.items():
            model_cfg = self.cfg.branches[name].model
            log.info("branch %s: changing the energy bias after training", name)
            adjust_bias(branch.model, model_cfg, branch.data.stat_frames(model_cfg.data_stat_nbatch),
                        change=True)
        last = self.num_steps - 1
        self.save(last, self.lr(last), self.num_steps)

    def evaluate(self, interval: dict, lr: float, stepped: str | None = None
                 ) -> dict[str, dict[str, tuple[float, float]]]:
        """{branch: {metric: (val, trn)}}. trn as DeePMD-kit 3.2.0 shows it (deepmd/pt/train/
        training.py, the display block; deepmd-compat §9.3): the branch `stepped`, which took
        this display step, shows that step's values; every other branch is scored on one
        fresh batch of its training data, drawn from the stream its steps draw from (so its
        later batches are dp's too). With disp_avg a branch shows the mean of its steps in
        the interval, a fresh batch where it took none. val: numb_btch validation batches
        weighted by atom count (§9.2)."""
        out = {}
        fresh = self._scored_fresh(interval, stepped)
        self.wrapper.eval()
        for name, branch in self.branches.items():
            if name in fresh:
                trn = self._eval_batch(branch, branch.data.next_train(self.device), lr)
            else:
                steps = interval[name]
                trn = _mean(steps) if self.cfg.training.disp_avg else steps[-1]
            val = {}
            if branch.data.has_validation:
                vals = [(self._eval_batch(branch, b, lr), b["atype"].shape[1])
                        for b in branch.data.valid_batches(self.device)]
                total = sum(n for _, n in vals)
                val = {m: sum(v[m] * n for v, n in vals) / total for m in vals[0][0]}
            out[name] = {m: (val.get(m, math.nan), trn[m]) for m in trn}
        return out

    def _scored_fresh(self, interval: dict, stepped: str | None) -> list[str]:
        """The branches a report scores on a fresh training batch (see evaluate)."""
        avg = self.cfg.training.disp_avg
        return [k for k, steps in interval.items() if not (steps and (k == stepped or avg))]

    def _eval_batch(self, branch: BranchRun, batch: dict, lr: float) -> dict:
        pred = branch.model(batch["coord"], batch["atype"], batch["box"],
                            **model_inputs(batch))
        pred = {k: v.detach() for k, v in pred.items()}
        _, more = branch.loss(pred, batch, lr)
        return more


def _mean(values: list[dict]) -> dict:
    return {m: sum(v[m] for v in values) / len(values) for m in values[0]}
