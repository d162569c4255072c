"""Frame and atomic parameters (fitting_net/numb_fparam, numb_aparam) against DeePMD-kit 3.2.0:
checkpoints both ways, dpx's frozen file under DeePMD-kit's DeepPot (vesin and native neighbor
lists) and its ASE calculator, and the fparam/aparam statistics, single-task and with a
fitting shared by two branches drawn with unequal probabilities (deepmd-compat §5.2, §10.4)."""
import numpy as np
import pytest

from dpx.cli.main import main
from dpx.data import load_systems
from dpx.infer.evaluate import evaluate, system_parameters
from dpx.io import load_model
from tests.fidelity.conftest import (
    PARAMS,
    deepmd_eval,
    dp,
    multi_input,
    single_input,
    write_json,
)
from tests.fidelity.test_deepmd_fidelity import TOL, assert_same, statistics_of_both

pytestmark = pytest.mark.slow


def param_input(data):
    cfg = single_input(data)
    cfg["model"]["fitting_net"].update(PARAMS)
    return cfg


def dpx_eval(model_file, system, head=None) -> dict:
    model, _ = load_model(model_file, head)
    (sys,) = load_systems(str(system), type_map=model.type_map, sort_atoms=False)
    return evaluate(model, sys.coord, sys.atype, sys.box, atomic_virial=True,
                    **system_parameters(model, sys, str(system)))


def test_dpx_evaluates_deepmd_checkpoint_with_parameters(param_data, tmp_path):
    dp("--pt", "train", write_json(tmp_path / "input.json", param_input(param_data)),
       cwd=tmp_path)
    ckpt = tmp_path / "model.ckpt-3.pt"
    assert_same(dpx_eval(ckpt, param_data / "sys_b"), deepmd_eval(ckpt, param_data / "sys_b"))


def test_deepmd_evaluates_dpx_checkpoint_and_frozen_file(param_data, tmp_path):
    cfg = param_input(param_data)
    cfg["training"].update(save_ckpt=str(tmp_path / "model.ckpt"),
                           disp_file=str(tmp_path / "lcurve.out"))
    assert main(["train", str(write_json(tmp_path / "in.json", cfg)),
                 "-o", str(tmp_path / "out.json")]) == 0
    ckpt, system = tmp_path / "model.ckpt-3.pt", param_data / "sys_b"
    ours = dpx_eval(ckpt, system)
    assert_same(ours, deepmd_eval(ckpt, system))
    assert main(["freeze", "-c", str(ckpt), "-o", str(tmp_path / "f.pth")]) == 0
    for backend in ("auto", "native"):  # vesin's list (a stock install) and DeePMD-kit's own
        assert_same(deepmd_eval(tmp_path / "f.pth", system, nlist_backend=backend), ours)
    theirs = deepmd_eval(tmp_path / "f.pth", system, evaluator="ase")
    np.testing.assert_allclose(theirs["energy"], ours["energy"], rtol=TOL)
    np.testing.assert_allclose(theirs["force"], ours["force"], rtol=TOL, atol=1e-12)


def _fitting_stats(model) -> dict:
    fit = model.atomic_model.fitting_net
    return {k: getattr(fit, k) for k in ("fparam_avg", "fparam_inv_std", "aparam_avg",
                                         "aparam_inv_std")}


def test_parameter_statistics_equal_deepmd(param_data, tmp_path):
    ckpt, theirs = statistics_of_both(param_input(param_data), tmp_path)
    model, _ = load_model(ckpt)
    for key, value in _fitting_stats(model).items():
        np.testing.assert_allclose(value.numpy(), theirs[f"Default/{key}"], rtol=TOL,
                                   err_msg=key)


def test_shared_fitting_statistics_weighted_by_branch_probability(param_data, tmp_path):
    """One fitting in shared_dict: its parameter statistics are the first branch's sums plus
    the second's scaled by p_2 / p_1."""
    cfg = multi_input(param_data)
    model = cfg["model"]
    fit = dict(model["model_dict"]["water_1"]["fitting_net"], **PARAMS)
    model["shared_dict"]["shared_fit"] = fit
    for branch in model["model_dict"].values():
        branch["fitting_net"] = "shared_fit"
    cfg["training"]["model_prob"] = {"water_1": 0.8, "water_2": 0.2}
    ckpt, theirs = statistics_of_both(cfg, tmp_path)
    for head in ("water_1", "water_2"):
        model, _ = load_model(ckpt, head)
        for key, value in _fitting_stats(model).items():
            np.testing.assert_allclose(value.numpy(), theirs[f"{head}/{key}"], rtol=TOL,
                                       err_msg=f"{head}/{key}")
