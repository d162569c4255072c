"""`dpx compress`: a frozen model whose embedding nets are tables (DeePMD-kit's `dp --pt
compress` options and defaults), from a checkpoint branch or a dpx frozen file."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from dpx.export.frozen import FrozenEnergyModel
from dpx.io import is_frozen, load_model, params
from dpx.io.load import model_from_params

log = logging.getLogger(__name__)


def compress(source: str | Path, output: str | Path = "frozen_model_compressed.pth",
             step: float = 0.01, extrapolate: float = 5, check_frequency: int = -1,
             training_script: str | None = None, branch: str | None = None) -> Path:
    """Write the compressed frozen model of `source` (a checkpoint, its branch `branch`, or a
    dpx frozen file) to `output` (suffix forced to .pth)."""
    t0 = time.perf_counter()
    model, section = _eager(source, branch)
    min_dist = _min_nbor_dist(model, training_script, source)
    frozen = FrozenEnergyModel.from_model(model, json.dumps(section))
    ranges = frozen.atomic_model.descriptor.enable_compression(min_dist, step, extrapolate,
                                                               check_frequency)
    for name, (ll, uu) in ranges.items():
        log.info("%s: table on [%g, %g) by %g, to %g by %g", name, ll, uu, step,
                 uu * extrapolate, 10 * step)
    scripted = frozen.script()
    output = Path(output).with_suffix(".pth")
    if output.parent and not output.parent.exists():
        raise FileNotFoundError(f"cannot write {output}: folder {output.parent} does not exist")
    torch.jit.save(scripted, str(output), _extra_files={"data_modifier.pth": b""})
    log.info("saved compressed model %s (min_nbor_dist %.4g, %d tables) in %.1f s", output,
             min_dist, len(ranges), time.perf_counter() - t0)
    return output


def _eager(source, branch):
    """(dpx EnergyModel, its model section) of a checkpoint branch or a dpx frozen file."""
    if not is_frozen(source):
        model, stored = load_model(source, branch)
        return model, params.branches(stored)[params.select_branch(stored, branch, source)]
    frozen, _ = load_model(source, branch)
    section = frozen.params()
    if not section:
        raise ValueError(f"{source} holds no model definition (model_def_script): compress "
                         f"its checkpoint instead")
    model = model_from_params(section, frozen.module.state_dict(), source)
    return model, section


def _min_nbor_dist(model, training_script, source) -> float:
    """The closest pair of the training data: stored in the model, or computed from the data
    of training_script (an input file)."""
    stored = float(model.min_nbor_dist)
    if stored > 0:
        return stored
    if training_script is None:
        raise ValueError(f"{source} does not record min_nbor_dist (the closest pair of its "
                         f"training data, where the tables start); give the training input "
                         f"with -t input.json")
    from dpx.config import load_input
    from dpx.data import load_systems
    from dpx.nlist.stat import neighbor_counts
    cfg = load_input(training_script)
    branch = next(iter(cfg.branches.values()))
    data = branch.data.training_data
    systems = load_systems(data.systems, base_dir=cfg.base_dir, type_map=model.type_map,
                           fmt=data.format, key="training/training_data/systems")
    _, dmin = neighbor_counts(systems, model.rcut, len(model.type_map))
    log.info("min_nbor_dist %.4g from the training data of %s", dmin, training_script)
    return dmin
