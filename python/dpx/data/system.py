"""Reading one DeePMD system (a folder or HDF5 group: type.raw and set.* of frames) into a
System: sets concatenated, labels checked, mixed-type systems split by composition.

The storage layouts live in storage/ (one module each), path expansion in paths.py, type
remapping and atom sorting in atoms.py, the checks against the model in checks.py; their
public names are re-exported here for the callers that import them from this module.
At start-up only the index of a system is read: type.raw, type_map.raw, the headers of the
frame files (frame counts and widths are checked there) and, for a mixed-type system,
real_atom_types.npy. Frames are read when drawn (frames.Column), and their values checked
then; settle() holds a small data set in memory instead, read and checked once, since
indexing memory is what a step on a small set did before (formats.py logs the choice).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dpx.data.atoms import make_system, remap_types
from dpx.data.checks import check_labels, check_parameters
from dpx.data.frames import Column, Part, cells, finite
from dpx.data.paths import expand_systems, resolve_path
from dpx.data.schema import LABELS, LabelSpec, System
from dpx.data.storage.hdf5 import H5_SUFFIXES, H5Node, open_h5_kept, split_h5
from dpx.data.storage.lmdb import is_lmdb, read_lmdb
from dpx.data.storage.npy import DirNode, load_npy

__all__ = [
    "H5_SUFFIXES", "LABELS", "LabelSpec", "System", "check_labels", "check_parameters",
    "expand_systems", "load_npy", "make_system", "read_system", "read_systems",
    "remap_types", "resolve_path", "split_h5",
]

log = logging.getLogger(__name__)

# A data section (one branch's training or validation systems) up to this size (float64 in
# memory) is read whole at start-up: a 20k-frame x 192-atom section with forces is ~180 MB,
# above it; the shared water examples are ~2 MB.
IN_MEMORY_BYTES = 64 << 20


# ---------------------------------------------------------------- reading one system

def read_system(path: str, type_map: list[str] | None = None,
                sort_atoms: bool = True, in_memory: bool | None = None) -> System:
    """Read a system folder or `file.h5#/group` (deepmd-compat §1.1, §1.2).

    type_map: the model's element names; atom types are remapped to it through
    `type_map.raw`. sort_atoms: stable-sort atoms by type (training); False keeps the file
    order (`dp test`). in_memory: as in settle(). A mixed-type system holds several; read
    it with read_systems.
    """
    systems = read_systems(path, type_map, sort_atoms, in_memory)
    if len(systems) != 1:
        raise ValueError(f"{path} is a mixed-type system with frames of {len(systems)} "
                         f"compositions; read_systems gives one System per composition")
    return systems[0]


def read_systems(path: str, type_map: list[str] | None = None,
                 sort_atoms: bool = True, in_memory: bool | None = None) -> list[System]:
    """The systems of a folder or `file.h5#/group`: one, or for a mixed-type system
    (deepmd/npy/mixed: set.*/real_atom_types.npy gives each frame's types, type.raw is a
    placeholder) one per composition, in the order compositions first appear (a System has
    one type per atom; every frame keeps its own types). in_memory: as in settle(). An LMDB
    data set (storage/lmdb.py) gives one System per source system and composition."""
    if is_lmdb(path):
        return settle(read_lmdb(path, type_map, sort_atoms), in_memory)
    h5 = split_h5(path)
    if h5 is None:
        node = DirNode(Path(path))
    else:  # kept open: frames are read from it when drawn
        node = H5Node(open_h5_kept(h5[0]), h5[0], h5[1])
    return settle(_read(node, type_map, sort_atoms), in_memory)


def settle(systems: list[System], in_memory: bool | None = None) -> list[System]:
    """Read every frame of the systems now when in_memory, or (None) when all together
    hold at most IN_MEMORY_BYTES; else leave them read when drawn."""
    if in_memory is None:
        in_memory = sum(s.nbytes for s in systems) <= IN_MEMORY_BYTES
    for s in systems if in_memory else ():
        s.load()
    return systems


def _read(node, type_map, sort_atoms) -> list[System]:
    if not node.has("type.raw"):
        raise FileNotFoundError(f"{node.where('type.raw')} is missing: a system folder needs "
                                "type.raw (one integer type per atom)")
    atype = _read_types(node)
    names = node.words("type_map.raw") if node.has("type_map.raw") else None
    sets = node.sets()
    if not sets:
        raise FileNotFoundError(f"{node.where()}: no set.* folder; frames live in "
                                "set.000/coord.npy etc.")
    nopbc = node.has("nopbc")
    parts = [_read_set(node, s, atype.size, nopbc) for s in sets]
    coord = Column([p["coord"] for p in parts], atype.size * 3)
    box = None if nopbc else Column([p["box"] for p in parts], 9, check=cells)
    labels, find = _concat_labels(node, sets, parts)
    mixed = [node.has(f"{s}/real_atom_types.npy") for s in sets]
    if any(mixed):
        return _split_mixed(node, sets, parts, mixed, coord, box, labels, find, names,
                            type_map, sort_atoms)
    return [make_system(node.where(), atype, coord, box, labels, find, names=names,
                        type_map=type_map, sort_atoms=sort_atoms,
                        set_nframes=[p["nf"] for p in parts], lazy=True,
                        stamp=node.stamp())]


def _split_mixed(node, sets, parts, mixed, coord, box, labels, find, names, type_map,
                 sort_atoms) -> list[System]:
    """A mixed-type system as one System per composition (each frame's real_atom_types)."""
    if not all(mixed):
        missing = next(s for s, m in zip(sets, mixed) if not m)
        raise FileNotFoundError(f"{node.where(missing)}/real_atom_types.npy is missing: the "
                                f"other sets of this mixed-type system have one")
    if names is None:
        raise FileNotFoundError(f"{node.where('type_map.raw')} is missing: a mixed-type system "
                                f"names its elements there (real_atom_types.npy indexes it)")
    natoms = coord.width // 3
    real = np.concatenate([_real_types(node, s, p["nf"], natoms) for s, p in zip(sets, parts)])
    if real.min() < 0:
        raise ValueError(f"{node.where()}: real_atom_types.npy holds virtual atoms (type < 0); "
                         f"dpx reads mixed-type systems of real atoms only")
    kinds, first, inverse = np.unique(real, axis=0, return_index=True, return_inverse=True)
    out = []
    for k in np.argsort(first):  # compositions in the order they first appear
        idx = np.nonzero(inverse.reshape(-1) == k)[0]
        out.append(make_system(
            f"{node.where()}[{_formula(kinds[k], names)}]", kinds[k], coord, box, labels,
            find, names=names, type_map=type_map, sort_atoms=sort_atoms,
            set_nframes=[len(idx)], frames=idx, lazy=True, stamp=node.stamp()))
    log.info("%s: mixed-type system, %d frames of %d compositions read as %d systems",
             node.where(), len(real), len(out), len(out))
    return out


def _real_types(node, set_name: str, nf: int, natoms: int) -> np.ndarray:
    """A mixed-type set's [nf, natoms] types: read whole, they are the systems' index."""
    rel = f"{set_name}/real_atom_types.npy"
    arr = node.array(rel)
    _checked(node, rel, arr, nf, natoms, f"{set_name}/coord.npy")
    return np.asarray(arr).reshape(nf, natoms).astype(np.int64)


def _formula(types: np.ndarray, names: list[str]) -> str:
    counts = np.bincount(types, minlength=len(names))
    return "".join(f"{names[t]}{n}" for t, n in enumerate(counts) if n)


def _read_types(node) -> np.ndarray:
    words = node.words("type.raw")
    try:
        atype = np.array([int(w) for w in words], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"{node.where('type.raw')}: expected integer atom types, {err}") from err
    if atype.size == 0 or atype.min() < 0:
        raise ValueError(f"{node.where('type.raw')}: expected one non-negative integer per "
                         f"atom, got {words[:10]}")
    return atype


def _read_set(node, set_name: str, natoms: int, nopbc: bool) -> dict:
    """One set folder -> {"nf", "coord", "box" (None if nopbc), each label (None where the
    set lacks it)}: Parts of [nf, width] frames, shapes checked from the file headers."""
    coord_rel = f"{set_name}/coord.npy"
    if not node.has(coord_rel):
        raise FileNotFoundError(f"{node.where(coord_rel)} is missing: every set needs coord.npy")
    raw = node.frames(coord_rel)
    nf = 1 if raw.ndim <= 1 else raw.shape[0]
    if raw.size != nf * natoms * 3:
        raise ValueError(f"{node.where(coord_rel)}: shape {raw.shape} does not hold {natoms} "
                         f"atoms x 3 per frame ({natoms} atoms in {node.where('type.raw')})")
    _checked(node, coord_rel, raw, nf, natoms * 3, coord_rel)
    out = {"nf": nf, "coord": Part(raw, nf, node.where(coord_rel))}
    out["box"] = None if nopbc else _read_box(node, set_name, nf, coord_rel)
    for spec in LABELS:
        out[spec.key] = _read_label(node, set_name, spec, nf, natoms, coord_rel)
    return out


def _read_box(node, set_name: str, nf: int, coord_rel: str) -> Part:
    rel = f"{set_name}/box.npy"
    if not node.has(rel):
        raise FileNotFoundError(f"{node.where(rel)} is missing: periodic systems need box.npy "
                                f"(add an empty file {node.where('nopbc')} for a non-periodic one)")
    raw = node.frames(rel)
    _checked(node, rel, raw, nf, 9, coord_rel)
    return Part(raw, nf, node.where(rel))  # singular cells: frames.cells, when read


def _read_label(node, set_name, spec: LabelSpec, nf, natoms, coord_rel) -> Part | None:
    rel = f"{set_name}/{spec.key}.npy"
    if not node.has(rel) and spec.key.startswith("atom_"):
        rel = f"{set_name}/atomic_{spec.key[5:]}.npy"
    if not node.has(rel):
        return None
    arr = node.frames(rel)
    unit = natoms if spec.atomic else 1
    width = spec.ndof * unit if spec.ndof else _width(node, rel, arr, nf, unit)
    _checked(node, rel, arr, nf, width, coord_rel)
    return Part(arr, nf, node.where(rel), spec.default)


def _width(node, rel, arr, nf, unit) -> int:
    """Per-frame width of a label whose ndof is set by the file (fparam, aparam)."""
    if arr.size % (nf * unit):
        raise ValueError(f"{node.where(rel)}: {arr.size} values do not split into {nf} frames"
                         + (f" x {unit} atoms" if unit > 1 else ""))
    return arr.size // nf


def _checked(node, rel, arr, nf, width, coord_rel) -> None:
    """arr (a file's header or its values) holds [nf, width] numbers; errors name the file
    (and coord.npy for frame counts). Values are checked when read (frames.finite)."""
    if arr.ndim >= 2 and arr.shape[0] != nf:
        raise ValueError(f"{node.where(rel)} has {arr.shape[0]} frames but "
                         f"{node.where(coord_rel)} has {nf}")
    if arr.size != nf * width:
        raise ValueError(f"{node.where(rel)}: shape {arr.shape}, expected {nf} frames x "
                         f"{width} values ({nf} frames as in {node.where(coord_rel)})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{node.where(rel)}: not numeric ({arr.dtype})")


def _concat_labels(node, sets, parts) -> tuple[dict, dict]:
    """Each label's Column over the sets; a set without the file gives the default, with
    find False."""
    labels, find = {}, {}
    for spec in LABELS:
        have = [p for p in parts if p[spec.key] is not None]
        if not have:
            continue  # make_system fills it with its default, or leaves fparam/aparam out
        width = have[0][spec.key].source.size // have[0]["nf"]
        for set_name, part in zip(sets, parts):
            own = part[spec.key]
            if own is not None and own.source.size // part["nf"] != width:
                raise ValueError(f"{node.where(set_name)}/{spec.key}.npy has "
                                 f"{own.source.size // part['nf']} values per frame, other "
                                 f"sets of this system have {width}")
        labels[spec.key] = Column([p[spec.key] or Part(None, p["nf"], "", spec.default)
                                   for p in parts], width, check=finite)
        find[spec.key] = np.concatenate([np.full(p["nf"], p[spec.key] is not None)
                                         for p in parts])
    return labels, find
