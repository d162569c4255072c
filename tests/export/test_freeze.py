"""`dpx freeze` / dpx.export.freeze on checkpoints: the written file, multi-task heads, error
messages, and `dpx test`-style evaluation of the frozen file."""
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from dpx.export import freeze
from dpx.infer.evaluate import evaluate
from dpx.io import load_model
from tests.export.test_frozen import assert_close, make_model
from tests.model.test_physics import random_frame


def params_of(model) -> dict:
    params = asdict(model.cfg)
    return json.loads(json.dumps(params))


def write_checkpoint(path, branches: dict, multi: bool):
    """A checkpoint in dpx's (= DeePMD-kit's) layout with one model per branch."""
    sd = {}
    for key, model in branches.items():
        sd.update({f"model.{key}.{k}": v for k, v in model.state_dict().items()})
    params = {"model_dict": {k: params_of(m) for k, m in branches.items()}} if multi \
        else params_of(branches["Default"])
    sd["_extra_state"] = {"model_params": params, "train_infos": {"lr": 0.0, "step": 0}}
    torch.save({"model": sd}, path)
    (path.parent / "checkpoint").write_text(path.name)
    return path


@pytest.fixture
def single(tmp_path):
    model = make_model()
    return model, write_checkpoint(tmp_path / "model.ckpt-1.pt", {"Default": model}, False)


def test_freeze_writes_deepmd_frozen_model(single, tmp_path):
    model, ckpt = single
    out = freeze(ckpt, tmp_path / "frozen.model")
    assert out == tmp_path / "frozen.pth"  # suffix forced to .pth
    extra = {"data_modifier.pth": ""}
    m = torch.jit.load(str(out), _extra_files=extra)
    assert extra["data_modifier.pth"] in ("", b"")
    assert json.loads(m.get_model_def_script())["type_map"] == ["O", "H"]
    assert m.min_nbor_dist.dtype == torch.float64
    coord, atype, box = random_frame(natoms=12)
    ref = model(coord, atype, box)
    out = m(coord, atype, box)
    for key in ("energy", "force", "virial", "atom_energy"):
        assert_close(out[key], ref[key], key)


def test_cli_reads_folder_checkpoint_file(single, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["freeze", "-o", "x"]) == 0  # -c defaults to "."
    assert (tmp_path / "x.pth").is_file()


def test_evaluate_frozen_equals_checkpoint(single, tmp_path):
    _, ckpt = single
    frozen_path = freeze(ckpt, tmp_path / "m.pth")
    model, _ = load_model(ckpt)
    frozen, _ = load_model(frozen_path)
    assert frozen.type_map == model.type_map
    coord, atype, box = random_frame(natoms=12)
    a = evaluate(model, coord.numpy(), atype[0].numpy(), box.numpy())
    b = evaluate(frozen, coord.numpy(), atype[0].numpy(), box.numpy())
    for key in a:
        assert abs(a[key] - b[key]).max() <= 1e-10 * max(abs(a[key]).max(), 1.0), key


def test_multitask_needs_head(tmp_path, capsys):
    branches = {"water_1": make_model(seed=1), "water_2": make_model(seed=2)}
    ckpt = write_checkpoint(tmp_path / "multi.pt", branches, True)
    assert main(["freeze", "-c", str(ckpt), "-o", str(tmp_path / "m.pth")]) == 2
    err = capsys.readouterr().err
    assert "dpx freeze: error:" in err and "water_1, water_2" in err
    out = freeze(ckpt, tmp_path / "m.pth", branch="water_2")
    coord, atype, box = random_frame(natoms=12)
    ref = branches["water_2"](coord, atype, box)
    assert_close(torch.jit.load(str(out))(coord, atype, box)["energy"], ref["energy"])
    with pytest.raises(ValueError, match="no branch 'nope'"):
        freeze(ckpt, tmp_path / "m.pth", branch="nope")


def test_bad_paths(single, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        freeze(tmp_path / "missing.pt", tmp_path / "m.pth")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="without a 'checkpoint' file"):
        freeze(empty, tmp_path / "m.pth")
    _, ckpt = single
    with pytest.raises(FileNotFoundError, match="does not exist"):
        freeze(ckpt, tmp_path / "no" / "m.pth")
    assert main(["freeze", "-c", str(tmp_path / "missing.pt")]) == 2
    assert "dpx freeze: error:" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="frozen model"):
        load_model(tmp_path / "missing.pth")


def test_ase_calculator_on_frozen_file(single, tmp_path):
    ase = pytest.importorskip("ase")
    from dpx.calculator import DPX

    _, ckpt = single
    frozen_path = freeze(ckpt, tmp_path / "m.pth")
    coord, atype, box = random_frame(natoms=12)
    atoms = ase.Atoms([["O", "H"][t] for t in atype[0]], positions=coord[0].numpy(),
                      cell=box.reshape(3, 3).numpy(), pbc=True)
    results = []
    for path in (ckpt, frozen_path):
        atoms.calc = DPX(str(path))
        results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    for a, b in zip(*results):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-10 * max(np.abs(b).max(), 1.0)
