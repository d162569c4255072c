"""deepmd/npy: a system is a folder with type.raw and set.*/ folders of .npy files.

Frame files are read when drawn (NpyFrames): the header is parsed once, each batch reads its
frames with os.pread. Not np.load(mmap_mode="r"): every memmap keeps a file descriptor open
(CPython's mmap dups it), and a few thousand systems of five files each pass the usual limit
of 1024; pages a mapping has touched also count in the process's RSS until they are evicted,
so a pass over the data would look like the data held in memory. pread goes through the same
page cache, which the ranks of a node share, and keeps only the batch in the process."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dpx.data.frames import BadFrame
from dpx.data.storage import digest


def load_npy(path: Path) -> np.ndarray:
    """np.load of a .npy file (no pickles), every failure a ValueError naming the file."""
    try:
        return np.load(path)
    except EOFError:  # what np.load raises on a 0-byte file
        raise ValueError(f"{path}: cannot read as a .npy array: the file is empty") from None
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: cannot read as a .npy array: {err}") from None


class DirNode:
    """A system folder on disk."""

    def __init__(self, path: Path):
        self.path = path
        self._listing: dict[str, set[str]] = {}
        self._read: list[tuple[str, int, int]] = []

    def where(self, rel: str = "") -> str:
        return str(self.path / rel) if rel else str(self.path)

    def has(self, rel: str) -> bool:
        # one listing per folder instead of a stat per candidate file (~10 per set)
        folder, _, name = rel.rpartition("/")
        if folder not in self._listing:
            try:
                self._listing[folder] = set(os.listdir(self.path / folder))
            except (FileNotFoundError, NotADirectoryError):
                self._listing[folder] = set()
        return name in self._listing[folder]

    def sets(self) -> list[str]:
        return sorted(p.name for p in self.path.glob("set.*") if p.is_dir())

    def words(self, rel: str) -> list[str]:
        self._note(rel)
        return (self.path / rel).read_text().split()

    def array(self, rel: str) -> np.ndarray:
        self._note(rel)
        return load_npy(self.path / rel)

    def frames(self, rel: str) -> NpyFrames:
        self._note(rel)
        return NpyFrames(self.path / rel)

    def _note(self, rel: str) -> None:
        # a stat per file read: any rewrite changes the mtime, without hashing every frame
        try:
            st = os.stat(self.path / rel)
        except OSError:
            return  # the reader names the missing file
        self._read.append((rel, st.st_size, st.st_mtime_ns))

    def stamp(self) -> str:
        return digest(sorted(self._read))


class NpyFrames:
    """A .npy file whose frames are read on demand: shape and dtype from the header.

    A C-ordered array of nf frames holds frame i as values [i*width, (i+1)*width) whatever
    its shape, so a frame is one contiguous byte range. A Fortran-ordered file (rare, and
    never written by dpdata or DeePMD-kit) is read whole at each draw.
    """

    def __init__(self, path: Path):
        self.path = path
        if path.stat().st_size == 0:
            raise ValueError(f"{path}: cannot read as a .npy array: the file is empty")
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                self.shape, self.fortran, self.dtype = read(f)
                self.offset = f.tell()
        except (ValueError, OSError, SyntaxError) as err:
            raise ValueError(f"{path}: cannot read as a .npy array: {err}") from None
        self.ndim, self.size = len(self.shape), int(np.prod(self.shape, dtype=np.int64))
        if self.dtype.hasobject:
            raise ValueError(f"{path}: cannot read as a .npy array: it holds Python objects")
        need = self.offset + self.size * self.dtype.itemsize
        if path.stat().st_size < need:
            raise ValueError(f"{path}: cannot read as a .npy array: the file is cut short "
                             f"({path.stat().st_size} bytes, its header promises {need})")

    def rows(self, idx: np.ndarray, width: int) -> np.ndarray:
        """Frames idx (sorted, unique) as [len(idx), width] in the file's dtype."""
        if self.fortran and self.ndim > 1:
            return load_npy(self.path).reshape(-1, width)[idx]
        step = width * self.dtype.itemsize
        out = np.empty((idx.size, width), self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for lo, hi in _runs(idx):  # one read per run of consecutive frames
                buf = os.pread(fd, (hi - lo) * step, self.offset + lo * step)
                if len(buf) < (hi - lo) * step:
                    raise BadFrame(f"{self.path}: frame {lo + len(buf) // step} is cut "
                                   "short: the file shrank after it was opened")
                pos = np.searchsorted(idx, lo)
                out[pos:pos + hi - lo] = np.frombuffer(buf, self.dtype).reshape(-1, width)
        finally:
            os.close(fd)
        return out


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique indices as [lo, hi) runs of consecutive values."""
    cuts = np.flatnonzero(np.diff(idx) != 1)
    los, his = np.r_[idx[:1], idx[cuts + 1]], np.r_[idx[cuts], idx[-1:]] + 1
    return list(zip(los.tolist(), his.tolist()))


def dir_systems(root: str) -> list[str]:
    """Every folder below root (itself included) that holds type.raw, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if "type.raw" in filenames:
            found.append(dirpath)
        # set.* folders hold frames, never systems: skipping them keeps big trees fast
        dirnames[:] = [d for d in dirnames if not d.startswith("set.")]
    return sorted(found)
