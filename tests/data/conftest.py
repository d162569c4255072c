"""Helpers that write tiny DeePMD npy systems into tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_npy_system(path, atype, set_sizes=(3,), *, names=None, nopbc=False,
                     labels=("energy", "force", "virial"), seed=0, energy_2d=False,
                     dtype=np.float64) -> dict:
    """Write a system with random finite arrays of dtype; return them concatenated over sets,
    in file atom order: coord [nf, natoms*3], box [nf, 9], and each label as written."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atype = np.asarray(atype)
    natoms = atype.size
    (path / "type.raw").write_text(" ".join(map(str, atype)) + "\n")
    if names is not None:
        (path / "type_map.raw").write_text("\n".join(names) + "\n")
    if nopbc:
        (path / "nopbc").touch()
    rng = np.random.default_rng(seed)
    widths = {"energy": 1, "force": 3 * natoms, "virial": 9, "atom_ener": natoms,
              "atomic_ener": natoms, "atom_pref": natoms, "fparam": 2, "aparam": 2 * natoms}
    written = {}
    for iset, nf in enumerate(set_sizes):
        arrays = {"coord": rng.uniform(0, 5, (nf, 3 * natoms))}
        if not nopbc:
            arrays["box"] = (np.eye(3) * 5 + rng.uniform(0, 0.3, (3, 3))).reshape(1, 9).repeat(nf, 0)
        for key in labels:
            arrays[key] = rng.normal(size=(nf, widths[key]))
        if "energy" in arrays and not energy_2d:
            arrays["energy"] = arrays["energy"][:, 0]
        set_dir = path / f"set.{iset:03d}"
        set_dir.mkdir()
        for key, arr in arrays.items():
            arr = arr.astype(dtype)
            np.save(set_dir / f"{key}.npy", arr)
            written.setdefault(key, []).append(arr)
    return {k: np.concatenate(v) for k, v in written.items()}


@pytest.fixture
def npy_system(tmp_path):
    """Factory: npy_system(name, atype, ...) -> (path, arrays) under tmp_path."""
    def make(name, atype, *args, **kwargs):
        path = tmp_path / name
        return str(path), write_npy_system(path, atype, *args, **kwargs)
    return make
