"""The stat_file cache (deepmd-compat §3.3, §5.2): a branch's descriptor sums, fitting-input
sums (fparam, aparam) and energy bias, so that a second run skips the statistics pass.

Layout as DeePMD-kit's: <stat_file>/<type map joined by spaces>/<descriptor hash>/{r_0, a_0, ...}
and <stat_file>/<type map>/{bias_atom_energy, std_atom_energy, fparam, aparam}; a folder of
.npy files, or an HDF5 file when the name ends in .h5/.hdf5. The descriptor names its sums
(stat_names) and what its hash covers (stat_hash_key).

DeePMD-kit keys the cache by the descriptor only, so statistics of other data would be reused
without a word. dpx also records what they were computed from (<type map>/dpx_provenance: the
systems, their frame counts, data_stat_nbatch, a digest of each system's contents): a cache
made from other data, or from files changed since, is recomputed (and rewritten) with a
warning that says what differs; a cache without the record (DeePMD-kit's) is used, and the
log says so.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np

from dpx.data.system import load_npy
from dpx.extras import need
from dpx.io.checkpoint import WriteError, atomic_write, first_line
from dpx.model.stat import StatItem

log = logging.getLogger(__name__)


# the labels the statistics read (energy bias, fitting-input sums): hashing them in full costs
# little next to reading the files, and sees a label rewritten in place with its mtime kept
_STAT_LABELS = ("energy", "fparam", "aparam")


def contents_digest(system) -> str:
    """A system's contents as a stat file records them: the files read (names, sizes, mtimes:
    coordinates, cells and labels rewritten change them) and a hash of the labels the
    statistics read, without hashing every frame's coordinates."""
    h = hashlib.sha1(system.stamp.encode())
    h.update(np.ascontiguousarray(system.atype))
    for key in _STAT_LABELS:
        # a label no set has is a broadcast default: nothing read, nothing to hash
        if key in system.labels and system.find[key].any():
            h.update(np.ascontiguousarray(system.find[key]))
            h.update(np.ascontiguousarray(system.labels[key]))
    return h.hexdigest()


def _record(provenance: dict) -> np.ndarray:
    # JSON bytes as uint8: both npy (without pickle) and HDF5 store them as they are
    return np.frombuffer(json.dumps(provenance, sort_keys=True).encode(), dtype=np.uint8)


def _reason(e: Exception) -> str:
    """Why a write failed, in a few words: HDF5's messages span lines (a full disk is an
    OSError when a file is made, a RuntimeError when h5py flushes one)."""
    if getattr(e, "errno", None):
        return os.strerror(e.errno)
    found = re.search(r"error message = '([^']*)'", str(e))
    return found.group(1) if found else getattr(e, "strerror", None) or first_line(e)


def _h5py(path):
    return need("h5py", message=f"the stat file {path} (HDF5) needs h5py: pip install h5py")


def _where(stat_file, base_dir) -> Path:
    path = Path(stat_file)
    if not path.is_absolute():
        path = Path(base_dir) / path if not Path(stat_file).exists() else path
    return path


def _save_npy(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(name) would add .npy to the temporary's name
        np.save(f, a)


class StatFile:
    def __init__(self, path: Path, type_map: str, digest: str, provenance: dict | None = None):
        self.path, self.type_map, self.digest = path, type_map, digest
        self.h5 = path.suffix in (".h5", ".hdf5")
        self.provenance = provenance
        self.stale = False

    @classmethod
    def open(cls, stat_file, descriptor, type_map: list[str], base_dir,
             provenance: dict | None = None) -> StatFile | None:
        """The cache of one branch; provenance: what this run's statistics come from."""
        if not stat_file:
            return None
        # DeePMD-kit's key, so that stat files move between the two
        key = json.dumps(descriptor.stat_hash_key())
        digest = hashlib.sha1(key.encode()).hexdigest()
        cache = cls(_where(stat_file, base_dir), " ".join(type_map), digest, provenance)
        cache._check_provenance()
        return cache

    def _check_provenance(self) -> None:
        if self.provenance is None or not self.path.exists():
            return
        stored = self._read("dpx_provenance")
        if stored is None:
            if self._read("bias_atom_energy") is not None:
                log.info("%s holds no record of the data its statistics came from (made by "
                         "DeePMD-kit or an older dpx); using them: delete it if the data "
                         "changed", self.path)
            return
        recorded = json.loads(bytes(np.asarray(stored, dtype=np.uint8)).decode())
        if recorded.get("incomplete"):
            log.warning("%s: its last write did not finish (a full disk?); the statistics "
                        "are recomputed and the file rewritten", self.path)
            self.stale = True
        elif recorded != self.provenance:
            diff = [k for k in self.provenance if recorded.get(k) != self.provenance[k]]
            if {"systems", "nframes"} & set(diff) and "contents" in diff:
                diff.remove("contents")  # other systems or frames: their contents differ too
            log.warning("%s was made from other data (%s differ: %s); the statistics are "
                        "recomputed from this run's data and the file rewritten", self.path,
                        ", ".join(diff), self._what_differs(recorded, diff))
            self.stale = True

    def _what_differs(self, recorded: dict, diff: list[str]) -> str:
        """The recorded values that differ; for contents (digests), the systems whose files
        or labels changed."""
        shown = {k: recorded.get(k) for k in diff if k != "contents"}
        text = f"it has {shown}" if shown else ""
        if "contents" in diff and "contents" not in recorded:
            text += "; it has no digest of the contents (made by an older dpx)"
        elif "contents" in diff:
            changed = [name for name, a, b in zip(self.provenance["systems"],
                                                  recorded["contents"],
                                                  self.provenance["contents"]) if a != b]
            text += f"; the files or labels of {', '.join(changed)} changed"
        return text.removeprefix("; ")

    def _key(self, name: str) -> str:
        if name.startswith(("r_", "a_")):
            return f"{self.type_map}/{self.digest}/{name}"
        return f"{self.type_map}/{name}"

    def _read(self, name: str):
        if self.h5:
            h5py = _h5py(self.path)
            if not self.path.exists():
                return None
            with h5py.File(self.path, "r") as f:
                key = self._key(name)
                return np.array(f[key]) if key in f else None
        p = self.path / f"{self._key(name)}.npy"
        try:
            return load_npy(p) if p.exists() else None
        except ValueError as e:
            raise ValueError(f"{e} (a part of the stat file {self.path}; delete it and the "
                             f"statistics are computed again)") from None

    def _write(self, arrays: dict) -> None:
        """Write arrays (and the record of this run's data) so that a write that fails (a
        full disk) leaves an HDF5 file as it was, and a folder marked unfinished (the next
        run recomputes it)."""
        if self.provenance is not None:
            arrays = dict(arrays, dpx_provenance=_record(self.provenance))
        try:
            if self.h5:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.path, lambda tmp: self._write_h5(tmp, arrays))
            else:
                self._write_npy(arrays)
        except (OSError, RuntimeError) as e:
            raise WriteError(f"cannot write the stat file {self.path}: {_reason(e)}") from None

    def _write_h5(self, tmp: Path, arrays: dict) -> None:
        h5py = _h5py(self.path)
        if self.path.exists():
            shutil.copyfile(self.path, tmp)  # the other type maps' and descriptors' entries
        with h5py.File(tmp, "a") as f:
            for name, a in arrays.items():
                key = self._key(name)
                if key in f:
                    del f[key]
                f[key] = a

    def _write_npy(self, arrays: dict) -> None:
        """One file per array, each replaced whole; the record first says "being written"
        (matching no run's data) and last names this run's, so that a rewrite that stops
        half-way is recomputed, never read as the old data's statistics."""
        record = arrays.pop("dpx_provenance", None)
        if record is not None:
            self._write_one("dpx_provenance", _record({"incomplete": True}))
        for name, a in arrays.items():
            self._write_one(name, a)
        if record is not None:
            self._write_one("dpx_provenance", record)

    def _write_one(self, name: str, a: np.ndarray) -> None:
        p = self.path / f"{self._key(name)}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, lambda tmp: _save_npy(tmp, a))

    def load_env_stats(self, names: list[str]) -> dict[str, StatItem] | None:
        """The descriptor sums `names`, or None unless the file has every one of them (and
        was made from this run's data, when it says)."""
        if self.stale:
            return None
        arrays = {n: self._read(n) for n in names}
        if any(a is None for a in arrays.values()):
            return None
        log.info("descriptor statistics read from %s", self.path)
        return {n: StatItem.from_array(a) for n, a in arrays.items()}

    def save_env_stats(self, sums: dict[str, StatItem]) -> None:
        self._write({n: s.to_array() for n, s in sums.items()})

    def load_bias(self):
        if self.stale:
            return None
        bias, std = self._read("bias_atom_energy"), self._read("std_atom_energy")
        if bias is None or std is None:
            return None
        return bias.reshape(-1), std.reshape(-1)

    def save_bias(self, bias, std) -> None:
        self._write({"bias_atom_energy": np.asarray(bias).reshape(-1, 1),
                     "std_atom_energy": np.asarray(std).reshape(-1, 1)})

    def load_fitting_stats(self, names: list[str]) -> dict[str, list[StatItem]]:
        """The fitting-input sums (fparam, aparam: [width, 3] arrays) the file has."""
        if self.stale:
            return {}
        out = {}
        for n in names:
            a = self._read(n)
            if a is not None:
                out[n] = [StatItem.from_array(row) for row in np.asarray(a).reshape(-1, 3)]
                log.info("%s statistics read from %s", n, self.path)
        return out

    def save_fitting_stats(self, sums: dict[str, list[StatItem]]) -> None:
        self._write({n: np.stack([s.to_array() for s in items]) for n, items in sums.items()})


class NeighborStatCache:
    """Each system's neighbor statistics (nlist/stat.py: counts per type and closest pair,
    keyed by a digest of the files, frames, types and rcut they came from) in the stat file,
    as one record <type map>/dpx_neighbor_stat (JSON): read once before the scan, written
    once after it. DeePMD-kit reads no such entry and leaves it alone; entries of other data
    stay (a finetune on other systems shares the file)."""
    NAME = "dpx_neighbor_stat"

    def __init__(self, store: StatFile):
        self.store, self.entries, self.changed = store, {}, False
        raw = store._read(self.NAME)
        if raw is None:
            return
        try:
            self.entries = json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode())
        except ValueError as e:  # a hand-edited or cut-short record: scanned again
            log.warning("%s: its neighbor statistics record is unreadable (%s); the data is "
                        "scanned again and the record rewritten", store.path, e)

    @classmethod
    def open(cls, stat_file, type_map: list[str], base_dir) -> NeighborStatCache | None:
        if not stat_file:
            return None
        return cls(StatFile(_where(stat_file, base_dir), " ".join(type_map), digest=""))

    def get(self, key: str):
        v = self.entries.get(key)
        return None if v is None else (np.asarray(v[:-1], dtype=np.int64), float(v[-1]))

    def put(self, key: str, counts, dmin: float) -> None:
        self.entries[key] = [int(c) for c in np.atleast_1d(counts)] + [float(dmin)]
        self.changed = True

    def save(self) -> None:
        if self.changed:
            self.store._write({self.NAME: _record(self.entries)})
            self.changed = False
