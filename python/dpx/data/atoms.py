"""From the file's atoms to the model's: type remapping through type_map.raw, and the stable
sort of atoms by type that training uses (deepmd-compat §1.1)."""
from __future__ import annotations

from functools import partial

import numpy as np

from dpx.data.frames import Column, in_memory
from dpx.data.schema import LABELS, LabelSpec, System

_SPECS = {spec.key: spec for spec in LABELS}


def make_system(name: str, atype, coord, box, labels: dict, find: dict | None = None, *,
                names: list[str] | None = None, type_map: list[str] | None = None,
                sort_atoms: bool = True, set_nframes: list[int] | None = None,
                frames: np.ndarray | None = None, lazy: bool = False,
                stamp: str = "") -> System:
    """Build a System from per-frame arrays (or Columns, read when drawn) in file atom order.

    coord [nf, natoms*3] (or [nf, natoms, 3]); box [nf, 9] or None (non-periodic); labels
    keyed as in LABELS, [nf, ...] with atoms in file order; find[key] [nf] bool (default:
    all present). names: element of each type index in `atype` (type_map.raw); type_map:
    the model's. frames: the frames of these that the system takes (a composition of a
    mixed-type system), None for all. lazy: keep Columns (frames read when drawn) instead
    of reading every frame now. Also the entry point of the dpdata bridge.
    """
    atype = np.asarray(atype, dtype=np.int64).reshape(-1)
    atype, sys_type_map = remap_types(name, atype, names, type_map)
    natoms = atype.size
    nf = len(coord) if frames is None else len(frames)
    idx_map = (np.argsort(atype, kind="stable") if sort_atoms
               else np.arange(natoms))  # = lexsort((arange, atype)) of deepmd
    coord = _column(coord, name).arranged(
        (natoms, 3), lambda rows: rows.reshape(-1, natoms, 3)[:, idx_map], frames)
    if box is not None:
        box = _column(box, name).arranged((9,), lambda rows: rows, frames)
    if frames is not None:
        find = {key: np.asarray(flags)[frames] for key, flags in (find or {}).items()}
    labels, find = _ordered_labels(name, labels, find, nf, idx_map, frames)
    system = System(name=name, atype=np.ascontiguousarray(atype[idx_map]), coord=coord,
                    box=box, labels=labels, find=find, type_map=sys_type_map,
                    idx_map=idx_map, set_nframes=set_nframes or [nf], stamp=stamp)
    return system if lazy else system.load()


def _column(values, name: str) -> Column:
    return values if isinstance(values, Column) else in_memory(values, len(values), name)


def _ordered_labels(name, labels, find, nf, idx_map, frames) -> tuple[dict, dict]:
    """Labels in stored shape and atom order; every known fixed-width label present (a
    missing one at its default with find False), so all readers give the same keys."""
    out = {}
    for key, values in labels.items():
        if key not in _SPECS:
            raise ValueError(f"{name}: unknown label {key!r}; known: {sorted(_SPECS)}")
        spec, column = _SPECS[key], _column(values, name)
        width = column.width // (idx_map.size if spec.atomic else 1)
        out[key] = column.arranged(_stored_shape(spec, 1, idx_map.size, width * spec.repeat)[1:],
                                   partial(_atom_order, spec, idx_map), frames)
    find = dict(find or {})
    for spec in LABELS:
        if spec.key not in out and spec.ndof is not None:
            # a read-only broadcast: absent labels cost no memory (batches index a copy)
            shape = _stored_shape(spec, nf, idx_map.size)
            out[spec.key] = np.broadcast_to(np.float64(spec.default), shape)
            find[spec.key] = np.zeros(nf, bool)
    flags = {k: np.asarray(find.get(k, np.ones(nf, bool)), dtype=bool) for k in out}
    return out, flags


def _atom_order(spec: LabelSpec, idx_map: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[k, width] rows of a label in its stored shape (see System), atoms in idx_map order."""
    nf = rows.shape[0]
    if not spec.atomic:
        return rows
    arr = rows.reshape(nf, idx_map.size, -1)[:, idx_map]
    if spec.repeat > 1:  # atom_pref: one weight per force component, a0 a0 a0 a1 ...
        arr = np.repeat(arr, spec.repeat, axis=2)
    return np.ascontiguousarray(arr.reshape(_stored_shape(spec, nf, idx_map.size, arr.shape[2])))


def _stored_shape(spec: LabelSpec, nf: int, natoms: int, ndof: int | None = None) -> tuple:
    """[nf, ndof] global; [nf, natoms] atomic with ndof 1; [nf, natoms*ndof] repeated
    (atom_pref); [nf, natoms, ndof] other atomic labels."""
    ndof = ndof or spec.ndof * spec.repeat
    if not spec.atomic:
        return (nf, ndof)
    if spec.repeat > 1:
        return (nf, natoms * ndof)
    return (nf, natoms) if spec.ndof == 1 else (nf, natoms, ndof)


def remap_types(name: str, atype: np.ndarray, names: list[str] | None,
                type_map: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    """Map the system's type indices to the model's type_map (deepmd-compat §1.1).

    With names (type_map.raw) and a model type_map: new = type_map.index(names[old]), every
    listed element must be in type_map. Without names the integers are used as they are.
    Returns the remapped types and the type_map they index (None if neither is known).
    """
    top = int(atype.max())
    if names is not None:
        if top >= len(names):
            raise ValueError(f"{name}: type.raw uses type {top} but type_map.raw lists only "
                             f"{len(names)} elements {names}")
        if type_map is None:
            return atype, list(names)
        missing = [e for e in names if e not in type_map]
        if missing:
            raise ValueError(f"{name}: element(s) {missing} of type_map.raw are not in the "
                             f"model type_map {list(type_map)}")
        lut = np.array([list(type_map).index(e) for e in names], dtype=np.int64)
        return lut[atype], list(type_map)
    if type_map is not None and top >= len(type_map):
        raise ValueError(f"{name}: type.raw uses type {top} but the model type_map has only "
                         f"{len(type_map)} elements {list(type_map)} (and there is no "
                         "type_map.raw to remap through)")
    return atype, None if type_map is None else list(type_map)
