"""The start-up scan of neighbor statistics (nlist/stat.py): frames read in chunks from the
files, grouped across systems and split within them, counted by dpx::neighbor_stat with a
reader thread ahead, must give what a frame-by-frame loop over the twin
(reference.neighbor_stat) gives; its per-system cache must be read back, and a system whose
files changed scanned again; an estimate reads only the sampled frames and is never cached."""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch

from dpx import ops
from dpx.data import load_systems
from dpx.nlist import stat
from dpx.ops import reference
from dpx.train.stat_file import NeighborStatCache

TYPE_MAP = ["A", "B"]
RCUT = 2.5


def write_system(path, natoms, set_sizes, seed, nopbc=False):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    (path / "type.raw").write_text(" ".join(str(t) for t in rng.integers(0, 2, natoms)) + "\n")
    (path / "type_map.raw").write_text("\n".join(TYPE_MAP) + "\n")
    if nopbc:
        (path / "nopbc").touch()
    for k, nf in enumerate(set_sizes):
        d = path / f"set.{k:03d}"
        d.mkdir()
        np.save(d / "coord.npy", rng.uniform(0, 4.5, (nf, natoms * 3)))
        if not nopbc:
            box = np.diag(rng.uniform(4.0, 5.0, 3)) + rng.uniform(0, 0.4, (3, 3))
            np.save(d / "box.npy", np.repeat(box.reshape(1, 9), nf, 0))
        np.save(d / "energy.npy", rng.normal(size=nf))


@pytest.fixture
def root(tmp_path):
    write_system(tmp_path / "s6", 6, (7, 5), seed=1)           # two sets
    write_system(tmp_path / "s9", 9, (4,), seed=2)
    write_system(tmp_path / "s6_open", 6, (3,), seed=3, nopbc=True)
    write_system(tmp_path / "s6_more", 6, (30,), seed=4)       # split across chunks
    return tmp_path


def systems_of(root):
    return load_systems(str(root), type_map=TYPE_MAP, in_memory=False)


def twin(systems, one_type=False, at_most=None):
    """Frame by frame through reference.neighbor_stat (brute force over the twin's extended
    system), reduced over every frame."""
    width = 1 if one_type else 2
    counts, dmin = np.zeros(width, dtype=np.int64), math.inf
    for sys in systems:
        atype = torch.from_numpy(sys.atype)[None]
        atype = torch.zeros_like(atype) if one_type else atype
        for f in stat.sample_frames(sys.nframes, at_most):
            coord = torch.from_numpy(np.asarray(sys.coord[f]))[None]
            box = None if sys.box is None else torch.from_numpy(np.asarray(sys.box[f]))[None]
            c, d = reference.neighbor_stat(coord, atype, box, RCUT, width)
            counts, dmin = np.maximum(counts, c[0].numpy()), min(dmin, float(d[0]))
    return counts, dmin


class DictCache:
    def __init__(self):
        self.entries = {}

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, counts, dmin):
        self.entries[key] = (np.asarray(counts), dmin)


@pytest.mark.parametrize("one_type", [False, True])
def test_scan_equals_frame_by_frame_twin(root, monkeypatch, one_type):
    monkeypatch.setattr(stat, "CHUNK_BYTES", 6 * 24 * 5)  # 5 frames of 6 atoms a chunk
    calls = []
    real = ops.neighbor_stat
    monkeypatch.setattr(ops, "neighbor_stat", lambda c, *a: calls.append(len(c)) or real(c, *a))
    systems = systems_of(root)
    counts, dmin = stat.neighbor_counts(systems, RCUT, 2, one_type)
    want = twin(systems, one_type)
    assert counts.tolist() == want[0].tolist()
    assert dmin == pytest.approx(want[1], rel=1e-12)
    assert sum(calls) == sum(s.nframes for s in systems) and max(calls) <= 5 and len(calls) > 4


def test_estimate_reads_only_sampled_frames_and_is_not_cached(root):
    systems, cache = systems_of(root), DictCache()
    counts, dmin = stat.neighbor_counts(systems, RCUT, 2, cache=cache, at_most=2)
    want = twin(systems, at_most=2)
    assert counts.tolist() == want[0].tolist() and dmin == pytest.approx(want[1], rel=1e-12)
    assert cache.entries == {}
    assert stat.sample_frames(30, 2).tolist() == [0, 29]
    assert stat.sample_frames(3, 5).tolist() == [0, 1, 2]


def test_cache_is_read_back_and_a_changed_system_scanned_again(root, monkeypatch):
    cache = DictCache()
    first = stat.neighbor_counts(systems_of(root), RCUT, 2, cache=cache)
    assert len(cache.entries) == 4
    scanned = []
    real = ops.neighbor_stat
    monkeypatch.setattr(ops, "neighbor_stat", lambda c, *a: scanned.append(len(c)) or real(c, *a))
    again = stat.neighbor_counts(systems_of(root), RCUT, 2, cache=cache)
    assert scanned == [] and again[0].tolist() == first[0].tolist() and again[1] == first[1]
    # one system's coordinates rewritten (atoms pulled together): only it is read again
    path = root / "s9" / "set.000" / "coord.npy"
    np.save(path, np.load(path) * 0.5)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    systems = systems_of(root)
    changed = stat.neighbor_counts(systems, RCUT, 2, cache=cache)
    assert scanned == [4]
    want = twin(systems)
    assert changed[0].tolist() == want[0].tolist()
    assert changed[1] == pytest.approx(want[1], rel=1e-12)
    # another rcut is another key
    stat.neighbor_counts(systems, RCUT + 0.5, 2, cache=cache)
    assert len(scanned) > 1 and len(cache.entries) == 4 + 1 + 4


@pytest.mark.parametrize("name", ["stat", "stat.h5"])
def test_stat_file_record_round_trip(tmp_path, name, caplog):
    cache = NeighborStatCache.open(name, TYPE_MAP, tmp_path)
    cache.put("k1", np.array([3, 4]), 0.75)
    cache.put("k2", np.array([0, 0]), math.inf)  # a lone atom: no pair
    cache.save()
    back = NeighborStatCache.open(name, TYPE_MAP, tmp_path)
    assert back.get("k1")[0].tolist() == [3, 4] and back.get("k1")[1] == 0.75
    assert back.get("k2")[1] == math.inf and back.get("k3") is None
    assert NeighborStatCache.open(None, TYPE_MAP, tmp_path) is None
    if name == "stat":  # a record cut short: warned about, scanned again
        rec = tmp_path / "stat" / "A B" / "dpx_neighbor_stat.npy"
        np.save(rec, np.frombuffer(b'{"k1": [3', dtype=np.uint8))
        with caplog.at_level(logging.WARNING):
            assert NeighborStatCache.open(name, TYPE_MAP, tmp_path).get("k1") is None
        assert "unreadable" in caplog.text
