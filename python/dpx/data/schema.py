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
    coord, box and labels are numpy arrays once load()ed, else frames.Column objects that
    index the same way and read the frames asked for from the files (frames read when drawn).
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
    # the files read (names, sizes, mtimes) as a digest: part of a stat file's record of
    # what its statistics came from; "" where the frames came from no file of dpx's reading
    stamp: str = ""

    @property
    def nframes(self) -> int:
        return self.coord.shape[0]

    @property
    def natoms(self) -> int:
        return self.atype.shape[0]

    @property
    def nopbc(self) -> bool:
        return self.box is None

    @property
    def nbytes(self) -> int:
        """Bytes of the frames once in memory (float64), read or not."""
        arrays = [self.coord, self.box, *self.labels.values()]
        return sum(a.nbytes for a in arrays if a is not None and not _broadcast(a))

    @property
    def in_memory(self) -> bool:
        return isinstance(self.coord, np.ndarray)

    def load(self) -> System:
        """Read every frame now (checked), so batches index memory instead of files."""
        self.coord = np.asarray(self.coord)
        self.box = None if self.box is None else np.asarray(self.box)
        self.labels = {k: v if isinstance(v, np.ndarray) else v.load()
                       for k, v in self.labels.items()}
        return self

    def type_count(self, ntypes: int) -> np.ndarray:
        """Atoms of each model type, [ntypes] int64."""
        return np.bincount(self.atype, minlength=ntypes)[:ntypes].astype(np.int64)


def _broadcast(arr) -> bool:
    """A default-valued label: a zero-stride view that holds no memory."""
    return isinstance(arr, np.ndarray) and arr.ndim > 0 and arr.strides[0] == 0
