"""Frames read when drawn: a Column stands for one per-frame quantity of a system (coord, box,
a label) as the [nf, ...] float64 array it would be in memory, and reads only the frames it is
indexed with, from the set files where they live.

The values are checked when read (finite; a box also non-singular), so a bad frame is named,
file and frame, when it is drawn, and a data set is not read whole at start-up to be checked.
Column.load() reads every frame once: small data sets are held in memory (formats.py decides).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class BadFrame(ValueError):
    """A frame that cannot be read or fails its checks when drawn: the message names the
    file and the frame. The trainer saves a checkpoint before it stops on one."""


@dataclass
class Part:
    """One set's file of a quantity: source.rows(idx, width) reads its frames; source None
    where the set lacks the file (its frames take `default`, find False)."""
    source: object | None
    nf: int
    where: str
    default: float = 0.0


def float_dtype(*dtypes) -> np.dtype:
    """The floating dtype that stores values held in dtypes as they are (float32 stays
    float32; float32 and float64 give float64); float64 for none or for integers."""
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    if not np.issubdtype(dtype, np.floating):
        return np.dtype(np.float64)
    return dtype.newbyteorder("=")


def finite(arr: np.ndarray, where: str, frames: np.ndarray) -> None:
    """Refuse NaN and inf; frames are the rows' indices in the file."""
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(frames[np.nonzero(bad.any(axis=1))[0][0]])
        raise BadFrame(f"{where}: NaN or inf in frame {frame} (0-based, in this file)")


def cells(arr: np.ndarray, where: str, frames: np.ndarray) -> None:
    """Finite and non-singular 3x3 cells, [k, 9]."""
    finite(arr, where, frames)
    singular = np.abs(np.linalg.det(arr.reshape(-1, 3, 3))) < 1e-12
    if singular.any():
        k = int(np.nonzero(singular)[0][0])
        raise BadFrame(f"{where}: frame {int(frames[k])} has a singular cell "
                         f"{arr[k].tolist()}")


class Column:
    """Frames of one quantity over a system's sets, indexed like a float64 array.

    parts: the sets in order, each `width` values per frame in file atom order. finish maps
    [k, width] rows to the stored shape ([k, natoms, 3] with atoms sorted, ...); tail is
    that shape without k. frames: this system's frames among the parts' (a composition of a
    mixed-type system), None for all. check(rows, where, file_frames) validates rows read.
    """

    def __init__(self, parts: list[Part], width: int, *, tail: tuple = (),
                 finish: Callable | None = None, frames: np.ndarray | None = None,
                 check: Callable = finite):
        self.parts, self.width, self.check = parts, width, check
        self.starts = np.cumsum([0] + [p.nf for p in parts])
        self.frames = frames
        self.finish = finish
        nf = int(self.starts[-1]) if frames is None else len(frames)
        self.shape = (nf,) + (tuple(tail) if finish is not None else (width,))
        self.ndim, self.dtype = len(self.shape), np.dtype(np.float64)

    def arranged(self, tail: tuple, finish: Callable, frames=None) -> Column:
        """The same files with another stored shape, atom order or frame subset."""
        return Column(self.parts, self.width, tail=tail, finish=finish, frames=frames,
                      check=self.check)

    @property
    def source_dtype(self) -> np.dtype:
        """The dtype its files hold the values in (float_dtype): what a converter writes."""
        return float_dtype(*[p.source.dtype for p in self.parts if p.source is not None])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 8

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        return self.load() if dtype is None else self.load().astype(dtype)

    def __getitem__(self, key):
        """key: frames (int, slice, index array) or a tuple starting with them."""
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        idx = np.arange(self.shape[0])[key]
        out = self._read(np.atleast_1d(idx))
        out = out[0] if idx.ndim == 0 else out
        return out[(slice(None),) * (idx.ndim > 0) + rest] if rest else out

    def load(self) -> np.ndarray:
        """Every frame, read and checked once: the array an in-memory system holds."""
        return np.ascontiguousarray(self[:])

    def _read(self, idx: np.ndarray) -> np.ndarray:
        ids = idx if self.frames is None else self.frames[idx]
        if len(self.parts) == 1:  # one set: no split by part (the common case)
            rows = self._read_part(self.parts[0], ids)
            return rows if self.finish is None else self.finish(rows)
        rows = np.empty((ids.size, self.width))
        part_of = np.searchsorted(self.starts, ids, side="right") - 1
        for j in np.unique(part_of):
            mine = part_of == j
            rows[mine] = self._read_part(self.parts[j], ids[mine] - self.starts[j])
        return rows if self.finish is None else self.finish(rows)

    def _read_part(self, part: Part, local: np.ndarray) -> np.ndarray:
        if part.source is None:
            return np.full((local.size, self.width), part.default)
        if local.size == 1:  # batch_size 1: nothing to sort
            uniq, inverse = local, np.zeros(1, np.int64)
        else:  # sorted unique frames: one pass over the file, each frame read once
            uniq, inverse = np.unique(local, return_inverse=True)
        raw = part.source.rows(uniq, self.width)
        try:
            rows = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise BadFrame(f"{part.where}: not numeric ({raw.dtype}): {err}") from err
        self.check(rows, part.where, uniq)
        return rows[inverse.reshape(-1)]


class InMemory:
    """An array already in memory (the dpdata bridge, tests) as a Column source."""

    def __init__(self, arr):
        self.arr = np.asarray(arr)
        self.shape, self.dtype, self.ndim, self.size = (self.arr.shape, self.arr.dtype,
                                                        self.arr.ndim, self.arr.size)

    def rows(self, idx: np.ndarray, width: int) -> np.ndarray:
        return self.arr.reshape(-1, width)[idx]


def in_memory(arr, nf: int, where: str) -> Column:
    """[nf, ...] array -> a Column of one part, width = values per frame."""
    arr = np.asarray(arr)
    return Column([Part(InMemory(arr), nf, where)], arr.size // max(nf, 1))
