"""The dpx / DeePMD-kit input, one dataclass per section: every default stated once.

Defaults are those DeePMD-kit's argument checker applies to `dp train` (deepmd-compat §7.1,
§8, §9; descriptors and fittings in descriptor.py and fitting.py). Value constraints live in
each section's `check`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from dpx.config.descriptor import DescriptorConfig
from dpx.config.fitting import EnergyFittingConfig, FittingConfig
from dpx.config.schema import at_least, fail, keyed
from dpx.plugin import RegisteredSection


@dataclass
class ModelConfig:
    """One energy model (a single task, or one branch of a multi-task input)."""
    type_map: list[str]
    descriptor: keyed(*DescriptorConfig.kinds())
    fitting_net: keyed(*FittingConfig.kinds()) = field(default_factory=EnergyFittingConfig)
    type: str = "standard"
    data_stat_nbatch: int = 10
    data_stat_protect: float = 1e-2
    pair_exclude_types: list[list[int]] = field(default_factory=list)
    atom_exclude_types: list[int] = field(default_factory=list)
    preset_out_bias: dict[str, list[float | None]] | None = None
    finetune_head: str | None = None
    info: dict[str, Any] | None = None
    # accepted because DeePMD-kit writes them into out.json and checkpoints; no effect here
    data_bias_nsample: int = 10
    srtab_add_bias: bool = True
    model_branch_alias: list[str] = field(default_factory=list)
    bridging_method: str = "None"
    bridging_r_inner: float = 0.5
    bridging_r_outer: float = 0.8

    def check(self, path):
        if not self.type_map or len(set(self.type_map)) != len(self.type_map):
            fail(f"{path}/type_map", f"must be a non-empty list of distinct element names, "
                                     f"got {self.type_map}")
        ntypes = len(self.type_map)
        self.descriptor.check_types(f"{path}/descriptor", ntypes)
        for pair in self.descriptor.exclude_types + self.pair_exclude_types:
            if any(not 0 <= t < ntypes for t in pair):
                fail(f"{path}/descriptor/exclude_types", f"type index out of range in {pair}")
        if any(not 0 <= t < ntypes for t in self.atom_exclude_types):
            fail(f"{path}/atom_exclude_types", f"type indices must lie in [0, {ntypes}) "
                                               f"(type_map), got {self.atom_exclude_types}")
        at_least(path, self, ("data_stat_nbatch", "data_bias_nsample"), 1)
        at_least(path, self, ("data_stat_protect",), 0)  # the floor of a std
        if self.type != "standard":
            fail(f"{path}/type", f"dpx builds standard energy models, got '{self.type}'")
        if self.bridging_method != "None":
            fail(f"{path}/bridging_method", "is not supported by dpx (must be 'None')")


class LossConfig(RegisteredSection):
    """The base of the loss sections (`loss`, `loss_dict/<branch>`); a subclass with TYPES is
    a choice of loss/type (the first defined is the default)."""
    REGISTRY = {}


@dataclass
class EnergyLossConfig(LossConfig):
    """The `ener` loss; deepmd-compat §7.1."""
    type: str = "ener"
    start_pref_e: float = 0.02
    limit_pref_e: float = 1.0
    start_pref_f: float = 1000.0
    limit_pref_f: float = 1.0
    start_pref_v: float = 0.0
    limit_pref_v: float = 0.0
    start_pref_ae: float = 0.0
    limit_pref_ae: float = 0.0
    start_pref_pf: float = 0.0
    limit_pref_pf: float = 0.0
    relative_f: float | None = None
    enable_atom_ener_coeff: bool = False
    use_default_pf: bool = False
    loss_func: str = "mse"
    intensive_ener_virial: bool = False
    use_huber: bool = False
    f_use_norm: bool = False
    huber_delta: Union[float, list[float]] = 0.01
    TYPES = ("ener",)

    def check(self, path):
        # a negative prefactor rewards the error it weights: training drives it up
        at_least(path, self, [f"{kind}_pref_{t}" for t in ("e", "f", "v", "ae", "pf")
                              for kind in ("start", "limit")], 0)
        if self.loss_func not in ("mse", "mae"):
            fail(f"{path}/loss_func", f"must be 'mse' or 'mae', got '{self.loss_func}'")
        deltas = self.huber_delta if isinstance(self.huber_delta, list) else [self.huber_delta]
        if any(not d > 0 for d in deltas):
            fail(f"{path}/huber_delta", f"must be > 0 (where the loss turns linear), "
                                        f"got {self.huber_delta}")
        if self.relative_f is not None and not self.relative_f > 0:
            fail(f"{path}/relative_f", f"must be > 0 (it is added to |F| before dividing by "
                                       f"it), got {self.relative_f}")
        for key in ("enable_atom_ener_coeff", "use_huber", "f_use_norm"):
            if getattr(self, key):
                fail(f"{path}/{key}", "is not supported by dpx yet (the mse and mae losses "
                                      "are); remove it or set it to false")


@dataclass
class LearningRateConfig:
    """deepmd-compat §8: exp, cosine or wsd, with optional warmup (dpx.train.lr)."""
    start_lr: float = 1e-3
    type: str = "exp"
    stop_lr: float | None = None
    stop_lr_ratio: float | None = None
    decay_steps: int = 5000
    decay_rate: float | None = None
    smooth: bool = False
    warmup_steps: int = 0
    warmup_ratio: float | None = None
    warmup_start_factor: float = 0.0
    decay_phase_ratio: float = 0.1      # wsd
    decay_type: str = "inverse_linear"  # wsd: inverse_linear, cosine or linear
    scale_by_worker: str = "none"  # DeePMD-kit says "linear" but its PyTorch backend ignores it

    def check(self, path):
        if self.type not in ("exp", "cosine", "wsd"):
            fail(f"{path}/type", f"dpx implements the 'exp', 'cosine' and 'wsd' schedules, "
                                 f"got '{self.type}'")
        if not 0 < self.decay_phase_ratio <= 1:
            fail(f"{path}/decay_phase_ratio", f"must lie in (0, 1], got {self.decay_phase_ratio}")
        if self.decay_type not in ("inverse_linear", "cosine", "linear"):
            fail(f"{path}/decay_type", f"must be inverse_linear, cosine or linear, "
                                       f"got '{self.decay_type}'")
        if not self.start_lr > 0:
            fail(f"{path}/start_lr", f"must be > 0, got {self.start_lr}")
        if self.stop_lr is not None and self.stop_lr_ratio is not None:
            fail(f"{path}/stop_lr_ratio", "give stop_lr or stop_lr_ratio, not both")
        if self.stop_lr is None:
            self.stop_lr = self.start_lr * self.stop_lr_ratio if self.stop_lr_ratio else 5e-8
        # DeePMD-kit's rules: a rate never negative (wsd's inverse_linear divides by it)
        if self.stop_lr < 0 or (self.type == "wsd" and self.stop_lr <= 0):
            key = "stop_lr_ratio" if self.stop_lr_ratio is not None else "stop_lr"
            fail(f"{path}/{key}", f"gives stop_lr = {self.stop_lr:g}; it must be "
                                  f"{'> 0 for wsd' if self.type == 'wsd' else '>= 0'}")
        if self.stop_lr > self.start_lr:
            key = "stop_lr_ratio" if self.stop_lr_ratio is not None else "stop_lr"
            fail(f"{path}/{key}", f"gives stop_lr = {self.stop_lr:g} above start_lr = "
                                  f"{self.start_lr:g}; the exponential decay would hold the "
                                  f"rate at stop_lr for the whole run")
        if self.decay_steps < 1:
            fail(f"{path}/decay_steps", f"must be >= 1, got {self.decay_steps}")
        if self.decay_rate is not None and not 0 < self.decay_rate <= 1:
            fail(f"{path}/decay_rate", f"must lie in (0, 1], got {self.decay_rate}")
        at_least(path, self, ("warmup_steps", "warmup_start_factor"), 0)
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            fail(f"{path}/warmup_ratio", f"must lie in [0, 1), got {self.warmup_ratio}")
        if self.scale_by_worker not in ("linear", "sqrt", "none"):
            fail(f"{path}/scale_by_worker", f"must be linear, sqrt or none, "
                                            f"got '{self.scale_by_worker}'")


@dataclass
class DataConfig:
    """training_data / validation_data; deepmd-compat §1.5, §1.6."""
    systems: Union[str, list[str]]
    batch_size: Union[int, str, list[int]] = "auto"
    auto_prob: str = "prob_sys_size"
    sys_probs: list[float] | None = None
    numb_btch: int = 1
    format: str | None = None
    ALIASES = {"numb_batch": "numb_btch", "auto_prob_style": "auto_prob", "fmt": "format"}

    def check(self, path):
        if isinstance(self.systems, list) and not self.systems:
            fail(f"{path}/systems", "must name at least one system")
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            fail(f"{path}/batch_size", f"must be >= 1, got {self.batch_size}")
        if isinstance(self.batch_size, str):
            head, _, n = self.batch_size.partition(":")
            if head not in ("auto", "max", "filter") or (n and not n.isdigit()) or \
                    (head != "auto" and not n):
                # mix:N needs batches across Systems padded with phantom atoms (atype -1,
                # which the model already skips), a loss per frame's real atoms and
                # DeePMD-kit's LMDB batch order (deepmd-compat §1.5)
                mix = ("; DeePMD-kit's 'mix:N' (frames of several atom counts padded into one "
                       "batch) is not implemented, 'max:N' is the nearest" if head == "mix"
                       else "")
                fail(f"{path}/batch_size", f"must be an integer, a list, 'auto', 'auto:N', "
                                           f"'max:N' or 'filter:N', got '{self.batch_size}'"
                                           f"{mix}")
        if self.numb_btch < 1:
            fail(f"{path}/numb_btch", f"must be >= 1, got {self.numb_btch}")


@dataclass
class BranchDataConfig:
    """What each branch of training/data_dict holds (the whole training section, single task)."""
    training_data: DataConfig
    validation_data: DataConfig | None = None
    stat_file: str | None = None


@dataclass
class OptimizerConfig:
    type: str = "Adam"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0

    def check(self, path):
        if self.type not in ("Adam", "AdamW"):
            fail(f"{path}/type", f"dpx implements Adam and AdamW, got '{self.type}'")
        # torch.optim's own rules, checked here so that the error names the key
        for key in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, key) < 1:
                fail(f"{path}/{key}", f"must lie in [0, 1), got {getattr(self, key)}")
        at_least(path, self, ("weight_decay",), 0)


@dataclass
class TrainingConfig:
    """deepmd-compat §9 (training section). Multi-task keys: model_prob, data_dict,
    num_epoch_dict (§10)."""
    training_data: DataConfig | None = None
    validation_data: DataConfig | None = None
    stat_file: str | None = None
    numb_steps: int | None = None
    numb_epoch: float | None = None
    seed: int | None = None
    disp_file: str = "lcurve.out"
    disp_freq: int = 1000
    save_freq: int = 1000
    save_ckpt: str = "model.ckpt"
    max_ckpt_keep: int = 5
    disp_training: bool = True
    time_training: bool = True
    disp_avg: bool = False
    gradient_max_norm: float = 0.0
    change_bias_after_training: bool = False
    model_prob: dict[str, float] | None = None
    data_dict: dict[str, BranchDataConfig] | None = None
    num_epoch_dict: dict[str, float] | None = None
    task_sampling: str = "per_rank"
    # profiling / enable_profiler: torch.profiler over steps 2-19 (DeePMD-kit's schedule), a
    # Chrome trace in profiling_file, or TensorBoard traces in tensorboard_log_dir
    profiling: bool = False
    profiling_file: str = "timeline.json"
    enable_profiler: bool = False
    tensorboard: bool = False
    tensorboard_log_dir: str = "log"
    tensorboard_freq: int = 1
    zero_stage: int = 0
    ALIASES = {"stop_batch": "numb_steps", "num_steps": "numb_steps",
               "num_epoch": "numb_epoch", "numb_epochs": "numb_epoch"}

    def check(self, path):
        if self.numb_steps is not None and self.numb_epoch is not None:
            fail(f"{path}/numb_epoch", "give numb_steps or numb_epoch, not both")
        if self.numb_steps is not None and self.numb_steps < 0:
            fail(f"{path}/numb_steps", f"must be >= 0, got {self.numb_steps}")
        if self.numb_epoch is not None and not self.numb_epoch > 0:
            fail(f"{path}/numb_epoch", f"must be > 0, got {self.numb_epoch}")
        at_least(path, self, ("disp_freq", "save_freq", "max_ckpt_keep", "tensorboard_freq"), 1)
        if self.task_sampling not in ("per_rank", "same_on_all_ranks"):
            fail(f"{path}/task_sampling", f"must be 'per_rank' or 'same_on_all_ranks', "
                                          f"got '{self.task_sampling}'")
        if self.tensorboard:
            fail(f"{path}/tensorboard", "is not supported by dpx (lcurve.out has the same "
                                        "curves); remove it or set it to false")
        if self.zero_stage != 0:
            fail(f"{path}/zero_stage", f"dpx's data-parallel training keeps a full copy of the "
                                       f"model and optimizer on every rank (stage 0); got "
                                       f"{self.zero_stage}")
