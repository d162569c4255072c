"""Statistics frames against DeePMD-kit 3.2.0 when data_stat_nbatch does not cover every frame:
with the same seed dpx samples the frames DeePMD-kit samples, so davg/dstd and the energy
bias are equal (single-task with and without validation data, se_e2_a with type_one_side
both ways and se_e2_r, multi-task where the second branch continues the first's stream)."""
import copy

import numpy as np
import pytest

from dpx.io import load_model
from tests.fidelity.conftest import multi_input, single_input
from tests.fidelity.test_deepmd_fidelity import TOL, statistics_of_both

pytestmark = pytest.mark.slow
NBATCH = 3  # of the 10 frames of each toy system


def _stats(model) -> dict:
    d = model.atomic_model.descriptor
    block = getattr(d, "sea", d)
    return {"davg": block.mean, "dstd": block.stddev, "out_bias": model.atomic_model.out_bias}


def _compare(ckpt, theirs, heads):
    for head in heads:
        model, _ = load_model(ckpt, None if head == "Default" else head)
        for key, value in _stats(model).items():
            np.testing.assert_allclose(value.detach().numpy(), theirs[f"{head}/{key}"],
                                       rtol=TOL, atol=1e-12, err_msg=f"{head}/{key}")


SE_R = {"type": "se_e2_r", "sel": [20, 40], "rcut_smth": 0.5, "rcut": 4.0, "neuron": [4, 8],
        "resnet_dt": False, "seed": 1}


@pytest.mark.parametrize("variant", ["type_one_side", "two_side", "no_validation", "se_e2_r",
                                     "sel_auto"])
def test_partial_statistics_equal_deepmd(variant, toy_data, tmp_path):
    cfg = single_input(toy_data)
    cfg["model"]["data_stat_nbatch"] = NBATCH
    desc = cfg["model"]["descriptor"]
    if variant == "two_side":
        desc["type_one_side"] = False
    elif variant == "no_validation":
        cfg["training"].pop("validation_data")
    elif variant == "se_e2_r":
        cfg["model"]["descriptor"] = copy.deepcopy(SE_R)
    elif variant == "sel_auto":
        desc["sel"] = "auto"
    ckpt, theirs = statistics_of_both(cfg, tmp_path)
    _compare(ckpt, theirs, ["Default"])


def test_partial_multitask_statistics_equal_deepmd(toy_data, tmp_path):
    cfg = multi_input(toy_data)
    for branch in cfg["model"]["model_dict"].values():
        branch["data_stat_nbatch"] = NBATCH
    ckpt, theirs = statistics_of_both(cfg, tmp_path)
    _compare(ckpt, theirs, ["water_1", "water_2"])
