"""deepmd/npy: a system is a folder with type.raw and set.*/ folders of .npy files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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
        return (self.path / rel).read_text().split()

    def array(self, rel: str) -> np.ndarray:
        return load_npy(self.path / rel)


def dir_systems(root: str) -> list[str]:
    """Every folder below root (itself included) that holds type.raw, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if "type.raw" in filenames:
            found.append(dirpath)
        # set.* folders hold frames, never systems: skipping them keeps big trees fast
        dirnames[:] = [d for d in dirnames if not d.startswith("set.")]
    return sorted(found)
