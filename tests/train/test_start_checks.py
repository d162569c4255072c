"""--init-model and --restart load strictly and are checked before any data is read: what a
checkpoint cannot give exactly is an error that names the key (issue 13, item 1)."""
import re

import pytest
import torch

from dpx.cli.main import main
from dpx.io import load_model
from tests.model.test_physics import random_frame
from tests.train.conftest import multi_input, small_input, write


@pytest.fixture(scope="module")
def single_ckpt(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("single")
    cfg = small_input(dataset, steps=3, save_ckpt=str(run / "model.ckpt"),
                      disp_file=str(run / "lcurve.out"))
    cfg["model"]["descriptor"]["sel"] = [12, 24]
    assert main(["train", str(write(run / "in.json", cfg)), "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-3.pt"


@pytest.fixture(scope="module")
def multi_ckpt(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("multi")
    cfg = multi_input(dataset, steps=3)
    cfg["training"].update(save_ckpt=str(run / "model.ckpt"), disp_file=str(run / "lcurve.out"))
    assert main(["train", str(write(run / "in.json", cfg)), "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-3.pt"


def train(run_dir, cfg, *options, capsys=None):
    rc = main(["train", str(write(run_dir / "in.json", cfg)), *map(str, options)])
    err = capsys.readouterr().err if capsys else ""
    return rc, err


def single(dataset, **change):
    cfg = small_input(dataset, steps=0)
    cfg["model"]["descriptor"]["sel"] = [12, 24]
    for key, value in change.items():
        part, _, field = key.partition("__")
        (cfg["model"][part] if field else cfg["model"]).update({field or part: value})
    if cfg["model"]["descriptor"]["type"] == "se_e2_r":
        cfg["model"]["descriptor"].pop("axis_neuron")
    return cfg


def test_init_model_takes_weights_and_statistics(dataset, run_dir, single_ckpt):
    """Not davg 0, dstd 1, out_bias 0: the checkpoint's model, exactly."""
    assert train(run_dir, single(dataset), "--init-model", single_ckpt)[0] == 0
    ours, _ = load_model(run_dir / "model.ckpt-0.pt")
    theirs, _ = load_model(single_ckpt)
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    assert float(ours.atomic_model.descriptor.sea.stddev.min()) != 1.0


def test_init_model_maps_a_reordered_type_map_by_element(dataset, run_dir, single_ckpt):
    cfg = single(dataset, type_map=["H", "O"])
    cfg["model"]["descriptor"]["sel"] = [24, 12]
    assert train(run_dir, cfg, "--init-model", single_ckpt)[0] == 0
    ours, _ = load_model(run_dir / "model.ckpt-0.pt")
    theirs, _ = load_model(single_ckpt)
    coord, atype, box = random_frame(natoms=12, box_len=6.0)  # types 0 = O, 1 = H
    a = theirs(coord, atype, box)
    b = ours(coord, 1 - atype, box)  # the same atoms in the new type indices
    for key in ("energy", "force", "virial"):
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-12)


@pytest.mark.parametrize("change, match", [
    ({"descriptor__rcut": 3.5}, r"model/descriptor/rcut: 3.5 differs from the checkpoint's"),
    ({"descriptor__neuron": [4, 6]}, r"model/descriptor/neuron: \[4, 6\] differs"),
    ({"descriptor__sel": [16, 24]}, r"model/descriptor/sel: \[16, 24\] differs"),
    ({"fitting_net__neuron": [8, 4]}, r"model/fitting_net/neuron: \[8, 4\] differs"),
    ({"descriptor__type": "se_e2_r"}, r"model/descriptor/type: se_e2_r differs"),
    ({"type_map": ["O", "H", "C"]}, r"model/type_map: element\(s\) \['C'\] are not in the "
                                    r"checkpoint"),
    ({"type_map": ["O"]}, r"model/type_map: \['O'\] lacks element\(s\) \['H'\]"),
])
def test_init_model_mismatch_names_the_key(dataset, run_dir, single_ckpt, capsys, change, match):
    cfg = single(dataset, **change)
    if "type_map" in change and len(change["type_map"]) != 2:
        cfg["model"]["descriptor"]["sel"] = "auto"
    rc, err = train(run_dir, cfg, "--init-model", single_ckpt, capsys=capsys)
    assert rc == 2
    assert re.search(match, err), err


def test_init_model_from_multitask_needs_a_branch(dataset, run_dir, multi_ckpt, capsys):
    cfg = small_input(dataset, steps=0)
    rc, err = train(run_dir, cfg, "--init-model", multi_ckpt, capsys=capsys)
    assert rc == 2 and "choose the branch to start from with --model-branch" in err
    assert "small, large" in err
    assert train(run_dir, cfg, "--init-model", multi_ckpt, "--model-branch", "large",
                 "--skip-neighbor-stat")[0] == 0
    ours, _ = load_model(run_dir / "model.ckpt-0.pt")
    large, _ = load_model(multi_ckpt, "large")
    for k, v in large.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k


def test_init_model_checks_branches(dataset, run_dir, single_ckpt, multi_ckpt, capsys):
    rc, err = train(run_dir, multi_input(dataset, steps=0), "--init-model", single_ckpt,
                    capsys=capsys)
    assert rc == 2 and "single-task checkpoint cannot continue a multi-task input" in err
    assert "--finetune" in err
    cfg = multi_input(dataset, steps=0)
    cfg["model"]["model_dict"]["third"] = cfg["model"]["model_dict"]["small"]
    cfg["loss_dict"]["third"] = cfg["loss_dict"]["small"]
    cfg["training"]["data_dict"]["third"] = cfg["training"]["data_dict"]["small"]
    rc, err = train(run_dir, cfg, "--init-model", multi_ckpt, capsys=capsys)
    assert rc == 2 and "model/model_dict/third: --init-model" in err and "no branch" in err


def test_frozen_file_is_refused_with_what_to_give(dataset, run_dir, single_ckpt, capsys):
    assert main(["freeze", "-c", str(single_ckpt), "-o", str(run_dir / "m.pth")]) == 0
    for option in ("--init-model", "--restart", "--finetune"):  # DP-GEN: --finetune old/init.pth
        rc, err = train(run_dir, single(dataset), option, run_dir / "m.pth", capsys=capsys)
        assert rc == 2 and f"{option} {run_dir / 'm.pth'}: a frozen model (.pth) holds no " \
            "training state" in err
        assert "m.pth.pt" not in err


def test_restart_checks_before_reading_data(dataset, run_dir, single_ckpt, capsys):
    """A changed model is refused by the checkpoint check, before the (here missing) data
    would be read."""
    cfg = single(dataset, descriptor__rcut=3.5)
    cfg["training"]["training_data"]["systems"] = ["no/such/system"]
    rc, err = train(run_dir, cfg, "--restart", single_ckpt, capsys=capsys)
    assert rc == 2 and "model/descriptor/rcut: 3.5 differs from the checkpoint's 4.0" in err
    assert "--restart continues a run with the same model" in err


@pytest.mark.parametrize("change, match", [
    ({"type_map": ["H", "O"]}, r"model/type_map: \['H', 'O'\] differs"),
    ({"descriptor__axis_neuron": 2}, r"model/descriptor/axis_neuron: 2 differs"),
    ({"fitting_net__trainable": False}, r"model/fitting_net/trainable: False differs"),
    ({"pair_exclude_types": [[0, 1]]}, r"model/pair_exclude_types"),
])
def test_restart_refuses_another_model(dataset, run_dir, single_ckpt, capsys, change, match):
    cfg = single(dataset, **change)
    cfg["training"]["numb_steps"] = 4
    rc, err = train(run_dir, cfg, "--restart", single_ckpt, capsys=capsys)
    assert rc == 2 and re.search(match, err), err


def test_restart_refuses_a_multitask_checkpoint_for_a_single_input(dataset, run_dir, multi_ckpt,
                                                                   capsys):
    rc, err = train(run_dir, small_input(dataset, steps=4), "--restart", multi_ckpt,
                    capsys=capsys)
    assert rc == 2 and "multi-task checkpoint cannot continue a single-task input" in err


def test_restart_with_sel_auto_takes_the_checkpoints(dataset, run_dir, single_ckpt):
    cfg = small_input(dataset, steps=4)  # sel "auto"
    assert train(run_dir, cfg, "--restart", single_ckpt, "--overwrite")[0] == 0
    model, params = load_model(run_dir / "model.ckpt-4.pt")
    assert params["descriptor"]["sel"] == [12, 24]
