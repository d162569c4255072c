"""Changing a trained model's energy bias on data (deepmd-compat §12.3), for finetune, for
training/change_bias_after_training and for `dpx change-bias`:

- change-by-statistic: out_bias += the least-squares per-type fit of E - E_model over the
  frames (so adjusting twice changes nothing the second time);
- set-by-statistic: out_bias = the fit of E (as a run from scratch sets it).
out_std becomes the std of the fit's residual. Works on a dpx EnergyModel and on a frozen
(TorchScript) energy model, dpx's or DeePMD-kit's: both hold atomic_model.out_bias/out_std.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from dpx.model import stat
from dpx.model.energy import model_inputs
from dpx.model.fitting.ener import EnergyFittingNet

log = logging.getLogger(__name__)


def predicted_energies(model, frames: list[dict]) -> np.ndarray:
    """The model's frame energies [Nf, 1] on the frames that carry an energy label, in the
    order of stat.type_counts."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    out = []
    for sample in frames:
        if not float(sample.get("find_energy", 1.0)):
            continue
        res = model(sample["coord"], sample["atype"].long(), sample.get("box"),
                    **model_inputs(sample))
        out.append(res["energy"].detach().double().reshape(-1, 1).cpu().numpy())
    if hasattr(model, "train"):
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 1))


def adjust_bias(model, model_cfg, frames: list[dict], change: bool,
                module=None) -> tuple[np.ndarray, np.ndarray]:
    """Change (or set) the out_bias of `module` (default: model) from frames; model is what
    predicts energies (an EnergyModel, or a io.FrozenModel around the module). Returns the
    (old, new) bias per type."""
    module = model if module is None else module
    am = module.atomic_model
    ntypes = len(model_cfg.type_map)
    predicted = predicted_energies(model, frames) if change else None
    preset = (model_cfg.preset_out_bias or {}).get("energy")
    bias, std = EnergyFittingNet.fit_bias(frames, ntypes, predicted, preset,
                                          model_cfg.atom_exclude_types)
    old = am.out_bias[0, :, 0].detach().cpu().numpy().copy()
    new = old + bias if change else bias
    with torch.no_grad():
        am.out_bias.copy_(torch.as_tensor(new, dtype=am.out_bias.dtype).reshape(am.out_bias.shape))
        am.out_std.copy_(torch.as_tensor(std, dtype=am.out_std.dtype).reshape(am.out_std.shape))
    energy, counts = stat.type_counts(frames, ntypes)
    if len(energy):
        target = energy - predicted if change else energy
        resid = target - counts @ bias.reshape(-1, 1)
        rmse = float(np.sqrt(np.mean((resid[:, 0] / counts.sum(1)) ** 2)))
        log.info("RMSE of energy per atom after linear regression is: %s in the unit of "
                 "energy.", rmse)
    log.info("Change output bias of %s from %s to %s.", model_cfg.type_map, old, new)
    return old, new
