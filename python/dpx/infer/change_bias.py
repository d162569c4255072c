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

from dpx.data import load_systems
from dpx.io import checkpoint, is_frozen, load_frozen, params
from dpx.io.load import model_from_state
from dpx.model.bias import adjust_bias

log = logging.getLogger(__name__)


def frames_of(systems, numb_batch: int) -> list[dict]:
    """Frames as statistics samples ({coord, atype, box, energy, find_energy}), one per frame:
    the first numb_batch of each system (0: all)."""
    out = []
    for s in systems:
        n = s.nframes if numb_batch <= 0 else min(numb_batch, s.nframes)
        for i in range(n):
            out.append({"coord": torch.as_tensor(s.coord[i:i + 1]),
                        "atype": torch.as_tensor(s.atype)[None],
                        "box": None if s.box is None else torch.as_tensor(s.box[i:i + 1]),
                        "energy": torch.as_tensor(s.labels["energy"][i:i + 1]),
                        "find_energy": float(s.find["energy"][i])})
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
        adjust_bias(target, model_cfg, frames_of(systems, numb_batch), change=mode == "change",
                    module=module)
    if is_frozen(path):
        torch.jit.save(module, str(out), _extra_files={"data_modifier.pth": b""})
    else:
        prefix = f"model.{branch}.atomic_model."
        for name in ("out_bias", "out_std"):
            state["model"][prefix + name] = getattr(model.atomic_model, name).detach().clone()
        checkpoint.atomic_write(out, lambda tmp: torch.save(state, tmp))
    log.info("saved %s", out)
    return 0


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
