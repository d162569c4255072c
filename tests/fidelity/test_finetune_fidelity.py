"""`train --finetune` of dpx against DeePMD-kit 3.2.0 from the same dpx multi-task checkpoint:
the same weights and the same changed (or set) out_bias (deepmd-compat §12)."""
import numpy as np
import pytest
import torch

from dpx.cli.main import main
from tests.fidelity.conftest import (
    PARAMS,
    checkpoint_tensors,
    dp,
    multi_input,
    single_input,
    write_json,
)

pytestmark = pytest.mark.slow
TOL = 1e-10


@pytest.fixture(scope="module")
def dpx_multi(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dpx_multi_ft")
    cfg = multi_input(toy_data)
    cfg["training"].update(save_ckpt=str(run / "model.ckpt"), disp_file=str(run / "lcurve.out"))
    assert main(["train", str(write_json(run / "input.json", cfg)),
                 "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-3.pt"


@pytest.fixture(scope="module")
def dp_multi(tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp("dp_multi_ft")
    dp("--pt", "train", write_json(run / "input.json", multi_input(toy_data)), cwd=run)
    return run / "model.ckpt-3.pt"


def zero_step_input(toy_data, path, **training):
    cfg = single_input(toy_data)
    cfg["training"].update(numb_steps=0, **training)
    return write_json(path, cfg)


def tensors(path) -> dict:
    return checkpoint_tensors(path, keep_empty=False)


@pytest.mark.parametrize("source,branch", [("dpx", "water_1"), ("dpx", "RANDOM"),
                                           ("dp", "water_2")])
def test_finetune_equals_deepmd(request, toy_data, tmp_path, source, branch):
    """Both codes finetune the same checkpoint (dpx's, or DeePMD-kit's own)."""
    pretrained_path = request.getfixturevalue(f"{source}_multi")
    (tmp_path / "dp").mkdir()
    (tmp_path / "dpx").mkdir()
    dp("--pt", "train", zero_step_input(toy_data, tmp_path / "dp" / "in.json"), "--finetune",
       pretrained_path, "--model-branch", branch, "--skip-neighbor-stat", cwd=tmp_path / "dp")
    out = tmp_path / "dpx"
    cfg = zero_step_input(toy_data, out / "in.json", save_ckpt=str(out / "model.ckpt"),
                          disp_file=str(out / "lcurve.out"))
    theirs = tensors(tmp_path / "dp" / "model.ckpt-0.pt")
    assert main(["train", str(cfg), "--finetune", str(pretrained_path), "--model-branch", branch,
                 "--skip-neighbor-stat", "-o", str(out / "out.json")]) == 0
    ours = tensors(tmp_path / "dpx" / "model.ckpt-0.pt")
    bias = "model.Default.atomic_model.out_bias"
    pretrained = tensors(pretrained_path)
    if branch != "RANDOM":
        assert not torch.equal(pretrained[f"model.{branch}.atomic_model.out_bias"], ours[bias])
    compared = []
    statistics = ("out_bias", "out_std")
    for key, ref in theirs.items():
        if branch == "RANDOM" and ".descriptor." not in key and not key.endswith(statistics):
            continue  # both draw a fresh fitting net, each from its own generator
        assert key in ours, key
        np.testing.assert_allclose(ours[key].numpy(), ref.numpy(), rtol=TOL, atol=1e-12,
                                   err_msg=key)
        compared.append(key)
    assert bias in compared and any(".descriptor.sea.mean" in k for k in compared)
    assert any("fitting_net.filter_layers" in k for k in compared) == (branch != "RANDOM")


@pytest.fixture(scope="module")
def dpx_single_b(tmp_path_factory, toy_data):
    """A single-task checkpoint trained on sys_b alone (--init-model's source)."""
    run = tmp_path_factory.mktemp("dpx_single_b")
    cfg = single_input(toy_data)
    cfg["training"]["training_data"]["systems"] = [str(toy_data / "sys_b")]
    cfg["training"].update(numb_steps=1, save_freq=1, save_ckpt=str(run / "model.ckpt"),
                           disp_file=str(run / "lcurve.out"))
    assert main(["train", str(write_json(run / "input.json", cfg)),
                 "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-1.pt"


@pytest.mark.parametrize("option", ["--finetune", "--init-model"])
@pytest.mark.parametrize("skip", [False, True], ids=["scanned", "skip-neighbor-stat"])
def test_min_nbor_dist_as_deepmd(request, toy_data, tmp_path, option, skip):
    """A start from a checkpoint records the new data's closest pair (DeePMD-kit scans it),
    or keeps the checkpoint's with --skip-neighbor-stat. The source branch was trained on
    sys_b alone and the new run reads sys_a alone, so the two values differ."""
    if option == "--finetune":
        source, flags = request.getfixturevalue("dpx_multi"), ["--model-branch", "water_2"]
        source_key = "model.water_2.min_nbor_dist"
    else:
        source, flags = request.getfixturevalue("dpx_single_b"), []
        source_key = "model.Default.min_nbor_dist"
    flags = [option, str(source), *flags] + (["--skip-neighbor-stat"] if skip else [])
    got = {}
    for tool in ("dp", "dpx"):
        run = tmp_path / tool
        run.mkdir()
        cfg = single_input(toy_data)
        cfg["training"].update(numb_steps=0, save_ckpt=str(run / "model.ckpt"),
                               disp_file=str(run / "lcurve.out"))
        cfg["training"]["training_data"]["systems"] = [str(toy_data / "sys_a")]
        path = write_json(run / "in.json", cfg)
        if tool == "dp":
            dp("--pt", "train", path, *flags, cwd=run)
        else:
            assert main(["train", str(path), *flags, "-o", str(run / "out.json")]) == 0
        got[tool] = float(tensors(run / "model.ckpt-0.pt")["model.Default.min_nbor_dist"])
    assert got["dpx"] == pytest.approx(got["dp"], rel=1e-12, abs=0)
    assert (got["dpx"] == float(tensors(source)[source_key])) == skip


def test_random_fitting_parameter_statistics_as_deepmd(toy_data, param_data, tmp_path):
    """A new (RANDOM) fitting takes its fparam/aparam statistics from the new data with
    DeePMD-kit's set-by-statistic, std floored at the fixed 1e-2 whatever the run's
    data_stat_protect (here above the std of the first fparam column, about 0.3)."""
    cfg = multi_input(param_data)
    for branch in cfg["model"]["model_dict"].values():
        branch["fitting_net"].update(PARAMS)
    pre = tmp_path / "pre"
    cfg["training"].update(save_ckpt=str(pre / "model.ckpt"), disp_file=str(pre / "lcurve.out"))
    pre.mkdir()
    assert main(["train", str(write_json(pre / "in.json", cfg)), "-o",
                 str(pre / "out.json")]) == 0
    got = {}
    for tool in ("dp", "dpx"):
        run = tmp_path / tool
        run.mkdir()
        cfg = single_input(param_data)
        cfg["model"]["fitting_net"].update(PARAMS)
        cfg["model"]["data_stat_protect"] = 1.0
        cfg["training"].update(numb_steps=0, save_ckpt=str(run / "model.ckpt"),
                               disp_file=str(run / "lcurve.out"))
        flags = ["--finetune", pre / "model.ckpt-3.pt", "--model-branch", "RANDOM",
                 "--skip-neighbor-stat"]
        path = write_json(run / "in.json", cfg)
        if tool == "dp":
            dp("--pt", "train", path, *flags, cwd=run)
        else:
            assert main(["train", str(path), *map(str, flags), "-o", str(run / "o.json")]) == 0
        got[tool] = tensors(run / "model.ckpt-0.pt")
    keys = [f"model.Default.atomic_model.{k}" for k in
            ("out_bias", "fitting_net.fparam_avg", "fitting_net.fparam_inv_std",
             "fitting_net.aparam_avg", "fitting_net.aparam_inv_std")]
    for key in keys:
        np.testing.assert_allclose(got["dpx"][key].numpy(), got["dp"][key].numpy(), rtol=TOL,
                                   atol=1e-12, err_msg=key)
