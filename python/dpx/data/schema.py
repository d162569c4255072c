"""What a DeePMD system holds once read: its label files (LABELS) and the System object.

Kept apart from the readers so that every storage backend (storage/), the dpdata bridge
(formats.py) and the consumers (sampler, inference) share one definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LabelSpec:
    """One label file of a set (deepmd-compat §1.1 table).

    ndof: values per frame (global) or per atom (atomic); None = read from the file and
    omitted from the system when no set has it (fparam/aparam: the width is the model's).
    repeat: each per-atom value repeated this many times (atom_pref -> one weight per
    force component).
    """
    key: str
    ndof: int | None
    atomic: bool = False
    default: float = 0.0
    repeat: int = 1


LABELS = (
    LabelSpec("energy", 1),
    LabelSpec("force", 3, atomic=True),
    LabelSpec("virial", 9),
    LabelSpec("atom_ener", 1, atomic=True),
    LabelSpec("atom_pref", 1, atomic=True, default=1.0, repeat=3),
    LabelSpec("atom_ener_coeff", 1, atomic=True, default=1.0),
    LabelSpec("fparam", None),
    LabelSpec("aparam", None, atomic=True),
)


@dataclass
class System:
    """One system, every set concatenated in lexicographic set order.

    Shapes (nf frames, natoms atoms, atoms in model-type order when sorted):
      atype [natoms] int64 (model type indices), coord [nf, natoms, 3], box [nf, 9] or None,
      labels: energy [nf, 1], force [nf, natoms, 3], virial [nf, 9], atom_ener [nf, natoms],
      atom_pref [nf, natoms*3], atom_ener_coeff [nf, natoms], fparam [nf, k],
      aparam [nf, natoms, k]; find[key] [nf] bool, False where the set lacked the file.
    A label no set has is a read-only broadcast of its default (no memory; index, don't write).
    idx_map[i] is the original (file) index of stored atom i; identity when not sorted.
    """
    name: str
    atype: np.ndarray
    coord: np.ndarray
    box: np.ndarray | None
    labels: dict[str, np.ndarray]
    find: dict[str, np.ndarray]
    type_map: list[str] | None = None
    idx_map: np.ndarray | None = None
    set_nframes: list[int] = field(default_factory=list)

    @property
    def nframes(self) -> int:
        return self.coord.shape[0]

    @property
    def natoms(self) -> int:
        return self.atype.shape[0]

    @property
    def nopbc(self) -> bool:
        return self.box is None

    def type_count(self, ntypes: int) -> np.ndarray:
        """Atoms of each model type, [ntypes] int64."""
        return np.bincount(self.atype, minlength=ntypes)[:ntypes].astype(np.int64)
