"""deepmd/hdf5: a system is a group holding type.raw and set.*/ groups, same names as on disk;
`file.h5#/group` addresses one. h5py is imported only when such a file is read."""
from __future__ import annotations

import os

import numpy as np

from dpx.data.frames import BadFrame
from dpx.data.storage import digest
from dpx.extras import need

H5_SUFFIXES = (".h5", ".hdf5")


class H5Node:
    """A system group inside an open HDF5 file; same file names as on disk."""

    def __init__(self, h5file, filename: str, group: str):
        self.file, self.filename, self.group = h5file, filename, group.rstrip("/") or "/"

    def where(self, rel: str = "") -> str:
        inner = f"{self.group.rstrip('/')}/{rel}" if rel else self.group
        return f"{self.filename}#{inner}"

    def _key(self, rel: str) -> str:
        return f"{self.group.rstrip('/')}/{rel}"

    def has(self, rel: str) -> bool:
        return self._key(rel) in self.file

    def sets(self) -> list[str]:
        grp = self.file[self.group]
        return sorted(k for k in grp if k.startswith("set.") and hasattr(grp[k], "keys"))

    def words(self, rel: str) -> list[str]:
        data = np.atleast_1d(self.file[self._key(rel)][()])
        return [w.decode() if isinstance(w, bytes) else str(w) for w in data.tolist()]

    def array(self, rel: str) -> np.ndarray:
        return np.asarray(self.file[self._key(rel)][()])

    def frames(self, rel: str) -> H5Frames:
        return H5Frames(self.file[self._key(rel)], self.where(rel))

    def stamp(self) -> str:
        st = os.stat(self.filename)
        return digest([self.group, st.st_size, st.st_mtime_ns])


class H5Frames:
    """A dataset whose frames are read on demand (h5py reads only the rows indexed)."""

    def __init__(self, dataset, where: str):
        self.dataset, self.where = dataset, where
        self.shape, self.dtype, self.ndim = dataset.shape, dataset.dtype, dataset.ndim
        self.size = int(np.prod(self.shape, dtype=np.int64))

    def rows(self, idx: np.ndarray, width: int) -> np.ndarray:
        """Frames idx (sorted, unique) as [len(idx), width] in the dataset's dtype."""
        flat_single = self.ndim == 0 or (self.ndim == 1 and width > 1)  # one frame, flat
        try:
            if flat_single:
                return np.asarray(self.dataset[()]).reshape(1, width)[idx]
            if idx.size and idx[-1] - idx[0] + 1 == idx.size:  # a slice reads fastest
                raw = self.dataset[int(idx[0]):int(idx[-1]) + 1]
            else:
                raw = self.dataset[idx]
        except (OSError, RuntimeError) as err:  # h5py's errors for damaged chunks
            raise BadFrame(f"{self.where}: cannot read frames {idx[:4].tolist()}: "
                             f"{err}") from None
        return np.asarray(raw).reshape(idx.size, width)


def split_h5(path: str) -> tuple[str, str] | None:
    """`file.h5#/group` -> (file, group); a bare `file.h5` -> (file, "/"); else None."""
    if "#" in path:
        filename, group = path.split("#", 1)
        return filename, group or "/"
    if path.lower().endswith(H5_SUFFIXES):
        return path, "/"
    return None


_OPEN: dict[tuple[int, str], object] = {}


def open_h5_kept(filename: str):
    """filename open for reading for the rest of the process: frames are read from it when
    drawn. One handle per file and process (h5py handles do not survive fork)."""
    key = (os.getpid(), os.path.abspath(filename))
    if key not in _OPEN:
        _OPEN[key] = open_h5(filename)
    return _OPEN[key]


def open_h5(filename: str):
    h5py = need("h5py", message=f"reading the HDF5 system {filename} needs h5py: "
                "pip install h5py")
    return h5py.File(filename, "r")


def h5_systems(filename: str, group: str) -> list[str]:
    """Every group below filename#group (itself included) that holds type.raw, sorted."""
    with open_h5(filename) as h5file:
        if group not in h5file:
            raise FileNotFoundError(f"{filename}: no group {group!r} in this HDF5 file")
        root = h5file[group]
        if not hasattr(root, "keys"):
            raise ValueError(f"{filename}#{group} is a dataset, expected a group")
        names = [""] if "type.raw" in root else []

        def visit(name, obj):
            if hasattr(obj, "keys") and "type.raw" in obj:
                names.append(name)
        root.visititems(visit)
    base = group.rstrip("/")
    return [f"{filename}#{base}/{n}".rstrip("/") if n else f"{filename}#{group}"
            for n in sorted(names)]
