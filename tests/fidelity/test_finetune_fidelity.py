"""`train --finetune` of dpx against DeePMD-kit 3.2.0 from the same dpx multi-task checkpoint:
the same weights and the same changed (or set) out_bias (deepmd-compat §12)."""
import numpy as np
import pytest
import torch

from dpx.cli.main import main
from tests.fidelity.conftest import checkpoint_tensors, dp, multi_input, single_input, write_json

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
                 "-o", str(out / "out.json")]) == 0
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
