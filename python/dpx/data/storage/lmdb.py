"""deepmd/lmdb: DeePMD-kit 3.2's LMDB data set, what `dp --pt train` reads when `systems` is
one path that ends in .lmdb or is a folder holding data.mdb.

One LMDB environment (a folder: data.mdb, lock.mdb) holds every frame, of any atom count and
composition (deepmd/dpmodel/utils/lmdb_data.py reads it, dpdata's deepmd/lmdb format writes it):
- b"__metadata__": a msgpack map: nframes, frame_idx_fmt ("012d"), type_map (element names),
  frame_nlocs (atoms of each frame), frame_system_ids (the source system of each frame).
  Older writers leave out the last three; dpx then reads each frame's atom count and takes
  every frame as system 0.
- format(i, frame_idx_fmt) for frame i: a msgpack map. Arrays are maps {"type": numpy dtype
  name, "shape": [...], "data": C-order bytes}: atom_types [natoms] (indices into type_map),
  coords [natoms, 3], cells [3, 3] (left out: not periodic), energies [] (or a plain number),
  forces [natoms, 3], virials [3, 3], and atom_ener, atom_pref, atom_ener_coeff [natoms],
  fparam [k], aparam [natoms, k]; atom_numbs lists the count of each type. A frame without a
  label has DeePMD-kit's find_<label> = 0. DeePMD-kit also takes the singular names (coord,
  box, energy, force, virial, atype) and atomic_* for atom_*, and so does dpx.

A dpx System has one type per atom, so a database is read as one System per (source system,
atom types in order, periodic or not), in the order they first appear: what
deepmd/npy/mixed gives for a folder of frames of several compositions. Finding those takes
each frame's atom_types, so the index is one pass over the frames at start-up (their sizes
are checked then, as the .npy headers are, once per layout of keys, dtypes and shapes);
values are read when drawn (Field) and checked then by frames.Column. Unlike npy and HDF5,
whose nodes system.py reads, an LMDB is read here.
lmdb and msgpack are imported only when a database is opened: `pip install dpx[lmdb]`.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from dpx.data.atoms import make_system
from dpx.data.frames import BadFrame, Column, Part, cells, finite, float_dtype
from dpx.data.schema import LABELS, System
from dpx.data.storage import digest
from dpx.extras import need

log = logging.getLogger(__name__)

METADATA = b"__metadata__"
FRAME_FMT = "012d"
# dpx's name -> the keys a frame may hold it under; the first is the one dpx writes (DeePMD-kit's
# _KEY_REMAP and its atomic_ -> atom_ rule)
FIELDS = {"coord": ("coords", "coord"), "box": ("cells", "box"),
          "energy": ("energies", "energy"), "force": ("forces", "force"),
          "virial": ("virials", "virial"), "atom_ener": ("atom_ener", "atomic_ener"),
          "atom_pref": ("atom_pref", "atomic_pref"),
          "atom_ener_coeff": ("atom_ener_coeff", "atomic_ener_coeff"),
          "fparam": ("fparam",), "aparam": ("aparam",)}
TYPES = ("atom_types", "atype")
LABEL_KEYS = tuple(k for k in FIELDS if k not in ("coord", "box"))
_SPECS = {spec.key: spec for spec in LABELS}
# a batch's frames are decoded once for all its fields (coord, box, labels read one by one)
CACHE_FRAMES = 4096


def import_lmdb():
    """The lmdb and msgpack modules, or one line naming the extra that installs them."""
    return need("lmdb", "msgpack", message="LMDB data needs the {name} package: pip install "
                "'dpx[lmdb]' (or pip install lmdb msgpack)")


def is_lmdb(path: str) -> bool:
    """DeePMD-kit's rule (lmdb_data.is_lmdb): a path ending in .lmdb, or a folder with data.mdb."""
    return str(path).rstrip("/").endswith(".lmdb") or os.path.isfile(os.path.join(path,
                                                                                   "data.mdb"))


_OPEN: dict[tuple[int, str], object] = {}


def open_env(path: str):
    """path's environment, read-only, kept open for the frames read when drawn. One per path
    and process: python-lmdb refuses a second open of a path in one process."""
    key = (os.getpid(), os.path.abspath(path))
    if key not in _OPEN:
        lmdb, _ = import_lmdb()
        data = os.path.join(path, "data.mdb")
        if not os.path.isdir(path):
            raise ValueError(f"{path}: not a folder; an LMDB data set is a folder holding "
                             "data.mdb")
        if not os.path.isfile(data):
            raise FileNotFoundError(f"{data} is missing: an LMDB data set is a folder holding "
                                    "data.mdb")
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        except lmdb.Error as err:
            raise ValueError(f"{data}: cannot open as an LMDB database: {err}") from None
        # a cut-short file opens, then a read of a page past its end kills the process (SIGBUS)
        need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        have = os.path.getsize(data)
        if have < need:
            env.close()
            raise ValueError(f"{data}: the file is cut short ({have} bytes, its last page "
                             f"ends at byte {need})")
        _OPEN[key] = env
    return _OPEN[key]


class Database:
    """An open LMDB data set: its metadata, and its frames decoded by index."""

    def __init__(self, path: str):
        self.path = path.rstrip("/")
        self.env = open_env(self.path)
        _, self.msgpack = import_lmdb()
        with self.env.begin() as txn:
            raw = txn.get(METADATA)
        if raw is None:
            raise ValueError(f"{self.path}: no __metadata__ key: not a DeePMD-kit LMDB data set "
                             "(its writers record nframes, frame_idx_fmt and type_map there)")
        meta = self._unpack(raw, "__metadata__")
        if not isinstance(meta, dict):
            raise ValueError(f"{self.path}: __metadata__ is a {type(meta).__name__}, expected "
                             "a map of nframes, frame_idx_fmt, type_map, ...")
        self.nframes = _count(meta.get("nframes"), f"{self.path}: __metadata__ nframes")
        self.fmt = meta.get("frame_idx_fmt", FRAME_FMT)
        try:
            format(0, self.fmt)
        except (TypeError, ValueError):
            raise ValueError(f"{self.path}: __metadata__ frame_idx_fmt {self.fmt!r} is not an "
                             "integer format such as '012d'") from None
        self.type_map = _names(meta.get("type_map"), self.path)
        self.nlocs = self._per_frame(meta, "frame_nlocs")
        self.sids = self._per_frame(meta, "frame_system_ids")
        self._last: tuple[bytes, list] | None = None

    def _per_frame(self, meta: dict, name: str) -> np.ndarray | None:
        values = meta.get(name)
        if values is None:
            return None
        where = f"{self.path}: __metadata__ {name}"
        if not isinstance(values, list) or len(values) != self.nframes:
            got = f"{len(values)} values" if isinstance(values, list) else repr(values)[:40]
            raise ValueError(f"{where}: {got}, expected a list of {self.nframes} integers "
                             "(nframes)")
        if not all(isinstance(v, int) and v >= 0 for v in values):
            bad = next(v for v in values if not (isinstance(v, int) and v >= 0))
            raise ValueError(f"{where}: {bad!r} is not a non-negative integer")
        return np.asarray(values, dtype=np.int64)

    def key(self, i: int) -> bytes:
        return format(int(i), self.fmt).encode()

    def where(self, i: int) -> str:
        return f"{self.path} frame {int(i)} (key {self.key(i).decode()!r})"

    def _unpack(self, raw, what: str):
        try:
            return self.msgpack.unpackb(raw, raw=False)
        except Exception as err:  # msgpack raises ExtraData, FormatError, ValueError, ...
            raise ValueError(f"{self.path}: cannot decode {what}: {type(err).__name__}: "
                             f"{err}") from None

    def frames(self, ids: np.ndarray) -> list[dict]:
        """Frames ids (sorted, unique), msgpack-decoded; arrays still {type, shape, data}."""
        tag = ids.tobytes()
        if self._last is not None and self._last[0] == tag:
            return self._last[1]
        out = list(self.each(ids.tolist()))
        if ids.size <= CACHE_FRAMES:
            self._last = (tag, out)
        return out

    def each(self, ids):
        """Frames ids one at a time, as frames() gives them. Nothing is held: a frame's
        arrays are freed before the next is decoded into the same memory (holding thousands
        cost the scan more in fresh pages than msgpack took)."""
        with self.env.begin(buffers=True) as txn:
            for i in ids:
                raw = txn.get(self.key(i))
                if raw is None:
                    raise BadFrame(f"{self.where(i)} is missing; __metadata__ says nframes "
                                   f"{self.nframes}")
                frame = self._unpack(raw, f"frame {i}")
                if not isinstance(frame, dict):
                    raise BadFrame(f"{self.where(i)}: a {type(frame).__name__}, expected a map")
                yield frame


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {value!r}, expected a positive integer (frames stored)")
    return value


def _names(value, path: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: __metadata__ type_map {value!r} is not a list of element "
                         "names")
    return list(value)


def decode(value, where: str) -> np.ndarray:
    """A frame's value: an encoded array {type, shape, data} or a plain number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.array([value], dtype=np.float64)
    if not isinstance(value, dict) or "data" not in value or "type" not in value:
        raise BadFrame(f"{where}: {type(value).__name__} {str(value)[:40]}, expected an array "
                       "{type, shape, data} or a number")
    try:
        dtype = np.dtype(value["type"])
    except TypeError:
        raise BadFrame(f"{where}: dtype {value['type']!r} is not a numpy dtype") from None
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise BadFrame(f"{where}: not numeric ({dtype})")
    data = value["data"]
    if not isinstance(data, bytes):  # msgpack gives a bin as bytes, anything else as itself
        raise BadFrame(f"{where}: data is {type(data).__name__} {data!r:.40}, expected the "
                       "array's bytes")
    shape = value.get("shape", [len(data) // dtype.itemsize])
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise BadFrame(f"{where}: shape {shape!r:.40} is not a list of sizes")
    need = math.prod(shape) * dtype.itemsize  # Python ints: np.prod costs ~10 us a call
    if len(data) != need:
        raise BadFrame(f"{where}: shape {list(shape)} of {dtype} takes {need} bytes, "
                       f"the frame holds {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def lookup(frame: dict, names: tuple[str, ...]) -> tuple[str, object]:
    """(key, value) of the first of names a frame has; value None where it has none (or
    says find_<key> 0)."""
    for name in names:
        if name in frame:
            return name, None if frame.get(f"find_{name}", 1) == 0 else frame[name]
    return names[0], None


# ---------------------------------------------------------------- the index
# Decoding and checking every array of every frame in Python took ~75 us a frame, ten times
# msgpack's read of it (benchmarks/lmdb_index.py). The sizes and dtypes are checked once per
# layout (_layout_key: the keys, dtypes, shapes and byte counts of a frame, the metadata's
# atom count), the atom types once per composition.

@dataclass
class Layout:
    """The frames of one layout, checked on the first of them."""
    types: str  # the key of the atom types
    pbc: bool
    arrays: dict[str, tuple[str, np.dtype]]  # dpx key -> (the frame's key for it, its dtype)
    widths: dict[str, int]  # fparam, aparam -> values per frame or atom


@dataclass
class Group:
    """Frames of one source system with the same atom types and periodicity: a System."""
    sid: int
    atype: np.ndarray
    pbc: bool
    widths: dict = field(default_factory=dict)  # fparam/aparam -> (values per unit, frame)
    layouts: list = field(default_factory=list)  # those of its frames

    def take(self, db: Database, i: int, layout: Layout) -> None:
        """Frame i, of this group, has layout: its widths must be the group's."""
        self.layouts.append(layout)
        for key, width in layout.widths.items():
            first = self.widths.setdefault(key, (width, i))
            if first[0] != width:
                raise ValueError(f"{db.where(i)} {layout.arrays[key][0]}: {width} values per "
                                 f"{'atom' if _SPECS[key].atomic else 'frame'}, frame "
                                 f"{first[1]} of this system has {first[0]}")

    def dtype(self, key: str) -> np.dtype:
        """What key's values are stored in (float_dtype of its frames')."""
        return float_dtype(*{x.arrays[key][1] for x in self.layouts if key in x.arrays})


@dataclass
class Index:
    group: np.ndarray  # [nframes] the Group of each frame
    groups: list[Group]
    has: dict[str, np.ndarray]  # label -> [nframes] bool, the frame holds it


def scan(db: Database) -> Index:
    """Each frame's group and labels, sizes checked (values are checked when drawn)."""
    t0 = time.perf_counter()
    layouts: dict[tuple, int] = {}
    seen: list[Layout] = []
    finder = _Groups(db)
    layout = np.empty(db.nframes, dtype=np.int64)
    group = np.empty(db.nframes, dtype=np.int64)
    sids = [0] * db.nframes if db.sids is None else db.sids.tolist()
    nlocs = [None] * db.nframes if db.nlocs is None else db.nlocs.tolist()
    for i, frame in enumerate(db.each(range(db.nframes))):
        key = (nlocs[i], _layout_key(frame))
        try:
            j = layouts.setdefault(key, len(seen))
        except TypeError:  # a value msgpack gives unhashable: this frame checked alone
            j = len(seen)
        atype = None
        if j == len(seen):
            atype = _atom_types(db, i, frame)
            seen.append(_check_layout(db, i, frame, atype.size))
        layout[i], group[i] = j, finder.find(i, frame, sids[i], seen[j], j, atype)
    has = {k: np.array([k in x.arrays for x in seen], dtype=bool)[layout] for k in LABEL_KEYS}
    log.info("%s: %d frames indexed in %.1f s: %d system(s), %d composition(s)", db.path,
             db.nframes, time.perf_counter() - t0, len({g.sid for g in finder.groups}),
             len(finder.groups))
    return Index(group, finder.groups, has)


class _Groups:
    """The groups of a scan: a frame's by its stored atom types (bytes), and a new one's by
    their values (the same types stored as int32 and int64 are one group)."""

    def __init__(self, db: Database):
        self.db, self.groups = db, []
        self.by_bytes: dict[tuple, int] = {}
        self.by_types: dict[tuple, int] = {}
        self.taken: set[tuple[int, int]] = set()  # (group, layout) pairs merged

    def find(self, i: int, frame: dict, sid: int, layout: Layout, j: int,
             atype: np.ndarray | None) -> int:
        """The group of frame i (of layout j; atype: its atom types where already read)."""
        key = (sid, frame[layout.types]["data"], layout.pbc)
        g = self.by_bytes.get(key)
        if g is None:
            atype = _atom_types(self.db, i, frame) if atype is None else atype
            g = self.by_types.setdefault((sid, atype.tobytes(), layout.pbc), len(self.groups))
            if g == len(self.groups):
                self.groups.append(Group(sid, atype, layout.pbc))
            self.by_bytes[key] = g
        if (g, j) not in self.taken:
            self.taken.add((g, j))
            self.groups[g].take(self.db, i, layout)
        return g


def _layout_key(frame: dict) -> tuple:
    """What the size checks read of a frame, less its arrays' bytes: frames with one key pass
    or fail them alike."""
    return tuple([(k, v == 0 if k.startswith("find_") else _brief(v)) for k, v in frame.items()])


def _brief(value):
    if type(value) is not dict:
        return type(value)  # a number passes as any number does; anything else fails
    data, shape = value.get("data"), value.get("shape")
    return (value.get("type"), tuple(shape) if type(shape) is list else shape,
            len(data) if type(data) is bytes else data)


def _check_layout(db: Database, i: int, frame: dict, natoms: int) -> Layout:
    """Frame i's layout (natoms atoms): its coords, cells and labels, their sizes checked."""
    types, _ = lookup(frame, TYPES)
    name, coord = lookup(frame, FIELDS["coord"])
    if coord is None:
        raise ValueError(f"{db.where(i)}: no coords")
    arrays = {"coord": (name, _check_size(db, i, name, coord, 3 * natoms,
                                          f"{natoms} atoms x 3").dtype)}
    name, box = lookup(frame, FIELDS["box"])
    if box is not None:
        arrays["box"] = (name, _check_size(db, i, name, box, 9, "3 x 3").dtype)
    widths = {}
    for label in LABEL_KEYS:
        name, value = lookup(frame, FIELDS[label])
        if value is not None:
            dtype, width = _check_label(db, i, label, name, value, natoms)
            arrays[label] = (name, dtype)
            if width is not None:
                widths[label] = width
    return Layout(types, box is not None, arrays, widths)


def _atom_types(db: Database, i: int, frame: dict) -> np.ndarray:
    """A frame's atom types, checked against type_map and frame_nlocs."""
    name, value = lookup(frame, TYPES)
    if value is None:
        raise ValueError(f"{db.where(i)}: no atom_types")
    atype = decode(value, f"{db.where(i)} {name}").reshape(-1)
    if not np.issubdtype(atype.dtype, np.integer) or atype.size == 0:
        raise ValueError(f"{db.where(i)} atom_types: {atype.size} values of {atype.dtype}, "
                         "expected one integer type per atom")
    atype = atype.astype(np.int64)
    ntypes = len(db.type_map) if db.type_map is not None else None
    if atype.min() < 0 or (ntypes is not None and atype.max() >= ntypes):
        raise ValueError(f"{db.where(i)} atom_types: type {int(atype.max())} or "
                         f"{int(atype.min())} outside type_map {db.type_map}")
    if db.nlocs is not None and db.nlocs[i] != atype.size:
        raise ValueError(f"{db.where(i)}: {atype.size} atoms, __metadata__ frame_nlocs says "
                         f"{int(db.nlocs[i])}")
    return atype


def _check_size(db, i, name, value, width, what) -> np.ndarray:
    arr = decode(value, f"{db.where(i)} {name}")
    if arr.size != width:
        raise ValueError(f"{db.where(i)} {name}: shape {list(arr.shape)}, expected {what} "
                         f"values")
    return arr


def _check_label(db, i, label: str, name: str, value, natoms: int) -> tuple[np.dtype, int | None]:
    """A label's dtype, and its values per atom or frame where the data sets its width."""
    spec = _SPECS[label]
    if spec.ndof is not None:
        unit = f"{natoms} atoms x {spec.ndof}" if spec.atomic else str(spec.ndof)
        width = spec.ndof * (natoms if spec.atomic else 1)
        return _check_size(db, i, name, value, width, unit).dtype, None
    arr = decode(value, f"{db.where(i)} {name}")
    per = natoms if spec.atomic else 1
    if arr.size % per or not arr.size:
        raise ValueError(f"{db.where(i)} {name}: shape {list(arr.shape)} does not split into "
                         f"{natoms} atoms")
    return arr.dtype, arr.size // per


# ---------------------------------------------------------------- frames read when drawn

class Field:
    """One quantity of every frame of a database as a frames.Part source: rows(idx, width)
    decodes frames idx; a frame without it gives `default` (its find flag is False). dtype:
    what its frames hold (float_dtype), rows() gives float64."""

    def __init__(self, db: Database, names: tuple[str, ...], default: float, dtype: np.dtype):
        self.db, self.names, self.default = db, names, default
        self.dtype, self.ndim = dtype, 2

    def rows(self, idx: np.ndarray, width: int) -> np.ndarray:
        out = np.full((idx.size, width), self.default)
        for r, (i, frame) in enumerate(zip(idx.tolist(), self.db.frames(idx))):
            name, value = lookup(frame, self.names)
            if value is None:
                continue
            arr = decode(value, f"{self.db.where(i)} {name}")
            if arr.size != width:
                raise BadFrame(f"{self.db.where(i)} {name}: {arr.size} values, "
                               f"expected {width}")
            out[r] = arr.reshape(-1)
        return out


def read_groups(path: str, type_map: list[str] | None = None,
                sort_atoms: bool = True) -> list[tuple[int, System]]:
    """(source system id, System) for each group of the database at path, frames read when
    drawn. type_map, sort_atoms: as in system.read_system."""
    db = Database(path)
    index = scan(db)
    st = os.stat(os.path.join(db.path, "data.mdb"))
    stamp = digest([st.st_size, st.st_mtime_ns])
    many = np.bincount([g.sid for g in index.groups]) > 1
    out = []
    for g, group in enumerate(index.groups):
        frames = np.flatnonzero(index.group == g)
        name = f"{db.path}[{group.sid}]"
        if many[group.sid]:
            name = f"{db.path}[{group.sid}:{_formula(group.atype, db.type_map)}#{g}]"
        out.append((group.sid, _system(db, index, group, frames, name, type_map, sort_atoms,
                                       stamp)))
    return out


def read_lmdb(path: str, type_map: list[str] | None = None,
              sort_atoms: bool = True) -> list[System]:
    """The Systems of an LMDB data set (see the module docstring)."""
    return [s for _, s in read_groups(path, type_map, sort_atoms)]


def _system(db, index, group: Group, frames, name, type_map, sort_atoms, stamp) -> System:
    natoms = group.atype.size

    def column(key, width, check=finite, default=0.0):
        source = Field(db, FIELDS[key], default, group.dtype(key))
        part = Part(source, db.nframes, f"{db.path} {FIELDS[key][0]}")
        return Column([part], width, check=check)

    labels = {}
    for key, flags in index.has.items():
        if not flags[frames].any():
            continue  # make_system gives its default (find False), or leaves fparam out
        spec = _SPECS[key]
        width = (spec.ndof if spec.ndof is not None else group.widths[key][0])
        labels[key] = column(key, width * (natoms if spec.atomic else 1),
                             default=spec.default)
    find = {key: index.has[key] for key in labels}
    box = column("box", 9, check=cells) if group.pbc else None
    return make_system(name, group.atype, column("coord", 3 * natoms), box, labels, find,
                       names=db.type_map, type_map=type_map, sort_atoms=sort_atoms,
                       frames=frames, lazy=True, stamp=stamp)


def _formula(atype: np.ndarray, names: list[str] | None) -> str:
    counts = np.bincount(atype)
    return "".join(f"{names[t] if names else t}{n}" for t, n in enumerate(counts) if n)


# ---------------------------------------------------------------- writing

def encode(arr: np.ndarray) -> dict:
    """An array as DeePMD-kit's LMDB frames hold it: {type, shape, data}."""
    arr = np.asarray(arr)  # tobytes() is C order whatever the strides; 0-d stays 0-d
    return {"type": str(arr.dtype), "shape": list(arr.shape), "data": arr.tobytes()}


def frame_record(atype: np.ndarray, ntypes: int, coord, box, labels: dict) -> dict:
    """One frame's map in the layout dpdata's deepmd/lmdb writes (module docstring): atype
    [natoms] indices into the database's type_map, coord [natoms, 3], box [9] or None,
    labels {dpx label: this frame's value in the System's stored shape}."""
    natoms = atype.size
    frame = {"atom_types": encode(atype.astype(np.int32)),
             "coords": encode(np.reshape(coord, (natoms, 3)))}
    if box is not None:
        frame["cells"] = encode(np.reshape(box, (3, 3)))
    for key, value in labels.items():
        value = np.asarray(value)
        if key == "energy":
            value = value.reshape(())  # dpdata's energies are [nframes]: a frame's is 0-d
        elif key == "atom_pref":
            value = value.reshape(natoms, 3)[:, 0]  # stored repeated for x, y, z
        elif key in ("force", "virial"):
            value = value.reshape(-1, 3)
        elif key == "aparam":
            value = value.reshape(natoms, -1)
        frame[FIELDS[key][0]] = encode(value)
    frame["atom_numbs"] = np.bincount(atype, minlength=ntypes)[:ntypes].tolist()
    return frame


class Writer:
    """Writes an LMDB data set frame by frame into a temporary folder beside `path`, then
    renames it into place (close()), so a failed conversion leaves no half database."""

    def __init__(self, path: str, type_map: list[str], overwrite: bool = False):
        lmdb, self.msgpack = import_lmdb()
        self.path, self.type_map, self.overwrite = path.rstrip("/"), list(type_map), overwrite
        if os.path.exists(self.path) and not overwrite:
            raise ValueError(f"{self.path} exists; give --overwrite to replace it")
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self.tmp = f"{os.path.abspath(self.path)}.tmp-{os.getpid()}"
        self.env = lmdb.open(self.tmp, map_size=64 << 20, subdir=True, meminit=False)
        self.map_full = lmdb.MapFullError
        self.nlocs: list[int] = []
        self.sids: list[int] = []

    def add(self, records: list[dict], sid: int) -> None:
        """Append frames (frame_record maps) of source system sid in one transaction."""
        packed = [(format(len(self.nlocs) + j, FRAME_FMT).encode(),
                   self.msgpack.packb(r, use_bin_type=True)) for j, r in enumerate(records)]
        self._put(packed)
        self.nlocs.extend(r["atom_types"]["shape"][0] for r in records)
        self.sids.extend([sid] * len(records))

    def _put(self, items: list[tuple[bytes, bytes]]) -> None:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in items:
                        txn.put(k, v)
                return
            except self.map_full:  # the map only reserves address space: grow it and retry
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def close(self) -> None:
        """Write __metadata__ and move the database into place."""
        meta = {"nframes": len(self.nlocs), "frame_idx_fmt": FRAME_FMT,
                "type_map": self.type_map, "frame_nlocs": self.nlocs,
                "frame_system_ids": self.sids}
        self._put([(METADATA, self.msgpack.packb(meta, use_bin_type=True))])
        self.env.sync()
        self.env.close()
        if os.path.exists(self.path):
            old = f"{self.tmp}-old"
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            _remove(old)
        else:
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.env.close()
        _remove(self.tmp)


def _remove(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
