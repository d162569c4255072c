"""The stat_file cache (deepmd-compat §3.3): a branch's descriptor sums and energy bias, so
that a second run skips the statistics pass.

Layout as DeePMD-kit's: <stat_file>/<type map joined by spaces>/<descriptor hash>/{r_0, a_0, ...}
and <stat_file>/<type map>/{bias_atom_energy, std_atom_energy}; a folder of .npy files, or an HDF5
file when the name ends in .h5/.hdf5. The descriptor names its sums (stat_names) and what its
hash covers (stat_hash_key). (Like DeePMD-kit, the cache is keyed by the descriptor, not the
data: delete it when the data change.)
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from dpx.model.stat import StatItem

log = logging.getLogger(__name__)


class StatFile:
    def __init__(self, path: Path, type_map: str, digest: str):
        self.path, self.type_map, self.digest = path, type_map, digest
        self.h5 = path.suffix in (".h5", ".hdf5")

    @classmethod
    def open(cls, stat_file, descriptor, type_map: list[str], base_dir) -> StatFile | None:
        if not stat_file:
            return None
        # DeePMD-kit's key, so that stat files move between the two
        key = json.dumps(descriptor.stat_hash_key())
        digest = hashlib.sha1(key.encode()).hexdigest()
        path = Path(stat_file)
        if not path.is_absolute():
            path = Path(base_dir) / path if not Path(stat_file).exists() else path
        return cls(path, " ".join(type_map), digest)

    def _key(self, name: str) -> str:
        if name.startswith(("r_", "a_")):
            return f"{self.type_map}/{self.digest}/{name}"
        return f"{self.type_map}/{name}"

    def _read(self, name: str):
        if self.h5:
            import h5py
            if not self.path.exists():
                return None
            with h5py.File(self.path, "r") as f:
                key = self._key(name)
                return np.array(f[key]) if key in f else None
        p = self.path / f"{self._key(name)}.npy"
        return np.load(p) if p.exists() else None

    def _write(self, arrays: dict) -> None:
        if self.h5:
            import h5py
            with h5py.File(self.path, "a") as f:
                for name, a in arrays.items():
                    key = self._key(name)
                    if key in f:
                        del f[key]
                    f[key] = a
            return
        for name, a in arrays.items():
            p = self.path / f"{self._key(name)}.npy"
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, a)

    def load_env_stats(self, names: list[str]) -> dict[str, StatItem] | None:
        """The descriptor sums `names`, or None unless the file has every one of them."""
        arrays = {n: self._read(n) for n in names}
        if any(a is None for a in arrays.values()):
            return None
        log.info("descriptor statistics read from %s", self.path)
        return {n: StatItem.from_array(a) for n, a in arrays.items()}

    def save_env_stats(self, sums: dict[str, StatItem]) -> None:
        self._write({n: s.to_array() for n, s in sums.items()})

    def load_bias(self):
        bias, std = self._read("bias_atom_energy"), self._read("std_atom_energy")
        if bias is None or std is None:
            return None
        return bias.reshape(-1), std.reshape(-1)

    def save_bias(self, bias, std) -> None:
        self._write({"bias_atom_energy": np.asarray(bias).reshape(-1, 1),
                     "std_atom_energy": np.asarray(std).reshape(-1, 1)})
