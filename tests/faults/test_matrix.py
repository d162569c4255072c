"""The bad-input matrix (issue 29, "make the next pass cheap"): every key of the typed config
and every file of a deepmd/npy system, broken in each way a user or a disk breaks them, must
end `dpx train` with rc 2 and one line naming the key path or the file, never a traceback.

The keys are found by walking the config dataclasses (dpx.config), so a new key joins the
matrix without editing this file; a new data file joins by one line in DATA_FILES, a new
fault of a DeePMD-kit LMDB data set by one line in LMDB_FAULTS (read by `dpx train` and by
`dpx convert-data`, which must also leave no output behind). A key
that legitimately takes any value of its type (DeePMD-kit's argcheck accepts it too) is
listed once in ANY_NUMBER or ANY_TEXT. Everything runs in-process (main([...])), so the
whole matrix takes well under two minutes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest

from dpx.cli.main import main
from dpx.config import DescriptorConfig, FittingConfig, LossConfig
from dpx.config.input import (
    DataConfig,
    LearningRateConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
)
from dpx.config.schema import ConfigError, _value
from dpx.data.storage.lmdb import encode
from tests.data.conftest import lmdb_frame, lmdb_meta, numbered, write_lmdb
from tests.train.conftest import EXAMPLE, small_input

# keys whose every finite number DeePMD-kit accepts (no range to leave): -1 is legal there
ANY_NUMBER = {
    "training/seed", "model/descriptor/seed", "model/fitting_net/seed",
    "model/fitting_net/rcond", "model/fitting_net/atom_ener",
    "model/bridging_r_inner", "model/bridging_r_outer",
    "model/preset_out_bias", "model/descriptor/temperature", "model/fitting_net/default_fparam",
    "training/gradient_max_norm",  # > 0 clips, anything else does not (DeePMD-kit's rule)
    # a negative entry shares what the others leave (DeePMD-kit's rule)
    "training/training_data/sys_probs", "training/validation_data/sys_probs",
}
# string keys that take free text (paths, names): "no-such-value" is legal there
ANY_TEXT = {
    "training/disp_file", "training/save_ckpt", "training/stat_file",
    "training/profiling_file", "training/tensorboard_log_dir",
    "training/training_data/format", "training/validation_data/format",
    "model/finetune_head",
}

# a key whose bad value would be refused for another reason (a key it excludes): what to
# change beside it, so that its own check is the one that answers (None removes the key)
BESIDE = {"learning_rate/stop_lr_ratio": {"learning_rate/stop_lr": None},
          "training/numb_epoch": {"training/numb_steps": None}}

SECTIONS = {"model": ModelConfig, "learning_rate": LearningRateConfig, "loss": LossConfig,
            "optimizer": OptimizerConfig, "training": TrainingConfig}
# sections of the input that the walk enters (multi-task data_dict has its own tests)
SUBSECTIONS = {"training/training_data": DataConfig, "training/validation_data": DataConfig}


def _kinds(base) -> dict[str, type]:
    return {cls.TYPES[0]: cls for cls in base.kinds()}


def _leaves(cls, path: str):
    """(key path, type hint) of every plain key of dataclass cls (sections recursed)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        where, hint = f"{path}/{f.name}", hints[f.name]
        if where in SUBSECTIONS:
            yield from _leaves(SUBSECTIONS[where], where)
        elif typing.get_origin(hint) is typing.Annotated or dataclasses.is_dataclass(hint):
            continue  # a keyed section (descriptor, fitting_net): walked per kind below
        elif f.name not in ("data_dict", "model_prob", "num_epoch_dict"):
            yield where, hint


def keys() -> list[tuple[str, str, object]]:
    """(descriptor kind, key path, hint) for every key; each descriptor kind once."""
    out = []
    for name, cls in SECTIONS.items():
        if name == "loss":
            for kind in _kinds(LossConfig).values():
                out += [("se_e2_a", p, h) for p, h in _leaves(kind, "loss")]
        elif name != "model":
            out += [("se_e2_a", p, h) for p, h in _leaves(cls, name)]
    out += [("se_e2_a", p, h) for p, h in _leaves(ModelConfig, "model")]
    for kind in _kinds(FittingConfig).values():
        out += [("se_e2_a", p, h) for p, h in _leaves(kind, "model/fitting_net")]
    for desc, cls in _kinds(DescriptorConfig).items():
        out += [(desc, p, h) for p, h in _leaves(cls, "model/descriptor")]
    return out


def _refuses(hint, v) -> bool:
    try:
        _value(hint, v, "x")
    except ConfigError:
        return True
    return False


def _numbers(hint) -> list | None:
    """How a number is written for this key: [v] for a key that takes a list of numbers,
    v for one that takes a number; None for a key that takes neither."""
    for wrap in (lambda v: v, lambda v: [v]):
        if not _refuses(hint, wrap(1)) or not _refuses(hint, wrap(1.5)):
            return wrap
    return None


def cases():
    for desc, path, hint in keys():
        if hint is typing.Any:
            continue
        wrong = next((v for v in ("x", 1.5, True, {"x": 1}) if _refuses(hint, v)), None)
        if wrong is not None:
            yield pytest.param(desc, path, wrong, id=f"{desc}:{path}=wrong-type")
        wrap = _numbers(hint)
        if wrap is not None:
            for v in (math.nan, math.inf):
                yield pytest.param(desc, path, wrap(v), id=f"{desc}:{path}={wrap(v)}")
            if path not in ANY_NUMBER:
                yield pytest.param(desc, path, wrap(-1), id=f"{desc}:{path}={wrap(-1)}")
        elif not _refuses(hint, "x") and path not in ANY_TEXT:
            yield pytest.param(desc, path, "no-such-value", id=f"{desc}:{path}=no-such-value")


def _descriptor(kind: str) -> dict:
    """A valid descriptor section of `kind`, from the example inputs."""
    for name in ("input.json", "input_se_r.json", "input_dpa1.json"):
        d = json.loads((EXAMPLE / name).read_text())["model"]["descriptor"]
        if not _refuses(_kinds(DescriptorConfig)[kind], dict(d, type=kind)):
            return dict(d, type=kind)
    raise AssertionError(f"no example input has a descriptor that parses as {kind}")


def _set(cfg: dict, path: str, value) -> None:
    *parents, last = path.split("/")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    if value is None:
        cfg.pop(last, None)
    else:
        cfg[last] = value


def assert_one_line(err: str, name: str, command: str = "train") -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert errors[0].startswith(f"dpx {command}: error: ") and name in errors[0], err


def assert_names_file(err: str, target: Path, data: Path) -> None:
    """The line names the file: its path, or its name and the folder it is missing from."""
    line = err.rstrip().splitlines()[-1]
    folders = [str(p) for p in target.parents if p.is_relative_to(data)]
    assert str(target) in line or (target.name in line and any(f in line for f in folders)), err


@pytest.fixture(scope="module")
def folder(dataset, tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.mark.parametrize("desc, path, value", list(cases()))
def test_bad_key(dataset, folder, monkeypatch, capsys, desc, path, value):
    monkeypatch.chdir(folder)
    cfg = small_input(dataset, steps=0)
    cfg["model"]["descriptor"] = _descriptor(desc)
    for key, v in [*BESIDE.get(path, {}).items(), (path, value)]:
        _set(cfg, key, v)
    inp = folder / "in.json"
    inp.write_text(json.dumps(cfg))  # NaN/Infinity as JSON's Python reads them
    assert main(["train", str(inp), "--overwrite"]) == 2
    assert_one_line(capsys.readouterr().err, path)


@pytest.mark.parametrize("steps, warmup", [(6, 6), (6, 100), (0, 1)])
def test_warmup_must_leave_steps_to_decay(dataset, folder, monkeypatch, capsys, steps, warmup):
    """Values in range one by one, out of range together (DeePMD-kit's rule): the exp
    schedule divided by the zero steps left after the warmup."""
    monkeypatch.chdir(folder)
    cfg = small_input(dataset, steps=steps)
    cfg["learning_rate"]["warmup_steps"] = warmup
    inp = folder / "in.json"
    inp.write_text(json.dumps(cfg))
    assert main(["train", str(inp), "--overwrite"]) == 2
    assert_one_line(capsys.readouterr().err, "learning_rate/warmup_steps: gives")


# ---------------------------------------------------------------- data files
# one line per file of a deepmd/npy system; an optional file the bundled data lacks is first
# written valid (its values per frame: per atom or not, and how many)
DATA_FILES = ["type.raw", "type_map.raw", "set.000/coord.npy", "set.000/box.npy",
              "set.000/energy.npy", "set.000/force.npy", "set.000/virial.npy",
              "set.000/atom_ener.npy", "set.000/atom_pref.npy", "set.000/fparam.npy",
              "set.000/aparam.npy"]
OPTIONAL = {"atom_ener.npy": (True, 1), "atom_pref.npy": (True, 1), "fparam.npy": (False, 2),
            "aparam.npy": (True, 2)}
# faults DeePMD-kit's reader accepts as well (a missing optional file): they must train
# (virial.npy is weighted by the input's loss, so a system without it is refused)
ACCEPTED = {("type_map.raw", "missing")} | {(f"set.000/{name}", "missing") for name in OPTIONAL}
FAULTS = ("missing", "empty", "truncated", "wrong-shape", "non-finite")


def _break(path: Path, fault: str) -> None:
    if fault == "missing":
        path.unlink()
    elif fault == "empty":
        path.write_bytes(b"")
    elif fault == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    elif path.suffix == ".raw":
        words = path.read_text().split()
        path.write_text(" ".join(words[:-1] if fault == "wrong-shape" else words[:-1] + ["nan"]))
    else:
        a = np.load(path)
        if fault == "wrong-shape" and path.name == "fparam.npy":
            np.save(path, a[:-1])  # its width is the file's: one frame fewer than coord.npy
        elif fault == "wrong-shape":
            np.save(path, a.reshape(len(a), -1)[:, :-1])
        else:
            a.reshape(-1)[a.size // 2] = np.nan
            np.save(path, a)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", DATA_FILES)
def test_bad_data_file(dataset, tmp_path, monkeypatch, capsys, name, fault):
    data = tmp_path / "data"
    shutil.copytree(dataset / "train" / "water_024", data / "train" / "water_024")
    shutil.copytree(dataset / "valid", data / "valid")
    target = data / "train" / "water_024" / name
    if target.name in OPTIONAL:
        atomic, width = OPTIONAL[target.name]
        nf = len(np.load(target.parent / "coord.npy"))
        natoms = len((target.parent.parent / "type.raw").read_text().split())
        np.save(target, np.ones((nf, natoms * width if atomic else width)))
    _break(target, fault)
    monkeypatch.chdir(tmp_path)
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(small_input(data, steps=0)))
    if (name, fault) in ACCEPTED:
        assert main(["train", str(inp)]) == 0
        return
    assert main(["train", str(inp)]) == 2
    err = capsys.readouterr().err
    assert_one_line(err, "")
    assert_names_file(err, target, data / "train")


# ---------------------------------------------------------------- LMDB data sets
# fault -> (what the line says beside the database's path, how to make the database at a
# path); frames of 3 atoms, frame 1 the broken one where a frame is

def _frame_with(**arrays) -> dict:
    """Frame 1's map with arrays' fields changed: coords={"data": 5} changes coords' data."""
    frame = lmdb_frame()
    for key, fields in arrays.items():
        frame[key] = dict(frame[key], **fields)
    return frame


def _two(second: dict, **meta):
    return lambda p: write_lmdb(p, lmdb_meta(2, **meta), numbered(lmdb_frame(), second))


def _torn(path: Path) -> None:
    write_lmdb(path, lmdb_meta(40), numbered(*[lmdb_frame(200)] * 40))
    os.truncate(path / "data.mdb", (path / "data.mdb").stat().st_size // 2)


def _not_lmdb(path: Path) -> None:
    path.mkdir()
    (path / "data.mdb").write_bytes(b"not an lmdb" * 1000)


FRAME_1 = "frame 1 (key '000000000001')"
LMDB_FAULTS = {
    "missing": ("does not exist", lambda p: None),
    "not-a-folder": ("not a folder", lambda p: p.write_text("x")),
    "no-data.mdb": ("data.mdb is missing", lambda p: p.mkdir()),
    "not-lmdb": ("cannot open as an LMDB database", _not_lmdb),
    "truncated": ("the file is cut short", _torn),
    "no-metadata": ("no __metadata__ key",
                    lambda p: write_lmdb(p, None, numbered(lmdb_frame()))),
    "nframes-missing": ("__metadata__ nframes: None",
                        lambda p: write_lmdb(p, {"type_map": ["O"]}, numbered(lmdb_frame()))),
    "frame_nlocs-length": ("frame_nlocs: 1 values, expected a list of 2",
                           _two(lmdb_frame(), frame_nlocs=[3])),
    "frame_nlocs-value": (f"{FRAME_1}: 3 atoms, __metadata__ frame_nlocs says 4",
                          _two(lmdb_frame(), frame_nlocs=[3, 4])),
    "frame-missing": (f"{FRAME_1} is missing",
                      lambda p: write_lmdb(p, lmdb_meta(2), numbered(lmdb_frame()))),
    "type-outside-type_map": ("type 1 or 0 outside type_map ['O']",
                              lambda p: write_lmdb(p, dict(lmdb_meta(1), type_map=["O"]),
                                                   numbered(lmdb_frame()))),
    "wrong-shape": (f"{FRAME_1} forces: shape [4, 3], expected 3 atoms x 3",
                    _two(lmdb_frame(nforce=4))),
    "fparam-width": (f"{FRAME_1} fparam: 3 values per frame, frame 0 of this system has 2",
                     lambda p: write_lmdb(p, lmdb_meta(2), numbered(
                         dict(lmdb_frame(), fparam=encode(np.ones(2))),
                         dict(lmdb_frame(), fparam=encode(np.ones(3)))))),
    "bytes-short": (f"{FRAME_1} coords: shape [3, 3] of float64 takes 72 bytes, the frame "
                    "holds 64", _two(_frame_with(coords={"data": bytes(64)}))),
    "data-not-bytes": (f"{FRAME_1} coords: data is int 5, expected the array's bytes",
                       _two(_frame_with(coords={"data": 5}))),
    "shape-not-sizes": (f"{FRAME_1} coords: shape 'abc' is not a list of sizes",
                        _two(_frame_with(coords={"shape": "abc"}))),
    "non-finite": ("energies: NaN or inf in frame 1", _two(lmdb_frame(energy=math.nan))),
}


@pytest.mark.parametrize("command", ["train", "convert-data"])
@pytest.mark.parametrize("fault", LMDB_FAULTS)
def test_bad_lmdb(dataset, tmp_path, monkeypatch, capsys, fault, command):
    pytest.importorskip("lmdb")
    expected, make = LMDB_FAULTS[fault]
    db, out = tmp_path / "data.lmdb", tmp_path / "out.lmdb"
    make(db)
    monkeypatch.chdir(tmp_path)
    if command == "train":
        cfg = small_input(dataset, steps=0)
        cfg["training"]["training_data"]["systems"] = [str(db)]
        (tmp_path / "in.json").write_text(json.dumps(cfg))
        argv = ["train", str(tmp_path / "in.json")]
    else:
        argv = ["convert-data", str(db), "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert_one_line(err, expected, command)
    assert str(db) in err, err
    assert not out.exists()
