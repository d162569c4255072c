"""Which systems a data section names: paths expanded below folders and HDF5 groups
(deepmd-compat §1.3), relative to the input file's folder."""
from __future__ import annotations

import os
from pathlib import Path

from dpx.data.storage.hdf5 import h5_systems, split_h5
from dpx.data.storage.lmdb import is_lmdb
from dpx.data.storage.npy import dir_systems


def expand_systems(systems, base_dir: str | os.PathLike | None = None,
                   key: str = "systems") -> list[str]:
    """Every system below each entry of `systems` (deepmd-compat §1.3).

    systems: a path or a list of paths; a folder expands to every folder below it (itself
    included) that holds type.raw, a `file.h5` or `file.h5#/group` to every group below it
    that holds type.raw; sorted per entry; an LMDB data set (a path ending in .lmdb, or a
    folder holding data.mdb) is taken as it is. Relative paths are taken from base_dir (the input
    file's folder; default the working directory). key names the setting in errors.
    """
    entries = [systems] if isinstance(systems, (str, os.PathLike)) else list(systems or [])
    if not entries:
        raise ValueError(f"{key}: no systems given; expected a path or a list of paths")
    found = []
    for entry in entries:
        found.extend(_expand_one(str(entry), base_dir, key))
    return found


def resolve_path(path: str, base_dir=None) -> str:
    """path taken relative to base_dir unless absolute; `~` expanded."""
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return os.path.normpath(os.path.abspath(p))


def _expand_one(entry: str, base_dir, key: str) -> list[str]:
    h5 = split_h5(entry)
    target = resolve_path(h5[0] if h5 else entry, base_dir)
    if not os.path.exists(target):
        raise FileNotFoundError(f"{key}: {entry!r} does not exist (looked for {target})")
    if h5:
        found = h5_systems(target, h5[1])
    elif is_lmdb(target):  # one database of frames, DeePMD-kit's LMDB data set
        found = [target]
    elif os.path.isdir(target):
        found = dir_systems(target)
    else:
        raise ValueError(f"{key}: {entry!r} ({target}) is a file; expected a system folder, a "
                         "folder of systems or an .h5 file (other formats need the "
                         "data section's \"format\" key)")
    if not found:
        raise FileNotFoundError(f"{key}: {entry!r} ({target}) contains no system: no type.raw "
                                "in it or below it")
    return found
