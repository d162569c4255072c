"""Loading the `systems` of a data section, in DeePMD's own layouts or through dpdata.

deepmd/npy, deepmd/hdf5 and deepmd/lmdb are read natively (system.py, storage/). Any other
`format` named in the data section (vasp/outcar, extxyz, deepmd/raw, ...) goes through dpdata,
an optional dependency imported only then, and lands in the same System object.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dpx.data import system as system_reader
from dpx.data.atoms import make_system
from dpx.data.paths import expand_systems, resolve_path
from dpx.data.schema import System
from dpx.data.system import read_systems, settle
from dpx.extras import need
from dpx.progress import Ticker

log = logging.getLogger(__name__)

NATIVE = ("deepmd/npy", "deepmd/hdf5", "deepmd/lmdb", "deepmd/comp", "deepmd")
# dpdata formats that hold several systems (one per chemical formula) in one file
MULTI = ("extxyz", "quip/gap/xyz", "quip/gap/xyz_file", "mace/xyz", "nequip/xyz", "gpumd/xyz",
         "deepmd/npy/mixed", "deepmd/mixed")


def load_systems(systems, *, base_dir=None, type_map: list[str] | None = None,
                 fmt: str | None = None, sort_atoms: bool = True, key: str = "systems",
                 threads: int = 1, in_memory: bool | None = None) -> list[System]:
    """Expand and read every system of a data section.

    systems, base_dir: as in expand_systems; fmt: the section's "format" (None: deepmd/npy,
    or deepmd/hdf5 for .h5 paths); type_map: the model's element names; sort_atoms: False
    for testing (keeps file atom order); key: the setting's path for error messages;
    threads: systems read in parallel; file reads release the GIL, so this pays on network
    file systems, while on a local disk (4 water systems: 25 ms) one thread is as fast.
    in_memory: read every frame now (True) or when drawn (False); None: now when the
    section's frames hold at most system.IN_MEMORY_BYTES, the choice logged.
    """
    fmt = (fmt or "deepmd/npy").lower()
    if fmt in NATIVE or fmt == "deepmd/raw":  # folders (or groups) holding type.raw
        paths = expand_systems(systems, base_dir, key)
    else:  # files or folders that dpdata reads as they are
        paths = _existing(systems, base_dir, key)

    def read(path: str) -> list[System]:
        if fmt in NATIVE:
            return read_systems(path, type_map, sort_atoms, in_memory=False)
        return load_dpdata(path, fmt, type_map, sort_atoms)

    workers = max(1, min(threads or 1, len(paths)))
    ticker = Ticker(log, f"{key}: reading", len(paths), "systems")
    loaded = []
    with ThreadPoolExecutor(workers) as pool:
        for found in pool.map(read, paths):  # in the sorted order
            loaded.append(found)
            ticker.advance(1)
    out = settle([s for group in loaded for s in group], in_memory)
    log.info("%s: %d system(s), %d frame(s), format %s", key, len(out),
             sum(s.nframes for s in out), fmt)
    _log_memory(out, key, in_memory)
    return out


def _log_memory(systems: list[System], key: str, asked: bool | None) -> None:
    size = sum(s.nbytes for s in systems) / 2**20
    limit = system_reader.IN_MEMORY_BYTES / 2**20
    why = "as asked" if asked is not None else f"limit {limit:.0f} MB"
    where = ("held in memory" if all(s.in_memory for s in systems)
             else "read from the files when drawn")
    log.info("%s: %.1f MB of frames, %s (%s)", key, size, where, why)


def _existing(systems, base_dir, key) -> list[str]:
    entries = [systems] if isinstance(systems, (str, os.PathLike)) else list(systems or [])
    if not entries:
        raise ValueError(f"{key}: no systems given; expected a path or a list of paths")
    paths = [resolve_path(str(e), base_dir) for e in entries]
    for entry, path in zip(entries, paths):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{key}: {str(entry)!r} does not exist (looked for {path})")
    return paths


def _import_dpdata():
    return need("dpdata", message="data sections with a \"format\" other than deepmd/npy, "
                "deepmd/hdf5 or deepmd/lmdb are read through dpdata: pip install dpdata")


def load_dpdata(path: str, fmt: str, type_map: list[str] | None = None,
                sort_atoms: bool = True) -> list[System]:
    """Read `path` with dpdata (LabeledSystem, or MultiSystems for multi-system formats)."""
    dpdata = _import_dpdata()
    try:
        if fmt in MULTI:
            found = [(f"{path}[{name}]", s) for name, s in
                     sorted(dpdata.MultiSystems.from_file(path, fmt=fmt).systems.items())]
        else:
            found = [(path, dpdata.LabeledSystem(path, fmt=fmt))]
    except Exception as err:  # dpdata raises anything from KeyError to RuntimeError
        raise ValueError(f"{path}: dpdata could not read it as format {fmt!r}: "
                         f"{type(err).__name__}: {err}") from err
    return [from_dpdata(name, s, type_map, sort_atoms) for name, s in found]


def from_dpdata(name: str, labeled, type_map=None, sort_atoms: bool = True) -> System:
    """A dpdata LabeledSystem -> System (types by dpdata's atom_names)."""
    data = labeled.data
    nf = len(data["coords"])
    labels = {}
    for src, key in (("energies", "energy"), ("forces", "force"), ("virials", "virial")):
        if src in data and data[src] is not None:
            labels[key] = _finite(name, src, np.asarray(data[src]).reshape(nf, -1))
    box = None if data.get("nopbc", False) else np.asarray(data["cells"]).reshape(nf, 9)
    coord = _finite(name, "coords", np.asarray(data["coords"]).reshape(nf, -1))
    return make_system(name, data["atom_types"], coord, box, labels,
                       names=list(data["atom_names"]), type_map=type_map,
                       sort_atoms=sort_atoms)


def _finite(name: str, key: str, arr: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(np.nonzero(bad.reshape(len(arr), -1).any(axis=1))[0][0])
        raise ValueError(f"{name}: NaN or inf in dpdata field {key!r}, frame {frame}")
    return arr

