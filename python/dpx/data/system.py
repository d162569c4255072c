"""DeePMD systems in memory: reading the npy and HDF5 layouts, type remapping, atom sorting.

A *system* is a folder (or HDF5 group) with `type.raw` and one or more `set.*` sub-folders
(deepmd-compat §1.1, §1.2). It is read once, eagerly, into float64 numpy arrays: a training
set of 20k frames x 200 atoms is a few hundred MB, and holding it avoids per-step file I/O
and DataLoader worker processes (one process serves every multi-task branch).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

H5_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True)
class LabelSpec:
    """One label file of a set (deepmd-compat §1.1 table).

    ndof: values per frame (global) or per atom (atomic); None = read from the file and
    omitted from the system when no set has it (fparam/aparam: the width is the model's).
    repeat: each per-atom value repeated this many times (atom_pref -> one weight per
    force component).
    """
    key: str
    ndof: int | None
    atomic: bool = False
    default: float = 0.0
    repeat: int = 1


LABELS = (
    LabelSpec("energy", 1),
    LabelSpec("force", 3, atomic=True),
    LabelSpec("virial", 9),
    LabelSpec("atom_ener", 1, atomic=True),
    LabelSpec("atom_pref", 1, atomic=True, default=1.0, repeat=3),
    LabelSpec("atom_ener_coeff", 1, atomic=True, default=1.0),
    LabelSpec("fparam", None),
    LabelSpec("aparam", None, atomic=True),
)


@dataclass
class System:
    """One system, every set concatenated in lexicographic set order.

    Shapes (nf frames, natoms atoms, atoms in model-type order when sorted):
      atype [natoms] int64 (model type indices), coord [nf, natoms, 3], box [nf, 9] or None,
      labels: energy [nf, 1], force [nf, natoms, 3], virial [nf, 9], atom_ener [nf, natoms],
      atom_pref [nf, natoms*3], atom_ener_coeff [nf, natoms], fparam [nf, k],
      aparam [nf, natoms, k]; find[key] [nf] bool, False where the set lacked the file.
    A label no set has is a read-only broadcast of its default (no memory; index, don't write).
    idx_map[i] is the original (file) index of stored atom i; identity when not sorted.
    """
    name: str
    atype: np.ndarray
    coord: np.ndarray
    box: np.ndarray | None
    labels: dict[str, np.ndarray]
    find: dict[str, np.ndarray]
    type_map: list[str] | None = None
    idx_map: np.ndarray | None = None
    set_nframes: list[int] = field(default_factory=list)
    # the files read (names, sizes, mtimes) as a digest: part of a stat file's record of
    # what its statistics came from; "" where the frames came from no file of dpx's reading
    stamp: str = ""

    @property
    def nframes(self) -> int:
        return self.coord.shape[0]

    @property
    def natoms(self) -> int:
        return self.atype.shape[0]

    @property
    def nopbc(self) -> bool:
        return self.box is None

    def type_count(self, ntypes: int) -> np.ndarray:
        """Atoms of each model type, [ntypes] int64."""
        return np.bincount(self.atype, minlength=ntypes)[:ntypes].astype(np.int64)


# ---------------------------------------------------------------- storage backends

def load_npy(path: Path) -> np.ndarray:
    """np.load of a .npy file (no pickles), every failure a ValueError naming the file."""
    try:
        return np.load(path)
    except EOFError:  # what np.load raises on a 0-byte file
        raise ValueError(f"{path}: cannot read as a .npy array: the file is empty") from None
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: cannot read as a .npy array: {err}") from None


class _DirNode:
    """A system folder on disk."""

    def __init__(self, path: Path):
        self.path = path
        self._listing: dict[str, set[str]] = {}
        self._read: list[tuple[str, int, int]] = []

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
        self._note(rel)
        return (self.path / rel).read_text().split()

    def array(self, rel: str) -> np.ndarray:
        self._note(rel)
        return load_npy(self.path / rel)

    def _note(self, rel: str) -> None:
        # a stat per file read: any rewrite changes the mtime, without hashing every frame
        st = os.stat(self.path / rel)
        self._read.append((rel, st.st_size, st.st_mtime_ns))

    def stamp(self) -> str:
        return _digest(sorted(self._read))


class _H5Node:
    """A system group inside an open HDF5 file; same file names as on disk."""

    def __init__(self, h5file, filename: str, group: str):
        self.file, self.filename, self.group = h5file, filename, group.rstrip("/") or "/"

    def where(self, rel: str = "") -> str:
        inner = f"{self.group.rstrip('/')}/{rel}" if rel else self.group
        return f"{self.filename}#{inner}"

    def _key(self, rel: str) -> str:
        return f"{self.group.rstrip('/')}/{rel}"

    def has(self, rel: str) -> bool:
        return self._key(rel) in self.file

    def sets(self) -> list[str]:
        grp = self.file[self.group]
        return sorted(k for k in grp if k.startswith("set.") and hasattr(grp[k], "keys"))

    def words(self, rel: str) -> list[str]:
        data = np.atleast_1d(self.file[self._key(rel)][()])
        return [w.decode() if isinstance(w, bytes) else str(w) for w in data.tolist()]

    def array(self, rel: str) -> np.ndarray:
        return np.asarray(self.file[self._key(rel)][()])

    def stamp(self) -> str:
        st = os.stat(self.filename)
        return _digest([self.group, st.st_size, st.st_mtime_ns])


def _digest(record) -> str:
    return hashlib.sha1(repr(record).encode()).hexdigest()


def split_h5(path: str) -> tuple[str, str] | None:
    """`file.h5#/group` -> (file, group); a bare `file.h5` -> (file, "/"); else None."""
    if "#" in path:
        filename, group = path.split("#", 1)
        return filename, group or "/"
    if path.lower().endswith(H5_SUFFIXES):
        return path, "/"
    return None


def _open_h5(filename: str):
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"reading the HDF5 system {filename} needs h5py: "
                          "pip install h5py") from err
    return h5py.File(filename, "r")


# ---------------------------------------------------------------- reading one system

def read_system(path: str, type_map: list[str] | None = None,
                sort_atoms: bool = True) -> System:
    """Read a system folder or `file.h5#/group` (deepmd-compat §1.1, §1.2).

    type_map: the model's element names; atom types are remapped to it through
    `type_map.raw`. sort_atoms: stable-sort atoms by type (training); False keeps the file
    order (`dp test`). A mixed-type system holds several; read it with read_systems.
    """
    systems = read_systems(path, type_map, sort_atoms)
    if len(systems) != 1:
        raise ValueError(f"{path} is a mixed-type system with frames of {len(systems)} "
                         f"compositions; read_systems gives one System per composition")
    return systems[0]


def read_systems(path: str, type_map: list[str] | None = None,
                 sort_atoms: bool = True) -> list[System]:
    """The systems of a folder or `file.h5#/group`: one, or for a mixed-type system
    (deepmd/npy/mixed: set.*/real_atom_types.npy gives each frame's types, type.raw is a
    placeholder) one per composition, in the order compositions first appear (a System has
    one type per atom; every frame keeps its own types)."""
    h5 = split_h5(path)
    if h5 is None:
        return _read(_DirNode(Path(path)), type_map, sort_atoms)
    with _open_h5(h5[0]) as h5file:
        return _read(_H5Node(h5file, h5[0], h5[1]), type_map, sort_atoms)


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
    coord = np.concatenate([p["coord"] for p in parts])
    box = None if nopbc else np.concatenate([p["box"] for p in parts])
    labels, find = _concat_labels(node, sets, parts, atype.size)
    mixed = [node.has(f"{s}/real_atom_types.npy") for s in sets]
    if any(mixed):
        return _split_mixed(node, sets, parts, mixed, coord, box, labels, find, names,
                            type_map, sort_atoms)
    return [make_system(node.where(), atype, coord, box, labels, find, names=names,
                        type_map=type_map, sort_atoms=sort_atoms,
                        set_nframes=[p["nf"] for p in parts], stamp=node.stamp())]


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
    natoms = coord.shape[1] // 3
    real = np.concatenate([_checked(node, f"{s}/real_atom_types.npy",
                                    node.array(f"{s}/real_atom_types.npy"), p["nf"], natoms,
                                    f"{s}/coord.npy") for s, p in zip(sets, parts)])
    real = real.astype(np.int64)
    if real.min() < 0:
        raise ValueError(f"{node.where()}: real_atom_types.npy holds virtual atoms (type < 0); "
                         f"dpx reads mixed-type systems of real atoms only")
    kinds, first, inverse = np.unique(real, axis=0, return_index=True, return_inverse=True)
    out = []
    for k in np.argsort(first):  # compositions in the order they first appear
        idx = np.nonzero(inverse.reshape(-1) == k)[0]
        out.append(make_system(
            f"{node.where()}[{_formula(kinds[k], names)}]", kinds[k], coord[idx],
            None if box is None else box[idx], {key: v[idx] for key, v in labels.items()},
            {key: v[idx] for key, v in find.items()}, names=names, type_map=type_map,
            sort_atoms=sort_atoms, set_nframes=[len(idx)], stamp=node.stamp()))
    log.info("%s: mixed-type system, %d frames of %d compositions read as %d systems",
             node.where(), len(real), len(out), len(out))
    return out


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
    """One set folder -> {"nf", "coord" [nf, natoms*3], "box" [nf, 9] | None, labels}."""
    coord_rel = f"{set_name}/coord.npy"
    if not node.has(coord_rel):
        raise FileNotFoundError(f"{node.where(coord_rel)} is missing: every set needs coord.npy")
    raw = node.array(coord_rel)
    nf = 1 if raw.ndim <= 1 else raw.shape[0]
    if raw.size != nf * natoms * 3:
        raise ValueError(f"{node.where(coord_rel)}: shape {raw.shape} does not hold {natoms} "
                         f"atoms x 3 per frame ({natoms} atoms in {node.where('type.raw')})")
    out = {"nf": nf, "coord": _checked(node, coord_rel, raw, nf, natoms * 3, coord_rel)}
    out["box"] = None if nopbc else _read_box(node, set_name, nf, coord_rel)
    for spec in LABELS:
        out[spec.key] = _read_label(node, set_name, spec, nf, natoms, coord_rel)
    return out


def _read_box(node, set_name: str, nf: int, coord_rel: str) -> np.ndarray:
    rel = f"{set_name}/box.npy"
    if not node.has(rel):
        raise FileNotFoundError(f"{node.where(rel)} is missing: periodic systems need box.npy "
                                f"(add an empty file {node.where('nopbc')} for a non-periodic one)")
    box = _checked(node, rel, node.array(rel), nf, 9, coord_rel)
    det = np.linalg.det(box.reshape(nf, 3, 3))
    if np.any(np.abs(det) < 1e-12):
        bad = int(np.nonzero(np.abs(det) < 1e-12)[0][0])
        raise ValueError(f"{node.where(rel)}: frame {bad} has a singular cell "
                         f"{box[bad].tolist()}")
    return box


def _read_label(node, set_name, spec: LabelSpec, nf, natoms, coord_rel) -> np.ndarray | None:
    rel = f"{set_name}/{spec.key}.npy"
    if not node.has(rel) and spec.key.startswith("atom_"):
        rel = f"{set_name}/atomic_{spec.key[5:]}.npy"
    if not node.has(rel):
        return None
    arr = node.array(rel)
    unit = natoms if spec.atomic else 1
    width = spec.ndof * unit if spec.ndof else _width(node, rel, arr, nf, unit)
    return _checked(node, rel, arr, nf, width, coord_rel)


def _width(node, rel, arr, nf, unit) -> int:
    """Per-frame width of a label whose ndof is set by the file (fparam, aparam)."""
    if arr.size % (nf * unit):
        raise ValueError(f"{node.where(rel)}: {arr.size} values do not split into {nf} frames"
                         + (f" x {unit} atoms" if unit > 1 else ""))
    return arr.size // nf


def _checked(node, rel, arr, nf, width, coord_rel) -> np.ndarray:
    """arr as float64 [nf, width]; errors name the file (and coord.npy for frame counts)."""
    if arr.ndim >= 2 and arr.shape[0] != nf:
        raise ValueError(f"{node.where(rel)} has {arr.shape[0]} frames but "
                         f"{node.where(coord_rel)} has {nf}")
    if arr.size != nf * width:
        raise ValueError(f"{node.where(rel)}: shape {arr.shape}, expected {nf} frames x "
                         f"{width} values ({nf} frames as in {node.where(coord_rel)})")
    try:
        arr = np.asarray(arr, dtype=np.float64).reshape(nf, width)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{node.where(rel)}: not numeric ({arr.dtype}): {err}") from err
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(np.nonzero(bad.any(axis=1))[0][0])
        raise ValueError(f"{node.where(rel)}: NaN or inf in frame {frame} (0-based, in this "
                         "file)")
    return arr


def _concat_labels(node, sets, parts, natoms) -> tuple[dict, dict]:
    """Concatenate labels over sets; a set without the file gets the default, find False."""
    labels, find = {}, {}
    for spec in LABELS:
        have = [p[spec.key] for p in parts if p[spec.key] is not None]
        if not have:
            continue  # make_system fills it with its default, or leaves fparam/aparam out
        width = have[0].shape[1]
        chunks, flags = [], []
        for set_name, part in zip(sets, parts):
            arr = part[spec.key]
            if arr is not None and arr.shape[1] != width:
                raise ValueError(f"{node.where(set_name)}/{spec.key}.npy has {arr.shape[1]} "
                                 f"values per frame, other sets of this system have {width}")
            chunks.append(arr if arr is not None
                          else np.full((part["nf"], width), spec.default))
            flags.append(np.full(part["nf"], arr is not None))
        labels[spec.key], find[spec.key] = np.concatenate(chunks), np.concatenate(flags)
    return labels, find


# ---------------------------------------------------------------- types, atom order

_SPECS = {spec.key: spec for spec in LABELS}


def make_system(name: str, atype, coord, box, labels: dict, find: dict | None = None, *,
                names: list[str] | None = None, type_map: list[str] | None = None,
                sort_atoms: bool = True, set_nframes: list[int] | None = None,
                stamp: str = "") -> System:
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
                  type_map=sys_type_map, idx_map=idx_map, set_nframes=set_nframes or [nf],
                  stamp=stamp)


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


# ---------------------------------------------------------------- discovery

def expand_systems(systems, base_dir: str | os.PathLike | None = None,
                   key: str = "systems") -> list[str]:
    """Every system below each entry of `systems` (deepmd-compat §1.3).

    systems: a path or a list of paths; a folder expands to every folder below it (itself
    included) that holds type.raw, a `file.h5` or `file.h5#/group` to every group below it
    that holds type.raw; sorted per entry. Relative paths are taken from base_dir (the input
    file's folder; default the working directory). key names the setting in errors.
    """
    entries = [systems] if isinstance(systems, (str, os.PathLike)) else list(systems or [])
    if not entries:
        raise ValueError(f"{key}: no systems given; expected a path or a list of paths")
    found = []
    for entry in entries:
        found.extend(_expand_one(str(entry), base_dir, key))
    return found


def resolve_path(path: str, base_dir=None) -> str:
    """path taken relative to base_dir unless absolute; `~` expanded."""
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return os.path.normpath(os.path.abspath(p))


def _expand_one(entry: str, base_dir, key: str) -> list[str]:
    h5 = split_h5(entry)
    target = resolve_path(h5[0] if h5 else entry, base_dir)
    if not os.path.exists(target):
        raise FileNotFoundError(f"{key}: {entry!r} does not exist (looked for {target})")
    if h5:
        found = _h5_systems(target, h5[1])
    elif os.path.isdir(target):
        found = _dir_systems(target)
    else:
        raise ValueError(f"{key}: {entry!r} ({target}) is a file; expected a system folder, a "
                         "folder of systems or an .h5 file (other formats need the "
                         "data section's \"format\" key)")
    if not found:
        raise FileNotFoundError(f"{key}: {entry!r} ({target}) contains no system: no type.raw "
                                "in it or below it")
    return found


def _dir_systems(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if "type.raw" in filenames:
            found.append(dirpath)
        # set.* folders hold frames, never systems: skipping them keeps big trees fast
        dirnames[:] = [d for d in dirnames if not d.startswith("set.")]
    return sorted(found)


def _h5_systems(filename: str, group: str) -> list[str]:
    with _open_h5(filename) as h5file:
        if group not in h5file:
            raise FileNotFoundError(f"{filename}: no group {group!r} in this HDF5 file")
        root = h5file[group]
        if not hasattr(root, "keys"):
            raise ValueError(f"{filename}#{group} is a dataset, expected a group")
        names = [""] if "type.raw" in root else []

        def visit(name, obj):
            if hasattr(obj, "keys") and "type.raw" in obj:
                names.append(name)
        root.visititems(visit)
    base = group.rstrip("/")
    return [f"{filename}#{base}/{n}".rstrip("/") if n else f"{filename}#{group}"
            for n in sorted(names)]


# ---------------------------------------------------------------- model inputs

def check_labels(systems: list[System], weighted: dict[str, str], key: str) -> None:
    """Every system gives, in some set, each label the loss weights ({label: the loss keys
    that weight it}). A set without it is DeePMD-kit's find_<label> = 0 (that set adds no
    such term), but a system without it anywhere would train on a term that is never there
    and show nan for it: refused. A label the loss does not weight may be absent."""
    for s in systems:
        for label, prefactors in weighted.items():
            if label not in s.labels or not s.find[label].any():
                raise ValueError(f"{key}: system {s.name} has no {label}.npy in any set, and "
                                 f"{prefactors} weight it; add the file, or set those "
                                 f"prefactors to 0 to train without it")


def check_parameters(systems: list[System], numb_fparam: int, numb_aparam: int,
                     has_default_fparam: bool, key: str) -> None:
    """Every system gives the frame / atomic parameters the model takes, in its widths
    (fparam.npy [nf, numb_fparam], aparam.npy [nf, natoms * numb_aparam] in every set); a
    model with default_fparam takes systems without fparam.npy. Parameters the model does
    not take are ignored, as DeePMD-kit ignores them."""
    for s in systems:
        for name, width in (("fparam", numb_fparam), ("aparam", numb_aparam)):
            if width == 0:
                continue
            where = f"{key}: system {s.name}"
            if name not in s.labels or not s.find[name].all():
                if name == "fparam" and has_default_fparam:
                    continue
                missing = ("has no" if name not in s.labels or not s.find[name].any()
                           else "lacks in some of its sets")
                default = " and has no default_fparam" if name == "fparam" else ""
                raise ValueError(f"{where} {missing} {name}.npy; the model takes "
                                 f"numb_{name} {width}{default}")
            got = s.labels[name].shape[-1]
            if got != width:
                per = "per atom" if name == "aparam" else "per frame"
                raise ValueError(f"{where}: {name}.npy has {got} values {per}, the model "
                                 f"takes numb_{name} {width}")
