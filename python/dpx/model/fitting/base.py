"""What a fitting is to the rest of dpx. A fitting maps each atom's descriptor to its atomic
outputs and owns what follows from their meaning:

- forward(descriptor [nf, nloc, dim], atype [nf, nloc], fparam [nf, numb_fparam] | None,
  aparam [nf, nloc, numb_aparam] | None) -> atomic outputs [nf, nloc, dim_out] (scriptable);
  built with mixed_types (the descriptor's): one net for every type, else one per type;
- OUTPUT: the name of its output and how the model derives from it (an energy is summed over
  atoms and differentiated to forces and virials);
- fit_bias(frames, ntypes, predicted, preset, excluded) -> (out_bias, out_std) per type, the
  output statistics of DeePMD-kit (deepmd-compat §5.3), and input_sums / set_input_stats for
  the fitting inputs (fparam / aparam) with model/data_stat_protect, shared (input_key) by
  the branches that share the layers reading them;
- shared_with(base, level) and transfer_from(src, index), as for descriptors.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from dpx.plugin import Registered


class Fitting(Registered, nn.Module):
    """A subclass that names its config class in CONFIG registers itself (dpx.plugin)."""
    REGISTRY = {}
    OUTPUT = ""
    SHARE_LEVELS: dict[int, str] = {}

    def get_dim_out(self) -> int:
        raise NotImplementedError

    @classmethod
    def fit_bias(cls, frames: list[dict], ntypes: int, predicted: np.ndarray | None,
                 preset: list | None, excluded: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """A class method: the statistics depend on what the output means, not on weights."""
        raise NotImplementedError

    def input_stat_names(self) -> list[str]:
        """The input statistics this fitting has (and a stat file caches)."""
        raise NotImplementedError

    def input_sums(self, frames, cached: dict | None = None) -> dict:
        """frames: a callable that samples the statistics frames (only when needed); cached:
        the sums a stat file holds. The sums of each input statistic."""
        raise NotImplementedError

    def set_input_stats(self, sums: dict, protection: float) -> None:
        raise NotImplementedError

    def input_key(self) -> int:
        """Equal for the fittings of branches that share their input statistics."""
        raise NotImplementedError

    def shared_with(self, base: Fitting, level: int) -> Fitting:
        raise NotImplementedError

    def transfer_from(self, src: Fitting, index: list[int]) -> None:
        raise NotImplementedError
