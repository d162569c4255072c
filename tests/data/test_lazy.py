"""Frames read when drawn (issue 28): the same batches as systems read whole, only the frames
drawn are read, value checks name the file and frame when a frame is read, and under data
parallelism each rank reads only its share of the global batch."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dpx.data import DataSampler, load_systems
from dpx.data import system as system_module
from dpx.data.storage.npy import NpyFrames
from tests.data.conftest import write_npy_system
from tests.data.test_mixed import write_mixed

LABELS = ("energy", "force", "virial", "atom_pref", "fparam", "aparam")


def _write_data(root):
    """Unsorted types remapped through type_map.raw, two sets of which one lacks virial,
    every kind of label, a non-periodic system and a mixed-type one."""
    write_npy_system(root / "a", [1, 0, 1, 0, 1], (4, 3), names=["H", "O"], labels=LABELS)
    write_npy_system(root / "b", [0, 1, 1], (5,), names=["O", "H"], labels=LABELS, seed=1)
    np.save(root / "b" / "set.000" / "virial.npy", np.ones((5, 9)))
    write_npy_system(root / "c2", [1, 0], (6,), names=["O", "H"], nopbc=True, seed=2)
    write_mixed(root / "m", [[0, 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]], seed=3)
    return [str(root / n) for n in ("a", "b", "c2", "m")]


def _batches(systems, n=25, seed=7):
    sampler = DataSampler(systems, 2, seed=seed, ntypes=2)
    return [sampler.next_batch() for _ in range(n)]


def _assert_same(batch, ref):
    assert batch.keys() == ref.keys()
    for key, want in ref.items():
        got = batch[key]
        if isinstance(want, torch.Tensor):
            assert got.dtype == want.dtype and torch.equal(got, want), key
        else:
            assert got == want, key


def test_lazy_batches_equal_eager_frame_for_frame(tmp_path):
    paths = _write_data(tmp_path)
    eager = load_systems(paths, type_map=["O", "H"], in_memory=True)
    lazy = load_systems(paths, type_map=["O", "H"], in_memory=False)
    assert all(s.in_memory for s in eager) and not any(s.in_memory for s in lazy)
    assert [s.name for s in lazy] == [s.name for s in eager]
    for got, want in zip(_batches(lazy), _batches(eager)):
        _assert_same(got, want)
    for s, ref in zip(lazy, eager):  # whole arrays too, as `dpx test` reads them
        np.testing.assert_array_equal(s.labels["energy"][:3, 0], ref.labels["energy"][:3, 0])
        np.testing.assert_array_equal(np.asarray(s.coord), ref.coord)


def test_lazy_hdf5_equals_npy(tmp_path):
    h5py = pytest.importorskip("h5py")
    arrays = write_npy_system(tmp_path / "s", [1, 0, 1], (3, 2), names=["H", "O"],
                              labels=LABELS)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        g = f.create_group("s")
        g.create_dataset("type.raw", data=np.array([1, 0, 1]))
        g.create_dataset("type_map.raw", data=np.array(["H", "O"], dtype="S"))
        for iset, rows in enumerate((slice(0, 3), slice(3, 5))):
            for key, arr in arrays.items():
                g.create_dataset(f"set.{iset:03d}/{key}.npy", data=arr[rows])
    eager = load_systems(str(tmp_path / "s"), type_map=["O", "H"], in_memory=True)
    lazy = load_systems(f"{tmp_path}/d.h5#/s", type_map=["O", "H"], in_memory=False)
    for got, want in zip(_batches(lazy, 12), _batches(eager, 12)):
        _assert_same(got, want)


@pytest.fixture
def reads(monkeypatch):
    """Every frame index read from a .npy file, per file name."""
    seen: dict[str, list[int]] = {}
    rows = NpyFrames.rows

    def spy(self, idx, width):
        seen.setdefault(self.path.name, []).extend(idx.tolist())
        return rows(self, idx, width)
    monkeypatch.setattr(NpyFrames, "rows", spy)
    return seen


def test_start_up_reads_no_frame_and_a_batch_only_its_frames(tmp_path, reads):
    write_npy_system(tmp_path / "s", [0, 1, 1], (40,))
    (s,) = load_systems(str(tmp_path / "s"), in_memory=False)
    assert reads == {}
    batch = DataSampler([s], 4, seed=1).next_batch()
    assert sorted(reads["coord.npy"]) == sorted(batch["fid"])
    assert sorted(reads["force.npy"]) == sorted(batch["fid"])


def test_a_bad_frame_is_named_when_drawn(tmp_path):
    write_npy_system(tmp_path / "s", [0, 1, 1], (10,))
    force = np.load(tmp_path / "s/set.000/force.npy")
    force[6, 2] = np.nan
    np.save(tmp_path / "s/set.000/force.npy", force)
    (s,) = load_systems(str(tmp_path / "s"), in_memory=False)  # start-up reads no value
    s.labels["force"][[0, 5, 7]]
    with pytest.raises(ValueError, match=r"set\.000/force\.npy: NaN or inf in frame 6"):
        s.labels["force"][[1, 6]]
    with pytest.raises(ValueError, match=r"set\.000/force\.npy: NaN or inf in frame 6"):
        load_systems(str(tmp_path / "s"), in_memory=True)


def test_a_file_cut_short_is_named(tmp_path):
    write_npy_system(tmp_path / "s", [0, 1, 1], (10,))
    coord = tmp_path / "s/set.000/coord.npy"
    (s,) = load_systems(str(tmp_path / "s"), in_memory=False)
    whole = coord.read_bytes()
    coord.write_bytes(whole[:-100])  # the last frame (72 bytes) and part of the one before
    s.coord[:8]
    with pytest.raises(ValueError, match=r"set\.000/coord\.npy: frame 8 is cut short"):
        s.coord[[8, 9]]
    with pytest.raises(ValueError, match=r"coord\.npy: cannot read .*cut short"):
        load_systems(str(tmp_path / "s"))


def test_size_limit_chooses_memory_and_logs_once(tmp_path, monkeypatch, caplog):
    paths = _write_data(tmp_path)
    caplog.set_level(logging.INFO, logger="dpx.data")
    small = load_systems(paths, type_map=["O", "H"])
    assert all(s.in_memory for s in small)
    monkeypatch.setattr(system_module, "IN_MEMORY_BYTES", 1000)
    big = load_systems(paths, type_map=["O", "H"])
    assert not any(s.in_memory for s in big)
    notes = [r.getMessage() for r in caplog.records if "MB of frames" in r.getMessage()]
    assert len(notes) == 2 and "held in memory" in notes[0]
    assert "read from the files when drawn (limit 0 MB)" in notes[1]


@pytest.mark.parametrize("batch_size, world", [(4, 2), (3, 2), (5, 3), (1, 2)])
def test_each_rank_reads_only_its_share(tmp_path, reads, batch_size, world):
    """The shares of ranks 0..world-1 are the rows of next_batch's global batch, each rank
    reading only its own (row 0 for a rank a short batch has no row for)."""
    write_npy_system(tmp_path / "s", [0, 1, 1], (7,))
    write_npy_system(tmp_path / "t", [1, 0], (5,), seed=1)
    systems = load_systems([str(tmp_path / "s"), str(tmp_path / "t")], in_memory=False)
    one = DataSampler(systems, batch_size, seed=3)
    ranks = [DataSampler(systems, batch_size, seed=3) for _ in range(world)]
    for _ in range(12):
        whole = one.next_batch()
        for rank, sampler in enumerate(ranks):
            reads.clear()
            share = sampler.next_share(rank, world)
            rows = list(range(rank, len(whole["fid"]), world)) or [0]
            assert share["fid"] == [whole["fid"][r] for r in rows]
            assert sorted(reads["coord.npy"]) == sorted(set(share["fid"]))
            for key, want in whole.items():
                if isinstance(want, torch.Tensor) and want.dim():
                    assert torch.equal(share[key], want[rows]), key
                elif key.startswith("find_"):
                    assert share[key] == want, key
