"""`dpx freeze`: one branch of a checkpoint as a TorchScript file with DeePMD-kit's
frozen-model interface (deepmd-compat §13.1)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from dpx.export.frozen import FrozenEnergyModel
from dpx.infer.model_io import branches_of, load_model

log = logging.getLogger(__name__)


def build(checkpoint: str | Path = ".", head: str | None = None) -> torch.jit.ScriptModule:
    """The scripted frozen model of branch `head` of a checkpoint (file, or folder with a
    `checkpoint` file)."""
    model, extra = load_model(checkpoint, head)
    params = branches_of(extra["model_params"])[head or "Default"]
    frozen = FrozenEnergyModel(model, json.dumps(params))
    return torch.jit.script(frozen.eval())


def freeze(checkpoint: str | Path = ".", output: str | Path = "frozen_model.pth",
           head: str | None = None) -> Path:
    """Write branch `head` of `checkpoint` to `output` (suffix forced to .pth, as DeePMD-kit
    does); DeePMD-kit's DeepPot, `dp --pt test` and LAMMPS `pair_style deepmd` load it."""
    output = Path(output).with_suffix(".pth")
    scripted = build(checkpoint, head)
    if output.parent and not output.parent.exists():
        raise FileNotFoundError(f"cannot write {output}: folder {output.parent} does not exist")
    torch.jit.save(scripted, str(output), _extra_files={"data_modifier.pth": b""})
    log.info("saved frozen model %s (type_map %s, rcut %g, sel %s)", output,
             " ".join(scripted.get_type_map()), scripted.get_rcut(), scripted.get_sel())
    return output
