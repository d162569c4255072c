"""`dpx change-bias`: a model's energy bias changed on data, as `dp --pt change-bias` does:
by statistic on systems (change: out_bias += the fit of E - E_model; set: out_bias = the
fit of E) over the first numb_batch frames of each system (0: all), or set to given values.
A checkpoint (.pt) is written with only that branch's out_bias/out_std replaced (optimizer
and every other tensor kept); a frozen file (.pth, dpx's or DeePMD-kit's) is written with
its buffers changed. The input is never overwritten."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from dpx.data import check_parameters, load_systems
from dpx.io import checkpoint, is_frozen, load_frozen, params
from dpx.io.load import model_from_state
from dpx.model.bias import adjust_bias
from dpx.model.fitting.ener import parameter_sums, set_parameter_stats
from dpx.model.stat import PROTECTION

log = logging.getLogger(__name__)


def frames_of(systems, numb_batch: int) -> list[dict]:
    """Frames as statistics samples ({coord, atype, box, energy, fparam, aparam and their
    find_ flags}), one per frame: the first numb_batch of each system (0: all)."""
    out = []
    for s in systems:
        n = s.nframes if numb_batch <= 0 else min(numb_batch, s.nframes)
        for i in range(n):
            frame = {"coord": torch.as_tensor(s.coord[i:i + 1]),
                     "atype": torch.as_tensor(s.atype)[None],
                     "box": None if s.box is None else torch.as_tensor(s.box[i:i + 1])}
            for key in ("energy", "fparam", "aparam"):
                if key in s.labels:
                    frame[key] = torch.as_tensor(s.labels[key][i:i + 1])
                    frame[f"find_{key}"] = float(s.find[key][i])
            out.append(frame)
    return out


def output_path(path: Path, output: str | None) -> Path:
    if output:
        return Path(output)
    return path.with_name(f"{path.stem}_updated{path.suffix}")


def run_change_bias(path: str, mode: str, bias: list[float] | None, system: str | None,
                    datafile: str | None, numb_batch: int, branch: str | None,
                    output: str | None) -> int:
    path = Path(path)
    out = output_path(path, output)
    if out.resolve() == path.resolve():
        raise ValueError(f"-o {out}: the output must not be the input file")
    if is_frozen(path):
        if branch is not None:
            raise ValueError(f"{path} is a frozen model; it has no branches (--model-branch)")
        frozen = load_frozen(path)
        model_cfg = params.model_config(frozen.params(), f"{path}:model_def_script")
        target, module = frozen, frozen.module
    else:
        state = checkpoint.load(path)
        model, branch = model_from_state(state, branch, path)
        stored = params.model_params(state, path)
        model_cfg = params.model_config(params.branches(stored)[branch], f"{path}:model_params")
        target, module = model, model
    if bias is not None:
        _set_values(module, model_cfg.type_map, bias)
    else:
        systems = load_systems(_system_list(system, datafile), type_map=model_cfg.type_map,
                               key="--system")
        fit = model_cfg.fitting_net
        check_parameters(systems, fit.numb_fparam, fit.numb_aparam,
                         fit.default_fparam is not None, "--system")
        frames = frames_of(systems, numb_batch)
        adjust_bias(target, model_cfg, frames, change=mode == "change", module=module)
        if mode == "set":
            _set_input_stats(module, model_cfg, frames)
    if is_frozen(path):
        torch.jit.save(module, str(out), _extra_files={"data_modifier.pth": b""})
    else:
        _copy_changed(model, state["model"], f"model.{branch}.")
        checkpoint.atomic_write(out, lambda tmp: torch.save(state, tmp))
    log.info("saved %s", out)
    return 0


@torch.no_grad()
def _copy_changed(model, saved: dict, prefix: str) -> None:
    """The tensors change-bias changed (out_bias, out_std; with -m set the fparam/aparam
    statistics) copied into the checkpoint's state dict in place, so tensors shared between
    branches stay shared; everything else is left as it was."""
    for key, value in model.state_dict().items():
        old = saved.get(prefix + key)
        if isinstance(old, torch.Tensor) and not torch.equal(old, value):
            old.copy_(value)


def _set_input_stats(module, model_cfg, frames: list[dict]) -> None:
    """-m set: the fitting's fparam/aparam statistics from the same frames, as DeePMD-kit 3.2
    recomputes them. Their std is floored at the fixed PROTECTION, not at the model's
    data_stat_protect: DeePMD-kit calls the fitting's compute_input_stats with its default
    protection here (change_model_out_bias), unlike at the start of training."""
    fit = model_cfg.fitting_net
    widths = {n: k for n, k in (("fparam", fit.numb_fparam), ("aparam", fit.numb_aparam)) if k}
    if widths:
        set_parameter_stats(module.atomic_model.fitting_net,
                            parameter_sums(lambda: frames, widths), list(widths), PROTECTION)


def _system_list(system: str | None, datafile: str | None) -> list[str]:
    if datafile:
        lines = Path(datafile).read_text().splitlines()
        return [line.strip() for line in lines if line.strip()]
    return [system or "."]


def _set_values(module, type_map: list[str], values: list[float]) -> None:
    am = module.atomic_model
    if len(values) != len(type_map):
        raise ValueError(f"-b: {len(values)} values for the {len(type_map)} types of the "
                         f"model's type_map {type_map}")
    old = am.out_bias[0, :, 0].detach().cpu().numpy().copy()
    with torch.no_grad():
        am.out_bias.copy_(torch.as_tensor(np.asarray(values), dtype=am.out_bias.dtype)
                          .reshape(am.out_bias.shape))
    log.info("Change output bias of %s from %s to %s.", type_map, old, np.asarray(values))
