"""`dpx change-bias` and training/change_bias_after_training against `dp --pt change-bias`
on the same checkpoints and data (all frames: DeePMD-kit draws a numb_batch subset at random,
unseeded; dpx takes the first numb_batch frames of each system)."""
import shutil

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from tests.fidelity.conftest import dp, multi_input, single_input, write_json
from tests.fidelity.test_deepmd_fidelity import TOL
from tests.fidelity.test_parameters_fidelity import param_input

pytestmark = pytest.mark.slow


def bias_of(path, branch="Default") -> dict:
    sd = torch.load(path, weights_only=True)["model"]
    return {k: sd[f"model.{branch}.atomic_model.{k}"].numpy() for k in ("out_bias", "out_std")}


def assert_bias(ours: dict, theirs: dict):
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=TOL, atol=1e-12, err_msg=k)


def train_in(run, cfg: dict):
    """cfg's 3 steps trained by dpx in the folder run: its last checkpoint."""
    cfg["training"].update(save_ckpt=str(run / "model.ckpt"), disp_file=str(run / "lcurve.out"))
    assert main(["train", str(write_json(run / "in.json", cfg)), "-o", str(run / "o.json")]) == 0
    return run / "model.ckpt-3.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_data):
    return train_in(tmp_path_factory.mktemp("cb"), single_input(toy_data))


@pytest.mark.parametrize("mode", ["change", "set"])
def test_checkpoint_equals_dp(trained, toy_data, tmp_path, mode):
    system = toy_data / "sys_a"
    dp("--pt", "change-bias", trained, "-s", system, "-m", mode, "-o", tmp_path / "dp.pt",
       cwd=tmp_path)
    assert main(["change-bias", str(trained), "-s", str(system), "-m", mode, "-o",
                 str(tmp_path / "dpx.pt")]) == 0
    assert_bias(bias_of(tmp_path / "dpx.pt"), bias_of(tmp_path / "dp.pt"))
    before = torch.load(trained, weights_only=True)
    after = torch.load(tmp_path / "dpx.pt", weights_only=True)
    assert after["optimizer"].keys() == before["optimizer"].keys()
    for k, v in before["model"].items():
        if k != "_extra_state" and not k.endswith(("out_bias", "out_std")):
            assert torch.equal(after["model"][k], v), k
    assert not np.allclose(bias_of(trained)["out_bias"], bias_of(tmp_path / "dpx.pt")["out_bias"])


def test_user_values_and_frozen_files(trained, toy_data, tmp_path):
    assert main(["change-bias", str(trained), "-b", "-1.5", "-2.5", "-o",
                 str(tmp_path / "b.pt")]) == 0
    np.testing.assert_array_equal(bias_of(tmp_path / "b.pt")["out_bias"].reshape(-1),
                                  [-1.5, -2.5])
    # a frozen file, dpx's and DeePMD-kit's, changes as its checkpoint does
    system = toy_data / "sys_b"
    assert main(["freeze", "-c", str(trained), "-o", str(tmp_path / "dpx.pth")]) == 0
    dp("--pt", "freeze", "-c", trained, "-o", tmp_path / "dp.pth", cwd=tmp_path)
    assert main(["change-bias", str(trained), "-s", str(system), "-o",
                 str(tmp_path / "c.pt")]) == 0
    want = bias_of(tmp_path / "c.pt")
    for name in ("dpx", "dp"):
        assert main(["change-bias", str(tmp_path / f"{name}.pth"), "-s", str(system)]) == 0
        module = torch.jit.load(str(tmp_path / f"{name}_updated.pth"))
        got = {k: getattr(module.atomic_model, k).numpy() for k in want}
        assert_bias(got, want)


def test_multitask_branch_equals_dp(tmp_path, toy_data):
    cfg = multi_input(toy_data)
    cfg["training"].update(save_ckpt=str(tmp_path / "model.ckpt"),
                           disp_file=str(tmp_path / "lcurve.out"))
    assert main(["train", str(write_json(tmp_path / "in.json", cfg)), "-o",
                 str(tmp_path / "o.json")]) == 0
    ckpt = tmp_path / "model.ckpt-3.pt"
    system = toy_data / "sys_b"
    dp("--pt", "change-bias", ckpt, "-s", system, "--model-branch", "water_2", "-o",
       tmp_path / "dp.pt", cwd=tmp_path)
    assert main(["change-bias", str(ckpt), "-s", str(system), "--model-branch", "water_2",
                 "-o", str(tmp_path / "dpx.pt")]) == 0
    assert_bias(bias_of(tmp_path / "dpx.pt", "water_2"), bias_of(tmp_path / "dp.pt", "water_2"))
    assert_bias(bias_of(tmp_path / "dpx.pt", "water_1"), bias_of(ckpt, "water_1"))  # untouched


def test_change_bias_after_training(tmp_path, toy_data):
    """The run with the flag ends with the bias dp change-bias gives the run without it."""
    for name, flag in (("plain", False), ("flag", True)):
        cfg = single_input(toy_data)
        cfg["model"]["data_stat_nbatch"] = 100  # every frame: DeePMD-kit's sampler draws all
        cfg["training"].update(save_ckpt=str(tmp_path / name / "model.ckpt"),
                               disp_file=str(tmp_path / name / "lcurve.out"),
                               change_bias_after_training=flag)
        assert main(["train", str(write_json(tmp_path / f"{name}.json", cfg)), "-o",
                     str(tmp_path / f"{name}.out.json")]) == 0
    systems = tmp_path / "systems.txt"
    systems.write_text("\n".join(cfg["training"]["training_data"]["systems"]) + "\n")
    dp("--pt", "change-bias", tmp_path / "plain" / "model.ckpt-3.pt", "-f", systems, "-o",
       tmp_path / "dp.pt", cwd=tmp_path)
    assert_bias(bias_of(tmp_path / "flag" / "model.ckpt-3.pt"), bias_of(tmp_path / "dp.pt"))


STATS = ("out_bias", "out_std", "fitting_net.fparam_avg", "fitting_net.fparam_inv_std",
         "fitting_net.aparam_avg", "fitting_net.aparam_inv_std")


@pytest.fixture(scope="module")
def trained_with_parameters(tmp_path_factory, param_data):
    cfg = param_input(param_data)
    # a floor above the std of the first fparam column of the data below (0.6): DeePMD-kit
    # 3.2 floors the statistics -m set recomputes at 1e-2 whatever data_stat_protect says
    cfg["model"]["data_stat_protect"] = 1.0
    return train_in(tmp_path_factory.mktemp("cb_param"), cfg)


@pytest.mark.parametrize("mode", ["change", "set"])
def test_a_model_with_fparam_and_aparam_equals_dp(trained_with_parameters, param_data, tmp_path,
                                                  mode):
    """The frames carry fparam/aparam; -m set also recomputes their statistics on the data,
    as DeePMD-kit 3.2 does. Checkpoint and frozen file alike."""
    ckpt, other = trained_with_parameters, tmp_path / "other"
    shutil.copytree(param_data / "sys_b", other)
    for name in ("fparam", "aparam"):  # parameters other than the training's
        arr = np.load(other / "set.000" / f"{name}.npy")
        np.save(other / "set.000" / f"{name}.npy", arr * 2.0 + 1.0)
    dp("--pt", "change-bias", ckpt, "-s", other, "-m", mode, "-o", tmp_path / "dp.pt",
       cwd=tmp_path)
    assert main(["change-bias", str(ckpt), "-s", str(other), "-m", mode, "-o",
                 str(tmp_path / "dpx.pt")]) == 0
    theirs = tensors_of(tmp_path / "dp.pt")
    assert_bias(tensors_of(tmp_path / "dpx.pt"), theirs)
    if mode == "set":
        assert not np.allclose(theirs["fitting_net.fparam_avg"],
                               tensors_of(ckpt)["fitting_net.fparam_avg"])
    assert main(["freeze", "-c", str(ckpt), "-o", str(tmp_path / "f.pth")]) == 0
    assert main(["change-bias", str(tmp_path / "f.pth"), "-s", str(other), "-m", mode]) == 0
    module = torch.jit.load(str(tmp_path / "f_updated.pth"))
    assert_bias({k: _attr(module.atomic_model, k).numpy() for k in STATS}, theirs)


def tensors_of(path, branch="Default") -> dict:
    sd = torch.load(path, weights_only=True)["model"]
    return {k: sd[f"model.{branch}.atomic_model.{k}"].numpy() for k in STATS}


def _attr(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module
