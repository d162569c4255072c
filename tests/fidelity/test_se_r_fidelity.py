"""se_e2_r against DeePMD-kit 3.2.0 on the same weights and data (1e-10 relative, float64):
checkpoints both ways (single and multi-task, per-atom energies and virials), statistics from
0-step runs, and dpx's frozen file in DeePMD-kit's DeepPot."""
import copy

import numpy as np
import pytest

from dpx.cli.main import main
from dpx.io import load_model
from tests.fidelity.conftest import deepmd_eval, dp, multi_input, oracle, single_input, write_json
from tests.fidelity.test_deepmd_fidelity import TOL, assert_same, dpx_eval, statistics_of_both

pytestmark = pytest.mark.slow

SE_R = {"type": "se_e2_r", "sel": [20, 40], "rcut_smth": 0.5, "rcut": 4.0,
        "neuron": [4, 8, 16], "resnet_dt": False, "seed": 1}


def se_r_single(data, **descriptor) -> dict:
    cfg = single_input(data)
    cfg["model"]["descriptor"] = dict(SE_R, **descriptor)
    return cfg


def se_r_multi(data) -> dict:
    cfg = multi_input(data)
    cfg["model"]["shared_dict"]["sea_descriptor_1"] = copy.deepcopy(SE_R)
    return cfg


def dpx_train(cfg: dict, run) -> None:
    cfg = copy.deepcopy(cfg)
    cfg["training"]["save_ckpt"] = str(run / "model.ckpt")
    cfg["training"]["disp_file"] = str(run / "lcurve.out")
    assert main(["train", str(write_json(run / "input.json", cfg)), "-o",
                 str(run / "out.json")]) == 0


@pytest.fixture(scope="module", params=[(), [[0, 1]]], ids=["plain", "exclude_types"])
def dp_se_r(request, tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dp_se_r")
    cfg = se_r_single(toy_data, exclude_types=list(request.param))
    dp("--pt", "train", write_json(run / "input.json", cfg), cwd=run)
    return run / "model.ckpt-3.pt"


@pytest.fixture(scope="module")
def dpx_se_r(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dpx_se_r")
    dpx_train(se_r_single(toy_data), run)
    return run / "model.ckpt-3.pt"


@pytest.mark.parametrize("system", ["sys_a", "sys_b"])
def test_dpx_evaluates_deepmd_se_r_checkpoint(dp_se_r, toy_data, system):
    assert_same(dpx_eval(dp_se_r, toy_data / system), deepmd_eval(dp_se_r, toy_data / system))


@pytest.mark.parametrize("system", ["sys_a", "sys_b"])
def test_deepmd_evaluates_dpx_se_r_checkpoint(dpx_se_r, toy_data, system):
    model, _ = load_model(dpx_se_r)
    assert type(model.atomic_model.descriptor).__name__ == "DescrptSeR"
    assert_same(dpx_eval(dpx_se_r, toy_data / system), deepmd_eval(dpx_se_r, toy_data / system))


def test_deepmd_loads_dpx_frozen_se_r(dpx_se_r, toy_data, tmp_path):
    """dpx freeze's file in DeepPot equals DeepPot on the checkpoint and on DeePMD-kit's
    own freeze of it."""
    assert main(["freeze", "-c", str(dpx_se_r), "-o", str(tmp_path / "dpx.pth")]) == 0
    dp("--pt", "freeze", "-c", dpx_se_r, "-o", tmp_path / "dp.pth", cwd=tmp_path)
    ours = deepmd_eval(tmp_path / "dpx.pth", toy_data / "sys_b")
    assert_same(ours, deepmd_eval(dpx_se_r, toy_data / "sys_b"))
    assert_same(ours, deepmd_eval(tmp_path / "dp.pth", toy_data / "sys_b"))
    code = ("import sys, torch, deepmd.pt  # its op library: its frozen file names the ops\n"
            "a, b = (torch.jit.load(p) for p in sys.argv[1:3])\n"
            "assert set(a.state_dict()) == set(b.state_dict())\n"
            "assert a.get_sel() == b.get_sel() and a.get_rcut() == b.get_rcut()\n")
    oracle("-c", code, tmp_path / "dpx.pth", tmp_path / "dp.pth")


def _check_stats(model, theirs: dict, head: str,
                 keys=("davg", "dstd", "out_bias", "out_std", "min_nbor_dist")) -> None:
    d = model.atomic_model.descriptor
    ours = {"davg": d.mean, "dstd": d.stddev, "out_bias": model.atomic_model.out_bias,
            "out_std": model.atomic_model.out_std, "min_nbor_dist": model.min_nbor_dist}
    for key in keys:
        value = ours[key]
        ref = theirs[f"{head}/{key}"]
        assert value.shape == ref.shape, key   # sel 'auto' resolved the same way
        np.testing.assert_allclose(value.detach().numpy(), ref, rtol=TOL, atol=1e-12,
                                   err_msg=f"{head}/{key}")


def test_se_r_statistics_equal_deepmd(tmp_path, toy_data):
    ckpt, theirs = statistics_of_both(se_r_single(toy_data, sel="auto"), tmp_path)
    model, _ = load_model(ckpt)
    _check_stats(model, theirs, "Default")


def test_se_r_multitask_statistics_equal_deepmd(tmp_path, toy_data):
    """The shared descriptor's davg/dstd merged over both branches; each branch's bias."""
    ckpt, theirs = statistics_of_both(se_r_multi(toy_data), tmp_path)
    for head in ("water_1", "water_2"):
        model, _ = load_model(ckpt, head)
        _check_stats(model, theirs, head, keys=("davg", "dstd", "out_bias"))


def test_se_r_multitask_checkpoints_both_ways(tmp_path, toy_data):
    cfg = se_r_multi(toy_data)
    (tmp_path / "dp").mkdir()
    dp("--pt", "train", write_json(tmp_path / "dp" / "input.json", cfg), cwd=tmp_path / "dp")
    dpx_train(cfg, tmp_path)
    for ckpt in (tmp_path / "dp" / "model.ckpt-3.pt", tmp_path / "model.ckpt-3.pt"):
        for head in ("water_1", "water_2"):
            assert_same(dpx_eval(ckpt, toy_data / "sys_b", head),
                        deepmd_eval(ckpt, toy_data / "sys_b", head))
