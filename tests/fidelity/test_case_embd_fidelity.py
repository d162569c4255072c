"""A fitting shared by two branches with a one-hot case embedding (fitting_net/dim_case_embd,
DeePMD-kit's "sharefit" multi-task example with the se_e2_a descriptor) against DeePMD-kit
3.2.0: the same checkpoint keys and case vectors, the same numbers both ways per branch, each
branch frozen, and finetuned from either branch (deepmd-compat §5.2, §10)."""
import numpy as np
import pytest
import torch

from dpx.cli.main import main
from tests.fidelity.conftest import checkpoint_tensors as tensors
from tests.fidelity.conftest import deepmd_eval, dp, multi_input, single_input, write_json
from tests.fidelity.test_deepmd_fidelity import TOL, assert_same, dpx_eval

pytestmark = pytest.mark.slow
HEADS = ("water_1", "water_2")


def sharefit_input(data) -> dict:
    cfg = multi_input(data)
    model = cfg["model"]
    model["shared_dict"]["shared_fit"] = dict(model["model_dict"]["water_1"]["fitting_net"],
                                              dim_case_embd=2)
    for branch in model["model_dict"].values():
        branch["fitting_net"] = "shared_fit"
    return cfg


@pytest.fixture(scope="module")
def dp_sharefit(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dp_sharefit")
    dp("--pt", "train", write_json(run / "input.json", sharefit_input(toy_data)), cwd=run)
    return run / "model.ckpt-3.pt"


@pytest.fixture(scope="module")
def dpx_sharefit(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dpx_sharefit")
    cfg = sharefit_input(toy_data)
    cfg["training"].update(save_ckpt=str(run / "model.ckpt"), disp_file=str(run / "lcurve.out"))
    assert main(["train", str(write_json(run / "input.json", cfg)),
                 "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-3.pt"


def test_same_checkpoint_keys_and_cases(dp_sharefit, dpx_sharefit):
    theirs, ours = tensors(dp_sharefit), tensors(dpx_sharefit)
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in theirs.items()}
    for head in HEADS:
        key = f"model.{head}.atomic_model.fitting_net.case_embd"
        assert torch.equal(ours[key], theirs[key]), key  # one-hot of the sorted branch keys


@pytest.mark.parametrize("head", HEADS)
def test_sharefit_checkpoints_both_ways(dp_sharefit, dpx_sharefit, toy_data, head):
    system = toy_data / "sys_b"
    assert_same(dpx_eval(dp_sharefit, system, head), deepmd_eval(dp_sharefit, system, head))
    assert_same(deepmd_eval(dpx_sharefit, system, head), dpx_eval(dpx_sharefit, system, head))


def test_each_branch_freezes(dpx_sharefit, toy_data, tmp_path):
    system = toy_data / "sys_a"
    energies = []
    for head in HEADS:
        frozen = tmp_path / f"{head}.pth"
        assert main(["freeze", "-c", str(dpx_sharefit), "--head", head, "-o", str(frozen)]) == 0
        ours = dpx_eval(dpx_sharefit, system, head)
        assert_same(deepmd_eval(frozen, system), ours)
        assert_same(dpx_eval(frozen, system), ours)
        energies.append(ours["energy"])
    # one network, two cases: the branches give different energies
    assert np.abs(energies[0] - energies[1]).max() > 1e-6


@pytest.mark.parametrize("branch", HEADS)
def test_finetune_from_a_sharefit_branch_equals_deepmd(dp_sharefit, toy_data, tmp_path, branch):
    """A single-task input (the same fitting, dim_case_embd 2) finetuned from one branch: the
    branch's weights, its case vector and the changed bias, as DeePMD-kit makes them."""
    cfg = single_input(toy_data)
    cfg["model"]["fitting_net"]["dim_case_embd"] = 2
    cfg["training"]["numb_steps"] = 0
    (tmp_path / "dp").mkdir()
    dp("--pt", "train", write_json(tmp_path / "dp" / "in.json", cfg), "--finetune", dp_sharefit,
       "--model-branch", branch, "--skip-neighbor-stat", cwd=tmp_path / "dp")
    cfg["training"].update(save_ckpt=str(tmp_path / "model.ckpt"),
                           disp_file=str(tmp_path / "lcurve.out"))
    assert main(["train", str(write_json(tmp_path / "in.json", cfg)), "--finetune",
                 str(dp_sharefit), "--model-branch", branch, "--skip-neighbor-stat"]) == 0
    theirs = tensors(tmp_path / "dp" / "model.ckpt-0.pt")
    ours = tensors(tmp_path / "model.ckpt-0.pt")
    assert set(ours) == set(theirs)
    for key, ref in theirs.items():
        np.testing.assert_allclose(ours[key].numpy(), ref.numpy(), rtol=TOL, atol=1e-12,
                                   err_msg=key)
    case = ours["model.Default.atomic_model.fitting_net.case_embd"]
    assert torch.equal(case, torch.eye(2, dtype=case.dtype)[HEADS.index(branch)])
