"""`dpx freeze`: one branch of a checkpoint as a TorchScript file with DeePMD-kit's
frozen-model interface (deepmd-compat §13.1)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from dpx.export.frozen import FrozenEnergyModel
from dpx.io import is_frozen, load_model, params

log = logging.getLogger(__name__)


def build(checkpoint: str | Path = ".", branch: str | None = None) -> torch.jit.ScriptModule:
    """The scripted frozen model of branch `branch` of a checkpoint (file, or folder with a
    `checkpoint` file)."""
    if is_frozen(checkpoint):
        raise ValueError(f"{checkpoint} is a frozen model already; dpx freeze -c takes a "
                         f"checkpoint (.pt) or a folder with a 'checkpoint' file")
    model, stored = load_model(checkpoint, branch)
    section = params.branches(stored)[params.select_branch(stored, branch, checkpoint)]
    frozen = FrozenEnergyModel.from_model(model, json.dumps(section))
    return frozen.script()


def freeze(checkpoint: str | Path = ".", output: str | Path = "frozen_model.pth",
           branch: str | None = None) -> Path:
    """Write branch `branch` of `checkpoint` to `output` (suffix forced to .pth, as DeePMD-kit
    does); DeePMD-kit's DeepPot, `dp --pt test` and LAMMPS `pair_style deepmd` load it."""
    output = Path(output).with_suffix(".pth")
    scripted = build(checkpoint, branch)
    if output.parent and not output.parent.exists():
        raise FileNotFoundError(f"cannot write {output}: folder {output.parent} does not exist")
    torch.jit.save(scripted, str(output), _extra_files={"data_modifier.pth": b""})
    log.info("saved frozen model %s (type_map %s, rcut %g, sel %s)", output,
             " ".join(scripted.get_type_map()), scripted.get_rcut(), scripted.get_sel())
    return output
