"""deepmd/hdf5: a system is a group holding type.raw and set.*/ groups, same names as on disk;
`file.h5#/group` addresses one. h5py is imported only when such a file is read."""
from __future__ import annotations

import numpy as np

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


def split_h5(path: str) -> tuple[str, str] | None:
    """`file.h5#/group` -> (file, group); a bare `file.h5` -> (file, "/"); else None."""
    if "#" in path:
        filename, group = path.split("#", 1)
        return filename, group or "/"
    if path.lower().endswith(H5_SUFFIXES):
        return path, "/"
    return None


def open_h5(filename: str):
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"reading the HDF5 system {filename} needs h5py: "
                          "pip install h5py") from err
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
