"""The `ener` loss (deepmd-compat §7): energy, force, virial, atomic-energy and
prefactor-force terms with prefactors interpolated by the learning rate. With relative_f,
the force error of each atom is divided by |F_label| + relative_f (in the loss and in the
displayed rmse_f), as DeePMD-kit does."""
from __future__ import annotations

import math

import torch

from dpx.config import EnergyLossConfig
from dpx.loss.base import Loss

TERMS = ("e", "f", "v", "ae", "pf")
LABEL = {"e": "energy", "f": "force", "v": "virial", "ae": "atom_ener", "pf": "atom_pref"}


class EnergyLoss(Loss):
    CONFIG = EnergyLossConfig

    def __init__(self, cfg: EnergyLossConfig, start_lr: float):
        self.cfg, self.start_lr = cfg, start_lr
        # a term is on only when both of its prefactors are non-zero (§7.2)
        self.active = [t for t in TERMS if getattr(cfg, f"start_pref_{t}") != 0
                       and getattr(cfg, f"limit_pref_{t}") != 0]
        self.q = 2 if cfg.intensive_ener_virial else 1

    def prefactor(self, term: str, lr: float) -> float:
        start = getattr(self.cfg, f"start_pref_{term}")
        limit = getattr(self.cfg, f"limit_pref_{term}")
        return limit + (start - limit) * lr / self.start_lr

    def weighted_labels(self, where: str) -> dict[str, str]:
        return {LABEL[t]: f"{where}/start_pref_{t} and limit_pref_{t}" for t in self.active}

    def display_keys(self) -> list[str]:
        """lcurve columns of this loss, sorted as DeePMD-kit sorts them (§9.3)."""
        kind = "mae" if self.cfg.loss_func == "mae" else "rmse"
        return sorted(["rmse"] + [f"{kind}_{t}" for t in self.active])

    def __call__(self, pred: dict, label: dict, lr: float) -> tuple[torch.Tensor, dict]:
        """Total loss (float64 scalar) and the display values {key: float} of one batch."""
        natoms = pred["force"].shape[1]
        loss = pred["energy"].new_zeros(())
        more = {}
        mae = self.cfg.loss_func == "mae"
        for t in self.active:
            found = float(label.get(f"find_{LABEL[t]}", 0.0))
            err = self._error(t, pred, label, natoms)
            if mae:
                value = err.abs().mean() if t in ("f", "pf") else (err.abs().mean() / natoms)
                scaled = value
            else:
                scaled, value = self._mse(t, err, label, natoms)
            loss = loss + self.prefactor(t, lr) * found * scaled
            key = f"{'mae' if mae else 'rmse'}_{t}"
            more[key] = float(value.detach()) if mae else math.sqrt(float(value.detach()))
            if not found:
                more[key] = math.nan
        more["rmse"] = math.sqrt(max(float(loss.detach()), 0.0))
        return loss, more

    def _error(self, t, pred, label, natoms):
        if t == "e":
            return pred["energy"].reshape(-1) - label["energy"].reshape(-1)
        if t in ("f", "pf"):
            diff = label["force"] - pred["force"]
            if self.cfg.relative_f is not None:  # each atom's error relative to its force
                diff = diff / (label["force"].norm(dim=-1, keepdim=True) + self.cfg.relative_f)
            return diff.reshape(pred["force"].shape[0], -1)
        if t == "v":
            return (pred["virial"] - label["virial"]).reshape(-1, 9)
        return (pred["atom_energy"] - label["atom_ener"].reshape(pred["atom_energy"].shape)) \
            .reshape(pred["atom_energy"].shape[0], -1)

    def _mse(self, t, err, label, natoms):
        """(the term as it enters the loss, the squared display value)."""
        if t == "e":
            sq = err * err
            return (sq / natoms ** self.q).mean(), (sq / natoms ** 2).mean()
        if t == "f":
            v = (err * err).mean()
            return v, v
        if t == "pf":
            w = label["atom_pref"].reshape(err.shape)
            v = (err * err * w).mean()
            return v, v
        if t == "v":
            sq = (err * err).mean(dim=-1)
            return (sq / natoms ** self.q).mean(), (sq / natoms ** 2).mean()
        v = (err * err).mean()
        return v, v
