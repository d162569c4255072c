"""DPA-1 in training: `dpx train` and an exact --restart, multi-task sharing at level 0 (the
whole descriptor) and 1 (the type embedding only), --finetune with a reordered type map and
with an element the pretrained model never saw (deepmd-dpa1 §9, §10). DeePMD-kit's numbers:
tests/fidelity/test_dpa1_fidelity.py."""
import math
import shutil

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from dpx.config import parse_input
from dpx.data import load_systems
from dpx.infer.evaluate import evaluate
from dpx.io import load_model
from dpx.train.startup import Finetune, Fresh, build_trainer
from tests.train.conftest import multi_input, small_input, write
from tests.train.test_finetune import structure

# tebd_dim 2 == ntypes of the water data: the type embedding's residual adds the one-hot, so
# a type-map change must fold it out and back in (deepmd-dpa1 §4, §10.3)
DPA1 = {"type": "dpa1", "sel": "auto", "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8],
        "axis_neuron": 4, "tebd_dim": 2, "attn": 8, "attn_layer": 1,
        "tebd_input_mode": "strip", "set_davg_zero": False, "seed": 1}
TEBD = "atomic_model.descriptor.type_embedding.embedding.embedding_net.layers.0."


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Toy models: on a busy 2-core machine a second OpenMP thread only waits on the first."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def dpa1_input(data, steps=4, **training) -> dict:
    cfg = small_input(data, steps=steps, **training)
    cfg["model"]["descriptor"] = dict(DPA1)
    return cfg


def type_rows(model) -> torch.Tensor:
    """e(t) [ntypes, td] by deepmd-dpa1 §4 from the state dict: one_hot W (+ b) + the
    residual (the one-hot when td == ntypes, twice when td == 2 ntypes)."""
    sd = model.state_dict()
    w = sd[TEBD + "matrix"]
    nt, td = w.shape
    eye = torch.eye(nt, dtype=w.dtype)
    res = eye if td == nt else torch.cat([eye, eye], 1) if td == 2 * nt else torch.zeros_like(w)
    return w + res + sd.get(TEBD + "bias", torch.zeros(td, dtype=w.dtype))


def saved(path):
    return torch.load(path, weights_only=False)


# ---------------------------------------------------------------- train and restart
def test_train_and_restart_exactly(dataset, run_dir):
    """4 steps in one go equal 2 steps, a restart from the step-2 checkpoint and 2 more, bit
    for bit (weights, Adam moments, the learning curve)."""
    for d in ("a", "b"):
        (run_dir / d).mkdir()
    cfg = dpa1_input(dataset, steps=4, save_freq=2, save_ckpt="a/model.ckpt",
                     disp_file="a/lcurve.out")
    assert main(["train", str(write(run_dir / "a.json", cfg))]) == 0
    cfg = dpa1_input(dataset, steps=4, save_freq=2, save_ckpt="b/model.ckpt",
                     disp_file="b/lcurve.out")
    # the resolved sel: a restart with sel "auto" fails (test_restart_with_sel_auto)
    resolved = saved(run_dir / "a/model.ckpt-2.pt")["model"]["_extra_state"]["model_params"]
    cfg["model"]["descriptor"]["sel"] = resolved["descriptor"]["sel"]
    assert main(["train", str(write(run_dir / "b.json", cfg)),
                 "--restart", "a/model.ckpt-2.pt"]) == 0
    a, b = saved(run_dir / "a/model.ckpt-4.pt"), saved(run_dir / "b/model.ckpt-4.pt")
    for k, v in a["model"].items():
        if k != "_extra_state":
            assert torch.equal(v, b["model"][k]), k
    for i, state in a["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[key], b["optimizer"]["state"][i][key]), (i, key)
    la = (run_dir / "a/lcurve.out").read_text().splitlines()
    lb = (run_dir / "b/lcurve.out").read_text().splitlines()
    assert la[-1] == lb[-1] and all(math.isfinite(float(x)) for x in la[-1].split())
    # DeePMD-kit's layout: the se_atten block's statistics, an integer sel (resolved auto)
    sd = a["model"]
    mean = sd["model.Default.atomic_model.descriptor.se_atten.mean"]
    assert mean.shape[0] == 2 and float(mean[..., 0].abs().min()) > 0  # set_davg_zero false
    sel = sd["_extra_state"]["model_params"]["descriptor"]["sel"]
    assert isinstance(sel, int) and mean.shape[1] == sel
    first = saved(run_dir / "a/model.ckpt-2.pt")["model"]
    assert not torch.equal(first["model.Default." + TEBD + "matrix"],
                           sd["model.Default." + TEBD + "matrix"])  # the embedding trains


def test_restart_with_sel_auto(dataset, run_dir):
    cfg = dpa1_input(dataset, steps=1, save_freq=1)
    path = write(run_dir / "in.json", cfg)
    assert main(["train", str(path)]) == 0
    cfg["training"]["numb_steps"] = 2
    assert main(["train", str(write(run_dir / "in2.json", cfg)), "--restart",
                 "model.ckpt-1.pt"]) == 0


# ---------------------------------------------------------------- multi-task
def multi_trainer(dataset, run_dir, level):
    cfg = multi_input(dataset)
    cfg["model"]["shared_dict"]["sea_descriptor"] = dict(DPA1)
    if level:
        cfg["model"]["model_dict"]["large"]["descriptor"] = f"sea_descriptor:{level}"
    return build_trainer(parse_input(cfg, base_dir=run_dir), Fresh())


def descriptors(tr):
    return (tr.branches["small"].model.atomic_model.descriptor,
            tr.branches["large"].model.atomic_model.descriptor)


def test_multitask_level_0_shares_the_descriptor(dataset, run_dir):
    tr = multi_trainer(dataset, run_dir, 0)
    small, large = descriptors(tr)
    assert small is large and small.se_atten.mean is large.se_atten.mean
    ids = [id(p) for g in tr.optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))


def test_multitask_level_1_shares_the_type_embedding_only(dataset, run_dir):
    tr = multi_trainer(dataset, run_dir, 1)
    small, large = descriptors(tr)
    assert small is not large
    assert small.type_embedding is large.type_embedding
    w = small.type_embedding.embedding.embedding_net.layers[0].matrix
    assert w is large.type_embedding.embedding.embedding_net.layers[0].matrix
    a, b = small.se_atten, large.se_atten
    assert a is not b
    for name in ("filter_layers", "filter_layers_strip", "dpa1_attention", "mean", "stddev"):
        assert getattr(a, name) is not getattr(b, name), name
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert pa is not pb
    # each branch's statistics from its own data
    assert not torch.equal(a.mean, b.mean) and not torch.equal(a.stddev, b.stddev)
    ids = [id(p) for g in tr.optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    # a step of one branch moves the shared embedding, not the other branch's block
    before_w, before_b = w.detach().clone(), {k: v.clone() for k, v in b.state_dict().items()}
    tr.step("small", 1e-3)
    assert not torch.equal(w, before_w)
    for k, v in b.state_dict().items():
        assert torch.equal(v, before_b[k]), k


# ---------------------------------------------------------------- finetune
@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory):
    """A single-task DPA-1 checkpoint (type_map O, H) after 2 steps."""
    root = tmp_path_factory.mktemp("dpa1_pretrained")
    cfg = dpa1_input(dataset, steps=2, save_ckpt=str(root / "model.ckpt"),
                     disp_file=str(root / "lcurve.out"))
    build_trainer(parse_input(cfg, base_dir=root)).run()
    return root / "model.ckpt.pt"


@pytest.fixture(scope="module")
def carbon_data(dataset, tmp_path_factory):
    """The 24-atom water system with every fourth hydrogen called C (type_map O H C)."""
    root = tmp_path_factory.mktemp("carbon")
    path = root / "wc_024"
    shutil.copytree(dataset / "train" / "water_024", path)
    atype = [int(x) for x in (path / "type.raw").read_text().split()]
    hydrogens = [i for i, t in enumerate(atype) if t == 1]
    for i in hydrogens[::4]:
        atype[i] = 2
    (path / "type.raw").write_text("\n".join(map(str, atype)) + "\n")
    (path / "type_map.raw").write_text("O\nH\nC\n")
    return path


def finetuned(dataset, run_dir, ckpt, type_map, systems=None, steps=0):
    cfg = dpa1_input(dataset, steps=steps)
    cfg["model"]["type_map"] = type_map
    if systems is not None:
        cfg["training"]["training_data"]["systems"] = [str(systems)]
    return build_trainer(parse_input(cfg, base_dir=run_dir), Finetune(str(ckpt)),
                         overwrite=True)


def test_freeze_compress_and_test_a_checkpoint(dataset, run_dir, pretrained, capsys):
    """`dpx freeze`, `dpx compress` (strip with attention: the type embedding only, exact)
    and `dpx test` on a DPA-1 checkpoint."""
    assert main(["freeze", "-c", str(pretrained), "-o", "f.pth"]) == 0
    assert main(["compress", "-i", str(pretrained), "-o", "c.pth"]) == 0
    (system,) = load_systems(str(dataset / "valid"), type_map=["O", "H"], sort_atoms=False)
    ref = evaluate(load_model(pretrained)[0], system.coord, system.atype, system.box,
                   atomic_virial=True)
    for name in ("f.pth", "c.pth"):
        out = evaluate(load_model(run_dir / name)[0], system.coord, system.atype, system.box,
                       atomic_virial=True)
        for key in ref:
            assert np.abs(out[key] - ref[key]).max() <= 1e-12 * max(1, np.abs(ref[key]).max())
    capsys.readouterr()
    assert main(["test", "-m", "c.pth", "-s", str(dataset / "valid"), "-n", "2"]) == 0
    assert "# number of test data : 2" in capsys.readouterr().err


def test_finetune_with_a_reordered_type_map(dataset, run_dir, pretrained):
    """["H", "O"] from ["O", "H"] before any step: the same function up to the per-type bias
    (which finetune refits): the same forces, the same energies once each model's out_bias
    is taken off, the same type-embedding rows per element."""
    src, _ = load_model(pretrained)
    model = finetuned(dataset, run_dir, pretrained, ["H", "O"]).branches["Default"].model
    names = ["O", "H", "H"] * 5
    a = src(*structure(["O", "H"], names))
    b = model(*structure(["H", "O"], names))
    torch.testing.assert_close(b["force"], a["force"], rtol=0, atol=1e-10)
    torch.testing.assert_close(b["virial"], a["virial"], rtol=0, atol=1e-10)
    bias_a = src.atomic_model.out_bias[0, structure(["O", "H"], names)[1][0], 0]
    bias_b = model.atomic_model.out_bias[0, structure(["H", "O"], names)[1][0], 0]
    torch.testing.assert_close(b["atom_energy"][0, :, 0] - bias_b,
                               a["atom_energy"][0, :, 0] - bias_a, rtol=0, atol=1e-10)
    assert not torch.equal(bias_a, bias_b)  # the bias was refitted on the data
    torch.testing.assert_close(type_rows(model), type_rows(src)[[1, 0]], rtol=0, atol=1e-15)
    # the residual rule made the stored matrix differ from a plain row swap
    w_src, w_new = src.state_dict()[TEBD + "matrix"], model.state_dict()[TEBD + "matrix"]
    assert not torch.allclose(w_new, w_src[[1, 0]])
    block, theirs = model.atomic_model.descriptor.se_atten, src.atomic_model.descriptor.se_atten
    assert torch.equal(block.mean, theirs.mean[[1, 0]])
    assert torch.equal(block.stddev, theirs.stddev[[1, 0]])


def test_finetune_with_a_new_element(dataset, run_dir, pretrained, carbon_data):
    """C is not in the pretrained model: its type-embedding row is new (random in [0, 1), as
    DeePMD-kit draws it), its davg/dstd row comes from the new data (the row a fresh model
    computes on it), O and H keep the pretrained rows, nets and attention; a structure
    without C gets the pretrained forces. Then it trains."""
    src, _ = load_model(pretrained)
    tr = finetuned(dataset, run_dir, pretrained, ["O", "H", "C"], carbon_data, steps=2)
    model = tr.branches["Default"].model
    rows, old = type_rows(model), type_rows(src)
    torch.testing.assert_close(rows[:2], old, rtol=0, atol=1e-15)
    w = model.state_dict()[TEBD + "matrix"]
    assert bool(((w[2] >= 0) & (w[2] < 1)).all())  # td 2 != ntypes 3: no residual now
    assert not any(torch.allclose(rows[2], r) for r in old)
    fresh_cfg = dpa1_input(dataset, steps=0, save_ckpt="fresh", disp_file="fresh.out")
    fresh_cfg["model"]["type_map"] = ["O", "H", "C"]
    fresh_cfg["training"]["training_data"]["systems"] = [str(carbon_data)]
    fresh_cfg["model"]["descriptor"]["sel"] = model.cfg.descriptor.sel
    fresh = build_trainer(parse_input(fresh_cfg, base_dir=run_dir), Fresh(), overwrite=True)
    mine = model.atomic_model.descriptor.se_atten
    new_data = fresh.branches["Default"].model.atomic_model.descriptor.se_atten
    theirs = src.atomic_model.descriptor.se_atten
    for name in ("mean", "stddev"):
        torch.testing.assert_close(getattr(mine, name)[2], getattr(new_data, name)[2],
                                   rtol=1e-14, atol=0)
        assert torch.equal(getattr(mine, name)[:2], getattr(theirs, name)), name
        assert not torch.equal(getattr(new_data, name)[:2], getattr(theirs, name)), name
    for part in ("filter_layers", "filter_layers_strip", "dpa1_attention"):
        for (k, v), (k2, v2) in zip(getattr(mine, part).state_dict().items(),
                                    getattr(theirs, part).state_dict().items()):
            assert k == k2 and torch.equal(v, v2), (part, k)
    names = ["O", "H", "H"] * 4
    a = src(*structure(["O", "H"], names))
    b = model(*structure(["O", "H", "C"], names))
    torch.testing.assert_close(b["force"], a["force"], rtol=0, atol=1e-10)
    assert float(model.atomic_model.out_bias[0, 2, 0]) != 0.0  # C's bias from the new data
    tr.run()
    lines = (run_dir / "lcurve.out").read_text().splitlines()
    assert int(lines[-1].split()[0]) == 2
    assert all(math.isfinite(float(x)) for x in lines[-1].split())
    moved = saved(run_dir / "model.ckpt-2.pt")["model"]["model.Default." + TEBD + "matrix"]
    assert moved.shape == (3, 2) and bool(np.isfinite(moved.numpy()).all())


def test_finetune_of_a_typed_descriptor_refuses_a_new_element(dataset, run_dir):
    cfg = small_input(dataset, steps=0)  # se_e2_a
    assert main(["train", str(write(run_dir / "se_a.json", cfg))]) == 0
    cfg["model"]["type_map"] = ["O", "H", "C"]
    with pytest.raises(ValueError, match=r"type_map: element\(s\) \['C'\] are not in the "
                                         r"pretrained model.*se_e2_a descriptor has no type "
                                         r"embedding"):
        build_trainer(parse_input(cfg, base_dir=run_dir), Finetune("model.ckpt-0.pt"),
                      overwrite=True)
