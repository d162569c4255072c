"""What a fitting is to the rest of dpx. A fitting maps each atom's descriptor to its atomic
outputs and owns what follows from their meaning:

- forward(descriptor [nf, nloc, dim], atype [nf, nloc]) -> atomic outputs [nf, nloc, dim_out]
  (scriptable);
- OUTPUT: the name of its output and how the model derives from it (an energy is summed over
  atoms and differentiated to forces and virials);
- fit_bias(frames, ntypes, predicted, preset, excluded) -> (out_bias, out_std) per type, the
  output statistics of DeePMD-kit (deepmd-compat §5.3), and compute_input_stats for fitting
  inputs (fparam / aparam) with model/data_stat_protect;
- shared_with(base, level) and transfer_from(src, index), as for descriptors.
"""
from __future__ import annotations

import numpy as np
from torch import nn


class Fitting(nn.Module):
    OUTPUT = ""
    SHARE_LEVELS: dict[int, str] = {}

    def get_dim_out(self) -> int:
        raise NotImplementedError

    @classmethod
    def fit_bias(cls, frames: list[dict], ntypes: int, predicted: np.ndarray | None,
                 preset: list | None, excluded: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """A class method: the statistics depend on what the output means, not on weights."""
        raise NotImplementedError

    def compute_input_stats(self, frames, protection: float) -> None:
        """frames: a callable that samples the statistics frames (only when needed)."""
        raise NotImplementedError

    def shared_with(self, base: Fitting, level: int) -> Fitting:
        raise NotImplementedError

    def transfer_from(self, src: Fitting, index: list[int]) -> None:
        raise NotImplementedError
