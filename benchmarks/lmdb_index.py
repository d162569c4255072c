"""Start-up index of an LMDB data set: the seconds `storage.lmdb.scan` takes to group every
frame into Systems (issue 28), per frame.

    # the data (outside the repo; nothing committed): random frames of 192 atoms as --systems
    # npy folders, then `dpx convert-data` into one LMDB; skipped when OUT exists
    python benchmarks/lmdb_index.py make --frames 20000 --out /tmp/idx20k.lmdb
    # the worst case: every frame its own order of the 64 O and 128 H (its own composition),
    # written by storage.lmdb.Writer directly
    python benchmarks/lmdb_index.py make --frames 20000 --unique-types --out /tmp/uniq20k.lmdb

    python benchmarks/lmdb_index.py time /tmp/idx20k.lmdb [--repeats 3] [--no-meta]

Run from a checkout: `PYTHONPATH=$PWD/python:$PWD python benchmarks/lmdb_index.py ...`.
The frames are random (uniform coordinates in a 12 A box, Gaussian labels: coord, box,
energy, force, virial as float64), so the figure is the reader's, not the data's. --no-meta
times the database as an older writer leaves it (no frame_nlocs / frame_system_ids): a copy
with those keys removed from __metadata__.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NATOMS = 192


def make(frames: int, systems: int, out: Path) -> None:
    """`systems` npy folders of random frames (2 elements, 64 + 128 atoms), converted."""
    from dpx.cli.main import main
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for k, nf in enumerate(np.diff(np.linspace(0, frames, systems + 1).astype(int))):
            folder = Path(tmp) / f"sys.{k:03d}"
            (folder / "set.000").mkdir(parents=True)
            (folder / "type.raw").write_text(" ".join(["0"] * 64 + ["1"] * 128) + "\n")
            (folder / "type_map.raw").write_text("O\nH\n")
            arrays = {"coord": rng.uniform(0, 12, (nf, NATOMS * 3)),
                      "box": np.tile(np.eye(3).reshape(1, 9) * 12, (nf, 1)),
                      "energy": rng.normal(size=nf), "force": rng.normal(size=(nf, NATOMS * 3)),
                      "virial": rng.normal(size=(nf, 9))}
            for name, arr in arrays.items():
                np.save(folder / "set.000" / f"{name}.npy", arr)
        assert main(["convert-data", tmp, "-o", str(out)]) == 0


def make_unique(frames: int, out: Path) -> None:
    """One source system of random frames, each with its own atom order."""
    from dpx.data.storage.lmdb import Writer, frame_record
    rng = np.random.default_rng(0)
    writer = Writer(str(out), ["O", "H"])
    base = np.array([0] * 64 + [1] * 128)
    for lo in range(0, frames, 1000):
        writer.add([frame_record(rng.permutation(base), 2, rng.uniform(0, 12, (NATOMS, 3)),
                                 np.eye(3).reshape(9) * 12,
                                 {"energy": rng.normal(), "force": rng.normal(size=NATOMS * 3),
                                  "virial": rng.normal(size=9)})
                    for _ in range(min(1000, frames - lo))], 0)
    writer.close()


def strip_meta(src: Path, dst: Path) -> None:
    """A copy of src whose __metadata__ lacks frame_nlocs and frame_system_ids."""
    import lmdb
    import msgpack
    shutil.copytree(src, dst)
    env = lmdb.open(str(dst), map_size=(src / "data.mdb").stat().st_size * 2)
    with env.begin(write=True) as txn:
        meta = msgpack.unpackb(txn.get(b"__metadata__"), raw=False)
        for key in ("frame_nlocs", "frame_system_ids"):
            meta.pop(key, None)
        txn.put(b"__metadata__", msgpack.packb(meta, use_bin_type=True))
    env.close()


def time_scan(path: Path, repeats: int) -> None:
    from dpx.data.storage import lmdb as store
    db = store.Database(str(path))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index = store.scan(db)
        times.append(time.perf_counter() - t0)
    best, med = min(times), statistics.median(times)
    print(f"{path}: {db.nframes} frames, {len(index.groups)} group(s); scan best {best:.3f} s "
          f"median {med:.3f} s = {best / db.nframes * 1e6:.1f} us a frame (best), "
          f"{med / db.nframes * 1e6:.1f} (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make")
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--systems", type=int, default=4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--unique-types", action="store_true")
    p = sub.add_parser("time")
    p.add_argument("path", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-meta", action="store_true")
    args = parser.parse_args()
    if args.cmd == "make":
        if args.out.exists():
            print(f"{args.out} exists: kept")
        elif args.unique_types:
            make_unique(args.frames, args.out)
        else:
            make(args.frames, args.systems, args.out)
        return
    if not args.no_meta:
        time_scan(args.path, args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        strip_meta(args.path, Path(tmp) / "old.lmdb")
        time_scan(Path(tmp) / "old.lmdb", args.repeats)


if __name__ == "__main__":
    sys.exit(main())
