"""dpx against DeePMD-kit 3.2.0 on the same weights and data: checkpoints move both ways and
give the same energies, forces and virials (1e-10 relative, float64); statistics agree."""
import re

import numpy as np
import pytest

from dpx.cli.main import main
from dpx.data import load_systems
from dpx.infer.evaluate import evaluate
from dpx.io import load_model
from tests.fidelity.conftest import (
    RUNNER,
    deepmd_eval,
    dp,
    multi_input,
    oracle,
    single_input,
    write_json,
)

pytestmark = pytest.mark.slow
TOL = 1e-10


def dpx_eval(ckpt, system, head=None) -> dict:
    model, _ = load_model(ckpt, head)
    (sys,) = load_systems(str(system), type_map=model.type_map, sort_atoms=False)
    return evaluate(model, sys.coord, sys.atype, sys.box, atomic_virial=True)


def assert_same(ours: dict, theirs: dict):
    """Totals and per-atom energies and virials (atom by atom, not only their sums)."""
    for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):
        a, b = ours[key].reshape(-1), theirs[key].reshape(-1)
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= TOL * scale, (key, np.abs(a - b).max(), scale)


@pytest.fixture(scope="module")
def dp_single(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dp_single")
    dp("--pt", "train", write_json(run / "input.json", single_input(toy_data)), cwd=run)
    return run / "model.ckpt-3.pt"


@pytest.fixture(scope="module")
def dpx_single(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dpx_single")
    cfg = single_input(toy_data)
    cfg["training"]["save_ckpt"] = str(run / "model.ckpt")
    cfg["training"]["disp_file"] = str(run / "lcurve.out")
    assert main(["train", str(write_json(run / "input.json", cfg)), "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-3.pt"


@pytest.mark.parametrize("system", ["sys_a", "sys_b"])
def test_dpx_evaluates_deepmd_checkpoint(dp_single, toy_data, system):
    assert_same(dpx_eval(dp_single, toy_data / system), deepmd_eval(dp_single, toy_data / system))


@pytest.mark.parametrize("system", ["sys_a", "sys_b"])
def test_deepmd_evaluates_dpx_checkpoint(dpx_single, toy_data, system):
    assert_same(dpx_eval(dpx_single, toy_data / system), deepmd_eval(dpx_single, toy_data / system))


def test_deepmd_freezes_and_restarts_dpx_checkpoint(dpx_single, toy_data, tmp_path):
    dp("--pt", "freeze", "-c", dpx_single, "-o", tmp_path / "frozen.pth", cwd=tmp_path)
    assert_same(dpx_eval(dpx_single, toy_data / "sys_b"),
                deepmd_eval(tmp_path / "frozen.pth", toy_data / "sys_b"))
    cfg = single_input(toy_data)
    cfg["training"]["numb_steps"] = 4
    dp("--pt", "train", write_json(tmp_path / "in.json", cfg), "--restart", dpx_single,
       "--skip-neighbor-stat", cwd=tmp_path)
    assert (tmp_path / "model.ckpt-4.pt").exists()


def statistics_of_both(cfg: dict, tmp_path):
    """(dpx's 0-step checkpoint, DeePMD-kit's statistics npz as a dict) for one input."""
    out = tmp_path / "dp_stat.npz"
    oracle(RUNNER, "stat", "--input", write_json(tmp_path / "in.json", cfg), "--workdir",
           tmp_path / "dp", "--out", out)
    cfg = dict(cfg, training=dict(cfg["training"], numb_steps=0,
                                  save_ckpt=str(tmp_path / "dpx")))
    assert main(["train", str(write_json(tmp_path / "in0.json", cfg)),
                 "-o", str(tmp_path / "out.json")]) == 0
    return tmp_path / "dpx-0.pt", dict(np.load(out))


def test_statistics_equal_deepmd(tmp_path, toy_data):
    """davg/dstd, out_bias/out_std and min_nbor_dist from 0-step runs of both."""
    cfg = single_input(toy_data)
    cfg["model"]["descriptor"]["sel"] = "auto"
    ckpt, theirs = statistics_of_both(cfg, tmp_path)
    model, _ = load_model(ckpt)
    sea = model.atomic_model.descriptor.sea
    ours = {"davg": sea.mean, "dstd": sea.stddev, "out_bias": model.atomic_model.out_bias,
            "out_std": model.atomic_model.out_std, "min_nbor_dist": model.min_nbor_dist}
    for key, value in ours.items():
        ref = theirs[f"Default/{key}"]
        assert value.shape == ref.shape, key   # includes sel 'auto' resolved the same way
        np.testing.assert_allclose(value.detach().numpy(), ref, rtol=TOL, atol=1e-12, err_msg=key)


@pytest.fixture(scope="module")
def dp_multi(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dp_multi")
    dp("--pt", "train", write_json(run / "input.json", multi_input(toy_data)), cwd=run)
    return run / "model.ckpt-3.pt"


@pytest.mark.parametrize("head", ["water_1", "water_2"])
def test_dpx_evaluates_deepmd_multitask_checkpoint(dp_multi, toy_data, head):
    assert_same(dpx_eval(dp_multi, toy_data / "sys_a", head),
                deepmd_eval(dp_multi, toy_data / "sys_a", head))


def test_multitask_checkpoints_both_ways(tmp_path, toy_data):
    cfg = multi_input(toy_data)
    cfg["training"]["save_ckpt"] = str(tmp_path / "model.ckpt")
    cfg["training"]["disp_file"] = str(tmp_path / "lcurve.out")
    assert main(["train", str(write_json(tmp_path / "in.json", cfg)),
                 "-o", str(tmp_path / "out.json")]) == 0
    ckpt = tmp_path / "model.ckpt-3.pt"
    for head in ("water_1", "water_2"):
        assert_same(dpx_eval(ckpt, toy_data / "sys_b", head),
                    deepmd_eval(ckpt, toy_data / "sys_b", head))


def test_multitask_statistics_equal_deepmd(tmp_path, toy_data):
    """Shared davg/dstd merged over both branches; each branch's own out_bias."""
    ckpt, theirs = statistics_of_both(multi_input(toy_data), tmp_path)
    for head in ("water_1", "water_2"):
        model, _ = load_model(ckpt, head)
        sea = model.atomic_model.descriptor.sea
        for key, value in {"davg": sea.mean, "dstd": sea.stddev,
                           "out_bias": model.atomic_model.out_bias}.items():
            np.testing.assert_allclose(value.detach().numpy(), theirs[f"{head}/{key}"],
                                       rtol=TOL, atol=1e-12, err_msg=f"{head}/{key}")


def _metrics(text: str) -> dict:
    """{'Energy RMSE/Natoms': value, ...} of the per-system block of a `dp test` log."""
    found = {}
    for m in re.finditer(r"((?:Energy|Force|Virial|Stress)[ A-Za-z/]*?)\s*: ([-+0-9.e]+) ", text):
        found.setdefault(" ".join(m.group(1).split()), float(m.group(2)))
    return found


def test_dpx_test_equals_dp_test(dpx_single, toy_data, tmp_path, capsys):
    system = toy_data / "sys_b"
    res = dp("--pt", "test", "-m", dpx_single, "-s", system, "-d", tmp_path / "dp", cwd=tmp_path)
    capsys.readouterr()
    assert main(["test", "-m", str(dpx_single), "-s", str(system), "-d",
                 str(tmp_path / "dpx")]) == 0
    theirs, ours = _metrics(res.stdout + res.stderr), _metrics(capsys.readouterr().err)
    assert "Stress RMSE" in theirs and set(theirs) == set(ours), (theirs, ours)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-6), name  # dp prints 7 digits
    for suffix in (".e.out", ".f.out", ".v.out", ".s.out"):
        a = np.loadtxt(tmp_path / f"dpx{suffix}")
        b = np.loadtxt(tmp_path / f"dp{suffix}")
        assert np.abs(a - b).max() <= TOL * np.abs(b).max(), suffix


@pytest.fixture(scope="module", params=[[-3.0, None], [-3.0]], ids=["O_given", "list_short"])
def atom_ener_input(request, toy_data):
    """fitting_net/atom_ener: the given types' networks lose their zero-descriptor output
    (and, as DeePMD-kit does it, the types past the end of a short list)."""
    cfg = single_input(toy_data)
    cfg["model"]["fitting_net"]["atom_ener"] = request.param
    return cfg


def test_atom_ener_both_ways(atom_ener_input, toy_data, tmp_path):
    (tmp_path / "dp").mkdir()
    dp("--pt", "train", write_json(tmp_path / "dp" / "input.json", atom_ener_input),
       cwd=tmp_path / "dp")
    cfg = dict(atom_ener_input, training=dict(atom_ener_input["training"],
                                              save_ckpt=str(tmp_path / "model.ckpt"),
                                              disp_file=str(tmp_path / "lcurve.out")))
    assert main(["train", str(write_json(tmp_path / "in.json", cfg)),
                 "-o", str(tmp_path / "out.json")]) == 0
    for ckpt in (tmp_path / "dp" / "model.ckpt-3.pt", tmp_path / "model.ckpt-3.pt"):
        # DeePMD-kit 3.2.0's own scripted model of such a checkpoint raises ("a view of a leaf
        # Variable ... in-place"): its Python model is the oracle
        assert_same(dpx_eval(ckpt, toy_data / "sys_b"),
                    deepmd_eval(ckpt, toy_data / "sys_b", no_jit=True))
    assert main(["freeze", "-c", str(tmp_path / "model.ckpt-3.pt"), "-o",
                 str(tmp_path / "f.pth")]) == 0
    assert_same(deepmd_eval(tmp_path / "f.pth", toy_data / "sys_b"),
                dpx_eval(tmp_path / "model.ckpt-3.pt", toy_data / "sys_b"))


def test_mixed_type_system_equals_dp_test(dpx_single, toy_data, tmp_path, capsys):
    """deepmd/npy/mixed data (each frame's types in real_atom_types.npy): dpx test gives the
    errors dp test gives (dpx reads one system per composition; the averages are the same)."""
    src = toy_data / "sys_b"
    mixed = tmp_path / "mixed"
    (mixed / "set.000").mkdir(parents=True)
    atype = np.loadtxt(src / "type.raw", dtype=int)
    names = (src / "type_map.raw").read_text().split()
    nf = np.load(src / "set.000" / "coord.npy").shape[0]
    real = np.tile(atype, (nf, 1))
    real[1::2, :3] = 1 - real[1::2, :3]  # every other frame: the first three atoms swapped
    (mixed / "type.raw").write_text(" ".join("0" for _ in atype) + "\n")
    (mixed / "type_map.raw").write_text("\n".join(names) + "\n")
    for f in (src / "set.000").glob("*.npy"):
        (mixed / "set.000" / f.name).write_bytes(f.read_bytes())
    np.save(mixed / "set.000" / "real_atom_types.npy", real)
    res = dp("--pt", "test", "-m", dpx_single, "-s", mixed, cwd=tmp_path)
    capsys.readouterr()
    assert main(["test", "-m", str(dpx_single), "-s", str(mixed)]) == 0
    ours = capsys.readouterr().err
    average = ours[ours.index("weighted average"):]
    theirs = _metrics(res.stdout + res.stderr)
    mine = _metrics(average)
    assert "Energy RMSE" in theirs and "Force RMSE" in theirs
    for name in ("Energy RMSE", "Energy MAE", "Force RMSE", "Virial RMSE"):
        assert mine[name] == pytest.approx(theirs[name], rel=1e-6), name
