"""From the file's atoms to the model's: type remapping through type_map.raw, and the stable
sort of atoms by type that training uses (deepmd-compat §1.1)."""
from __future__ import annotations

import numpy as np

from dpx.data.schema import LABELS, LabelSpec, System

_SPECS = {spec.key: spec for spec in LABELS}


def make_system(name: str, atype, coord, box, labels: dict, find: dict | None = None, *,
                names: list[str] | None = None, type_map: list[str] | None = None,
                sort_atoms: bool = True, set_nframes: list[int] | None = None) -> System:
    """Build a System from per-frame arrays in file atom order.

    coord [nf, natoms*3] (or [nf, natoms, 3]); box [nf, 9] or None (non-periodic); labels
    keyed as in LABELS, [nf, ...] with atoms in file order; find[key] [nf] bool (default:
    all present). names: element of each type index in `atype` (type_map.raw); type_map:
    the model's. Also the entry point of the dpdata bridge.
    """
    atype = np.asarray(atype, dtype=np.int64).reshape(-1)
    atype, sys_type_map = remap_types(name, atype, names, type_map)
    natoms, nf = atype.size, len(coord)
    idx_map = (np.argsort(atype, kind="stable") if sort_atoms
               else np.arange(natoms))  # = lexsort((arange, atype)) of deepmd
    coord = np.asarray(coord, dtype=np.float64).reshape(nf, natoms, 3)[:, idx_map]
    labels, find = _ordered_labels(name, labels, find, nf, idx_map)
    box = None if box is None else np.asarray(box, dtype=np.float64).reshape(nf, 9)
    return System(name=name, atype=np.ascontiguousarray(atype[idx_map]),
                  coord=np.ascontiguousarray(coord), box=box, labels=labels, find=find,
                  type_map=sys_type_map, idx_map=idx_map, set_nframes=set_nframes or [nf])


def _ordered_labels(name, labels, find, nf, idx_map) -> tuple[dict, dict]:
    """Labels in stored shape and atom order; every known fixed-width label present (a
    missing one at its default with find False), so all readers give the same keys."""
    out = {}
    for key, arr in labels.items():
        if key not in _SPECS:
            raise ValueError(f"{name}: unknown label {key!r}; known: {sorted(_SPECS)}")
        out[key] = _atom_order(_SPECS[key], np.asarray(arr, dtype=np.float64), nf, idx_map)
    find = dict(find or {})
    for spec in LABELS:
        if spec.key not in out and spec.ndof is not None:
            # a read-only broadcast: absent labels cost no memory (batches index a copy)
            shape = _stored_shape(spec, nf, idx_map.size)
            out[spec.key] = np.broadcast_to(np.float64(spec.default), shape)
            find[spec.key] = np.zeros(nf, bool)
    flags = {k: np.asarray(find.get(k, np.ones(nf, bool)), dtype=bool) for k in out}
    return out, flags


def _atom_order(spec: LabelSpec, arr: np.ndarray, nf: int, idx_map) -> np.ndarray:
    """Reshape a label to its stored shape (see System) with atoms in idx_map order."""
    if not spec.atomic:
        return arr.reshape(nf, -1)
    arr = arr.reshape(nf, idx_map.size, -1)[:, idx_map]
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
