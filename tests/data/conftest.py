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


# ---------------------------------------------------------------- raw LMDB data sets

def write_lmdb(path, meta, frames: dict) -> Path:
    """An LMDB written with lmdb and msgpack directly (not dpx's writer): meta the
    __metadata__ map (None: no such key), frames {key: frame map} (numbered())."""
    lmdb = pytest.importorskip("lmdb")
    msgpack = pytest.importorskip("msgpack")
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, frame in frames.items():
            txn.put(key.encode(), msgpack.packb(frame, use_bin_type=True))
        if meta is not None:
            txn.put(b"__metadata__", msgpack.packb(meta, use_bin_type=True))
    env.close()
    return Path(path)


def lmdb_frame(natoms=3, nforce=None, energy=1.0) -> dict:
    """A frame as DeePMD-kit's writers store it: one O and natoms-1 H, periodic, energies and
    forces (nforce rows: natoms unless given), the same values for the same natoms."""
    from dpx.data.storage.lmdb import encode
    rng = np.random.default_rng(natoms)
    return {"atom_types": encode(np.array([0] + [1] * (natoms - 1), np.int32)),
            "coords": encode(rng.uniform(0, 3, (natoms, 3))),
            "cells": encode(np.eye(3) * 5), "energies": encode(np.array(energy)),
            "forces": encode(rng.normal(size=(nforce or natoms, 3)))}


def lmdb_meta(nframes, **more) -> dict:
    return {"nframes": nframes, "frame_idx_fmt": "012d", "type_map": ["O", "H"], **more}


def numbered(*frames) -> dict:
    """Frames keyed as DeePMD-kit numbers them (frame_idx_fmt 012d)."""
    return {format(i, "012d"): f for i, f in enumerate(frames)}
