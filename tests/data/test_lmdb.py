"""DeePMD-kit 3.2's LMDB data set (storage/lmdb.py, data/convert.py, `dpx convert-data`).

Oracles: the npy files themselves (written here, read back through an LMDB), DeePMD-kit's own
LmdbDataReader and dpdata's deepmd/lmdb writer in the oracle venv (a subprocess), dpx
training from the npy data, and `dp --pt train` taking an LMDB dpx wrote.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dpx.cli.main import main
from dpx.data import load_systems
from dpx.data import system as system_reader
from dpx.data.convert import to_lmdb, to_npy
from dpx.data.storage import lmdb as lmdb_store
from tests.data.conftest import lmdb_frame, lmdb_meta, numbered, write_lmdb, write_npy_system

pytest.importorskip("lmdb")
pytest.importorskip("msgpack")

ORACLE = Path(os.environ.get("DPX_DEEPMD_PYTHON",
                             Path(__file__).resolve().parents[2] / ".venv-lammps/bin/python"))
TYPE_MAP = ["O", "H", "C"]
KEYS = ("coord", "box", "energy", "force", "virial")

# run by the oracle's python: DeePMD-kit reads dpx's LMDB, dpdata writes one from npy
ORACLE_SCRIPT = """
import json, sys
import numpy as np
import dpdata
from deepmd.dpmodel.utils.lmdb_data import LmdbDataReader
from deepmd.utils.data import DataRequirementItem
from dpdata.formats.deepmd.lmdb import dump_systems
job = json.loads(sys.argv[1])
reader = LmdbDataReader(job["lmdb"], type_map=job["type_map"], batch_size=1)
# as the energy loss asks for its labels in training
reader.add_data_requirement([
    DataRequirementItem("energy", 1, atomic=False, must=False, high_prec=True),
    DataRequirementItem("force", 3, atomic=True, must=False, high_prec=False),
    DataRequirementItem("virial", 9, atomic=False, must=False, high_prec=False)])
out = {"n": np.array(len(reader))}
for i in range(len(reader)):
    frame = reader[i]
    for k in ("coord", "box", "energy", "force", "virial", "atype"):
        if k in frame:
            out[f"{k}_{i}"] = np.asarray(frame[k], dtype=float)
    for k in ("energy", "force", "virial"):
        out[f"find_{k}_{i}"] = np.asarray(frame[f"find_{k}"])
np.savez(job["npz"], **out)
dump_systems([dpdata.LabeledSystem(p, fmt="deepmd/npy") for p in job["dpdata_from"]],
             job["dpdata_to"], type_map=job["type_map"])
"""


def _sources(root: Path) -> dict:
    """Three systems: two sets (the second without virial.npy), non-periodic and float32, and
    one whose type_map.raw orders the elements differently, with atom_ener, atom_pref,
    fparam, aparam."""
    made = {}
    made["a"] = write_npy_system(root / "a", [0, 1, 1, 0, 1], (3, 2), names=["O", "H"], seed=1)
    for f in ("virial.npy",):
        os.remove(root / "a" / "set.001" / f)
    made["a"]["virial"] = made["a"]["virial"][:3]
    made["b"] = write_npy_system(root / "b", [1, 0, 0], (2,), names=["H", "O"], nopbc=True,
                                 seed=2, dtype=np.float32)
    made["c"] = write_npy_system(root / "c", [2, 0, 1, 1], (4,), names=["O", "H", "C"],
                                 labels=("energy", "force", "virial", "atom_ener", "atom_pref",
                                         "fparam", "aparam"), seed=3)
    return made


def _equal_systems(got, want) -> None:
    assert [s.nframes for s in got] == [s.nframes for s in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.atype, w.atype)
        assert (g.box is None) == (w.box is None)
        for key in ("coord", "box"):
            if getattr(w, key) is not None:
                np.testing.assert_array_equal(np.asarray(getattr(g, key)),
                                              np.asarray(getattr(w, key)), err_msg=key)
        assert sorted(g.labels) == sorted(w.labels), g.name
        for key in w.labels:
            np.testing.assert_array_equal(np.asarray(g.labels[key]),
                                          np.asarray(w.labels[key]), err_msg=key)
            np.testing.assert_array_equal(g.find[key], w.find[key], err_msg=key)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmdb")
    made = _sources(root / "npy")
    to_lmdb([str(root / "npy")], str(root / "data.lmdb"), type_map=TYPE_MAP)
    return root, made


def test_lmdb_round_trip_equals_npy(converted, monkeypatch):
    """npy -> LMDB -> npy: every label, find flag, box and atom order as the npy source,
    from memory and read when drawn."""
    root, _ = converted
    want = load_systems([str(root / "npy")], type_map=TYPE_MAP)
    _equal_systems(load_systems(str(root / "data.lmdb"), type_map=TYPE_MAP), want)
    lazy = load_systems(str(root / "data.lmdb"), type_map=TYPE_MAP, in_memory=False)
    assert not lazy[0].in_memory
    _equal_systems(lazy, want)
    to_npy([str(root / "data.lmdb")], str(root / "back"))
    assert sorted(p.name for p in (root / "back").iterdir()) == ["sys.0000", "sys.0001",
                                                                 "sys.0002"]
    assert (root / "back" / "sys.0001" / "nopbc").exists()
    assert len(list((root / "back" / "sys.0000").glob("set.*"))) == 2  # with, without virial
    _equal_systems(load_systems([str(root / "back")], type_map=TYPE_MAP), want)
    assert np.load(root / "back" / "sys.0001" / "set.000" / "force.npy").dtype == np.float32


def test_mixed_compositions_one_system_each(tmp_path):
    """A deepmd/npy/mixed folder (frames of two compositions) keeps its split through an LMDB:
    one source system, two Systems."""
    write_npy_system(tmp_path / "m", [0, 0, 0], (4,), names=["O", "H"])
    real = np.array([[0, 1, 1], [1, 0, 1], [0, 1, 1], [1, 0, 1]])
    np.save(tmp_path / "m" / "set.000" / "real_atom_types.npy", real)
    want = load_systems(str(tmp_path / "m"), type_map=["O", "H"])
    to_lmdb(str(tmp_path / "m"), str(tmp_path / "m.lmdb"))
    got = lmdb_store.read_groups(str(tmp_path / "m.lmdb"), ["O", "H"])
    assert [sid for sid, _ in got] == [0, 0]
    _equal_systems(system_reader.settle([s for _, s in got], True), want)


def _oracle_job(converted) -> dict:
    if not ORACLE.exists():
        pytest.skip(f"DeePMD-kit oracle venv not found at {ORACLE} (tests/oracle/"
                    "install_lammps.sh makes it; CI does)")
    root, _ = converted
    job = {"lmdb": str(root / "data.lmdb"), "type_map": TYPE_MAP, "npz": str(root / "dp.npz"),
           "dpdata_from": [str(root / "npy" / n) for n in ("b", "c")],
           "dpdata_to": str(root / "dpdata.lmdb")}
    if not (root / "dp.npz").exists():
        res = subprocess.run([str(ORACLE), "-c", ORACLE_SCRIPT, json.dumps(job)], text=True,
                             capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert res.returncode == 0, res.stderr[-3000:]
    return job


def test_deepmd_reads_dpx_lmdb(converted):
    """DeePMD-kit's LmdbDataReader gives each frame of dpx's LMDB as the npy files hold it."""
    root, made = converted
    job = _oracle_job(converted)
    dp = np.load(job["npz"])
    assert int(dp["n"]) == 5 + 2 + 4
    i = 0
    for name in ("a", "b", "c"):
        names = (root / "npy" / name / "type_map.raw").read_text().split()
        atype = np.array([TYPE_MAP.index(names[t]) for t in
                          map(int, (root / "npy" / name / "type.raw").read_text().split())])
        src = made[name]
        for j in range(len(src["coord"])):
            np.testing.assert_array_equal(dp[f"atype_{i}"], atype)
            for key in KEYS:
                if key == "box" and name == "b":
                    assert f"box_{i}" not in dp  # non-periodic: no cells
                elif key == "virial" and j >= len(src["virial"]):
                    assert dp[f"find_virial_{i}"] == 0
                else:
                    np.testing.assert_array_equal(dp[f"{key}_{i}"].reshape(-1),
                                                  np.reshape(src[key][j], -1), err_msg=key)
            i += 1


def _stored_types(path: Path) -> list[dict]:
    """Each frame's {key: dtype name} as the database stores it (through dpx's reader: a
    process opens a database once)."""
    db = lmdb_store.Database(str(path))
    return [{k: v["type"] for k, v in f.items() if isinstance(v, dict)}
            for f in db.each(range(db.nframes))]


def test_lmdb_keeps_source_dtype(converted):
    """A float32 system is written as float32, as dpdata's deepmd/lmdb writer writes it (and
    DeePMD-kit reads back the source's values: test_deepmd_reads_dpx_lmdb); float64 stays."""
    root, _ = converted
    job = _oracle_job(converted)
    dpx_types, dpdata_types = _stored_types(root / "data.lmdb"), _stored_types(job["dpdata_to"])
    assert dpx_types[5] == dpx_types[6] == dpdata_types[0] == dpdata_types[1]
    assert dpx_types[5]["coords"] == dpx_types[5]["forces"] == "float32"
    assert {dpx_types[0][k] for k in ("coords", "cells", "energies", "forces")} == {"float64"}


def test_dpx_reads_dpdata_lmdb(converted):
    """An LMDB that dpdata's deepmd/lmdb writer (DeePMD-kit's tooling) made equals its npy."""
    root, _ = converted
    job = _oracle_job(converted)
    want = load_systems([str(root / "npy" / n) for n in ("b", "c")], type_map=TYPE_MAP)
    got = load_systems(job["dpdata_to"], type_map=TYPE_MAP)
    # dpdata's deepmd/npy reader drops atom_ener, atom_pref, fparam, aparam (not registered)
    for s in want:
        s.labels = {k: v for k, v in s.labels.items() if k in ("energy", "force", "virial")}
    for s in got:
        s.labels = {k: v for k, v in s.labels.items() if k in ("energy", "force", "virial")}
    _equal_systems(got, want)


# ---------------------------------------------------------------- training


def _train_input(systems, steps=3) -> dict:
    return {"model": {"type_map": ["O", "H"],
                      "descriptor": {"type": "se_e2_a", "sel": [20, 40], "rcut_smth": 0.5,
                                     "rcut": 4.0, "neuron": [4, 8], "axis_neuron": 4,
                                     "seed": 1},
                      "fitting_net": {"neuron": [8, 8], "seed": 1}},
            "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.001,
                              "stop_lr": 3.51e-8},
            "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1,
                     "start_pref_f": 1000, "limit_pref_f": 1, "start_pref_v": 0,
                     "limit_pref_v": 0},
            "training": {"training_data": {"systems": systems, "batch_size": 1},
                         "numb_steps": steps, "seed": 10, "disp_freq": 1, "save_freq": steps}}


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    from dpx.data.synthetic import make_dataset
    root = tmp_path_factory.mktemp("water")
    make_dataset(root, nsystems=2, nframes=8, nvalid=0, seed=0, calculator="morse")
    assert main(["convert-data", str(root / "train"), "-o", str(root / "train.lmdb")]) == 0
    return root


def test_training_from_lmdb_equals_npy(water, tmp_path, monkeypatch):
    """dpx train from the LMDB gives the lcurve.out rows of training from its npy folders."""
    rows = []
    for name, systems in (("npy", str(water / "train")), ("lmdb", str(water / "train.lmdb"))):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        (folder / "in.json").write_text(json.dumps(_train_input(systems)))
        assert main(["train", "in.json"]) == 0
        rows.append([r for r in (folder / "lcurve.out").read_text().splitlines()
                     if not r.startswith("#")])
    assert len(rows[0]) == 3 and rows[0] == rows[1]


@pytest.mark.slow
def test_dp_train_reads_dpx_lmdb(water, tmp_path):
    """`dp --pt train` runs on an LMDB dpx wrote (3 steps, ~15 s on 2 cores)."""
    if not ORACLE.exists():
        pytest.skip(f"DeePMD-kit oracle venv not found at {ORACLE}")
    (tmp_path / "in.json").write_text(json.dumps(_train_input(str(water / "train.lmdb"))))
    res = subprocess.run([str(ORACLE.parent / "dp"), "--pt", "train", "in.json"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ,
                                                              "OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "16 frames" in res.stderr + res.stdout or (tmp_path / "lcurve.out").exists()
    assert len([r for r in (tmp_path / "lcurve.out").read_text().splitlines()
                if not r.startswith("#")]) == 3


# ---------------------------------------------------------------- the index; bad databases
# (damaged databases: tests/faults/test_matrix.py)


def test_index_checks_each_layout_once(tmp_path, monkeypatch):
    """The start-up index decodes and checks the arrays of one frame per layout (keys, dtypes,
    shapes, atom types), not of every frame: a frame costs what msgpack takes to read it."""
    unlabeled = dict(lmdb_frame(3), find_forces=0)  # DeePMD-kit's flag: forces not a label
    path = write_lmdb(tmp_path / "many.lmdb", lmdb_meta(41),
                      numbered(*[lmdb_frame(3)] * 20, *[lmdb_frame(4)] * 20, unlabeled))
    decoded = []
    real = lmdb_store.decode
    monkeypatch.setattr(lmdb_store, "decode", lambda v, where: decoded.append(where) or
                        real(v, where))
    index = lmdb_store.scan(lmdb_store.Database(str(path)))
    assert [g.atype.size for g in index.groups] == [3, 4]
    np.testing.assert_array_equal(index.group, [0] * 20 + [1] * 20 + [0])
    np.testing.assert_array_equal(index.has["force"], [True] * 40 + [False])
    assert not index.has["virial"].any()
    # atom_types, coords, cells, energies and forces of frames 0 and 20; frame 40 less forces
    assert len(decoded) == 5 + 5 + 4, decoded


def test_index_checks_each_composition_once(tmp_path, monkeypatch):
    """Frames of one layout whose atom types differ (15 orders of O2H4): the sizes are checked
    on the first, each composition's atom types on its first frame; they are 15 Systems."""
    frames = []
    for pair in itertools.combinations(range(6), 2):
        frame = lmdb_frame(6)
        frame["atom_types"] = lmdb_store.encode(np.isin(np.arange(6), pair, invert=True)
                                                .astype(np.int32))
        frames.append(frame)
    path = write_lmdb(tmp_path / "orders.lmdb", lmdb_meta(15), numbered(*frames))
    decoded = []
    real = lmdb_store.decode
    monkeypatch.setattr(lmdb_store, "decode", lambda v, where: decoded.append(where) or
                        real(v, where))
    index = lmdb_store.scan(lmdb_store.Database(str(path)))
    assert len(index.groups) == 15 and (index.group == np.arange(15)).all()
    assert len(decoded) == 5 + 14, decoded  # frame 0's five arrays, the others' atom types


def test_lmdb_package_absent(tmp_path, capsys, monkeypatch):
    """Without the lmdb package: one line naming the extra to install, rc 2."""
    write_lmdb(tmp_path / "ok.lmdb", lmdb_meta(1), numbered(lmdb_frame()))
    monkeypatch.setitem(__import__("sys").modules, "lmdb", None)
    (tmp_path / "in.json").write_text(json.dumps(_train_input(str(tmp_path / "ok.lmdb"))))
    for argv in (["convert-data", str(tmp_path / "ok.lmdb"), "-o", str(tmp_path / "o")],
                 ["train", str(tmp_path / "in.json")]):
        assert main(["--log-level", "ERROR", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install 'dpx[lmdb]'" in err, err


def test_convert_refuses_existing_output(converted, capsys):
    root, _ = converted
    assert main(["convert-data", str(root / "npy"), "-o", str(root / "data.lmdb")]) == 2
    assert "exists; give --overwrite" in capsys.readouterr().err
