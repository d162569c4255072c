"""Moving data between layouts: systems that dpx reads (deepmd/npy folders, HDF5 groups, LMDB
data sets) into one DeePMD-kit LMDB data set, or into folders of deepmd/npy systems.

    to_lmdb(["data/train"], "train.lmdb")          # what `dpx convert-data` runs
    to_npy(["train.lmdb"], "train_npy")

Frames are copied in file atom order, a chunk at a time (frames read when drawn, so a data
set larger than memory converts), with their values checked as a batch's are. Each quantity
keeps the dtype its source files hold it in (Column.source_dtype: float32 stays float32, as
dpdata writes it; sets of both widths give float64).
Each source system keeps its identity: an npy folder becomes one source system of the LMDB
(frame_system_ids, what DeePMD-kit's prob_sys_size weighs), and each LMDB source system one
npy folder (one per composition where a source system mixes several).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from dpx.data.paths import expand_systems
from dpx.data.schema import System
from dpx.data.storage.lmdb import Writer, frame_record, is_lmdb, read_groups
from dpx.data.system import read_systems
from dpx.progress import Ticker

log = logging.getLogger(__name__)

CHUNK = 1000  # frames read, converted and written at a time
SET_FRAMES = 5000  # frames per set.* folder written by to_npy
_PER_ATOM_FILES = ("atom_ener", "atom_pref", "atom_ener_coeff", "aparam")


def sources(systems, base_dir=None, type_map=None, key: str = "systems") -> list[tuple]:
    """(source system id, System) of every system below `systems`, atoms in file order and
    frames read when drawn: an npy folder or HDF5 group is one source system, an LMDB data
    set adds its own (numbered on after those before it)."""
    out, offset = [], 0
    for path in expand_systems(systems, base_dir, key):
        if is_lmdb(path):
            groups = read_groups(path, type_map, sort_atoms=False)
            out += [(offset + sid, s) for sid, s in groups]
            offset += max(sid for sid, _ in groups) + 1
        else:
            out += [(offset, s) for s in read_systems(path, type_map, sort_atoms=False,
                                                      in_memory=False)]
            offset += 1
    return out


def element_table(found: list[tuple], type_map=None) -> list[str]:
    """The output's type_map: the one given, else every system's elements in the order they
    first appear."""
    if type_map:
        return list(type_map)
    names: list[str] = []
    for _, s in found:
        if s.type_map is None:
            raise ValueError(f"{s.name}: no type_map.raw, so its type indices name no element; "
                             "give --type-map (the element of each type index, in order)")
        names += [n for n in s.type_map if n not in names]
    return names


def to_lmdb(systems, output: str, *, base_dir=None, type_map=None, overwrite: bool = False,
            key: str = "systems") -> int:
    """Write every frame of `systems` to the LMDB data set `output`; returns frames written."""
    _refuse_existing(output, overwrite)
    found = sources(systems, base_dir, type_map, key)
    names = element_table(found, type_map)
    progress = Ticker(log, f"writing {output}", sum(s.nframes for _, s in found), "frames")
    writer = Writer(output, names, overwrite)
    try:
        for sid, s in found:
            atype = np.array([names.index(n) for n in s.type_map])[s.atype]
            for lo in range(0, s.nframes, CHUNK):
                hi = min(lo + CHUNK, s.nframes)
                writer.add(_records(s, atype, len(names), lo, hi), sid)
                progress.advance(hi - lo)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    _wrote(output, progress, f"{len({sid for sid, _ in found})} source system(s), "
                             f"type_map {names}")
    return progress.done


def _stored(values, lo: int, hi: int) -> np.ndarray:
    """Frames lo:hi of a System's array in the dtype of its source files."""
    dtype = getattr(values, "source_dtype", np.dtype(np.float64))  # in memory: as read
    return np.asarray(values[lo:hi]).astype(dtype, copy=False)


def _records(s: System, atype: np.ndarray, ntypes: int, lo: int, hi: int) -> list[dict]:
    coord = _stored(s.coord, lo, hi)
    box = None if s.box is None else _stored(s.box, lo, hi)
    present = [k for k in s.labels if s.find[k][lo:hi].any()]
    values = {k: _stored(s.labels[k], lo, hi) for k in present}
    return [frame_record(atype, ntypes, coord[j], None if box is None else box[j],
                         {k: values[k][j] for k in present if s.find[k][lo + j]})
            for j in range(hi - lo)]


def to_npy(systems, output: str, *, base_dir=None, type_map=None, overwrite: bool = False,
           key: str = "systems") -> int:
    """Write every system below `systems` as a deepmd/npy folder under `output`
    (sys.<source system>, with .<k> for each composition after a source system's first)."""
    _refuse_existing(output, overwrite)
    found = sources(systems, base_dir, type_map, key)
    tmp = f"{os.path.abspath(output)}.tmp-{os.getpid()}"
    progress = Ticker(log, f"writing {output}", sum(s.nframes for _, s in found), "frames")
    seen: dict[int, int] = {}
    try:
        for sid, s in found:
            k = seen[sid] = seen.get(sid, -1) + 1
            _write_npy(s, Path(tmp) / (f"sys.{sid:04d}" + (f".{k}" if k else "")), progress)
        if os.path.exists(output):
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _wrote(output, progress, f"{len(found)} system(s)")
    return progress.done


def _write_npy(s: System, folder: Path, progress: Ticker) -> None:
    folder.mkdir(parents=True)
    (folder / "type.raw").write_text("\n".join(map(str, s.atype)) + "\n")
    if s.type_map is not None:
        (folder / "type_map.raw").write_text("\n".join(s.type_map) + "\n")
    if s.box is None:
        (folder / "nopbc").touch()
    labels = [k for k in s.labels if s.find[k].any()]
    found = np.stack([s.find[k] for k in labels], axis=1) if labels else np.ones((s.nframes, 0))
    iset, lo = 0, 0
    while lo < s.nframes:  # a set holds frames that have the same labels
        hi = lo + 1
        while hi < min(s.nframes, lo + SET_FRAMES) and (found[hi] == found[lo]).all():
            hi += 1
        _write_set(s, folder / f"set.{iset:03d}", lo, hi,
                   [k for k, f in zip(labels, found[lo]) if f])
        progress.advance(hi - lo)
        iset, lo = iset + 1, hi


def _write_set(s: System, folder: Path, lo: int, hi: int, labels: list[str]) -> None:
    folder.mkdir()
    n = hi - lo
    np.save(folder / "coord.npy", _stored(s.coord, lo, hi).reshape(n, -1))
    if s.box is not None:
        np.save(folder / "box.npy", _stored(s.box, lo, hi))
    for k in labels:
        arr = _stored(s.labels[k], lo, hi)
        if k == "atom_pref":  # stored repeated for x, y, z; the file has one per atom
            arr = arr.reshape(n, s.natoms, 3)[:, :, 0]
        np.save(folder / f"{k}.npy", arr.reshape(n) if k == "energy" else arr.reshape(n, -1))


def _refuse_existing(output: str, overwrite: bool) -> None:
    if os.path.exists(output) and not overwrite:
        raise ValueError(f"{output} exists; give --overwrite to replace it")
    if os.path.join(os.getcwd(), "").startswith(os.path.join(os.path.abspath(output), "")):
        raise ValueError(f"{output} holds the working folder; name a new folder to write")


def _wrote(output: str, progress: Ticker, what: str) -> None:
    log.info("wrote %s: %d frames, %s, in %.1f s", output, progress.done, what, progress.elapsed)
