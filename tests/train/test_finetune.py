"""`dpx train --finetune`: rules, weight transfer (with type_map remapping), the energy bias
changed or set by statistics, errors (deepmd-compat §12)."""
import numpy as np
import pytest
import torch

from dpx.cli.main import main
from dpx.config import EnergyFittingConfig, ModelConfig, SeAConfig, parse_input
from dpx.io import load_model
from dpx.model.energy import EnergyModel
from dpx.train import finetune as ft
from dpx.train.startup import Finetune, build_trainer
from tests.train.conftest import multi_input, small_input, write


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory):
    """A two-branch (small, large) checkpoint after 2 steps of multi-task training."""
    root = tmp_path_factory.mktemp("pretrained")
    cfg = multi_input(dataset, steps=2)
    cfg["training"].update(save_ckpt=str(root / "model.ckpt"), disp_file=str(root / "lcurve.out"))
    build_trainer(parse_input(cfg, base_dir=root)).run()
    return root / "model.ckpt.pt"


def finetune(dataset, run_dir, ckpt, branch=None, mutate=None, **kw):
    cfg = small_input(dataset, steps=0)
    if mutate:
        mutate(cfg)
    return build_trainer(parse_input(cfg, base_dir=run_dir), Finetune(str(ckpt), branch, **kw),
                         overwrite=True)


def weights(model, skip=("out_bias", "out_std", "min_nbor_dist")):
    """What the pretrained model hands over (min_nbor_dist is the new data's: tests/fidelity)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith(skip)}


def frame_energies_and_counts(trainer, model, ntypes):
    """Independent of dpx.model.stat: labels, counts by np.bincount, model energies."""
    frames = trainer.branches["Default"].data.stat_frames(trainer.cfg.branches["Default"].model
                                                       .data_stat_nbatch)
    e, a, pred = [], [], []
    for f in frames:
        atype = f["atype"].numpy()
        e.append(f["energy"].numpy().reshape(-1))
        a.append(np.stack([np.bincount(row, minlength=ntypes) for row in atype]))
        pred.append(model(f["coord"], f["atype"], f["box"])["energy"].detach().numpy().reshape(-1))
    return np.concatenate(e), np.concatenate(a).astype(float), np.concatenate(pred)


def test_branch_weights_copied_and_bias_changed_by_statistic(dataset, run_dir, pretrained):
    tr = finetune(dataset, run_dir, pretrained, "large")
    mine = tr.branches["Default"].model
    src, _ = load_model(pretrained, "large")
    theirs = weights(src)
    for k, v in weights(mine).items():
        assert torch.equal(v, theirs[k]), k
    e, a, pred = frame_energies_and_counts(tr, src, 2)
    delta = np.linalg.lstsq(a, e - pred, rcond=None)[0]
    want = src.atomic_model.out_bias[0, :, 0].numpy() + delta
    np.testing.assert_allclose(mine.atomic_model.out_bias[0, :, 0].numpy(), want, rtol=0,
                               atol=1e-10)
    assert np.abs(delta).max() > 1e-6  # the new data did move the bias


def test_change_by_statistic_is_idempotent_and_single_task_source_works(dataset, run_dir,
                                                                        pretrained):
    first = finetune(dataset, run_dir, pretrained, "small")
    first.run()  # numb_steps 0: writes model.ckpt-0.pt, weights untouched
    bias1 = first.branches["Default"].model.atomic_model.out_bias.clone()
    second = finetune(dataset, run_dir, run_dir / "model.ckpt-0.pt")  # single-task source
    model2 = second.branches["Default"].model
    torch.testing.assert_close(model2.atomic_model.out_bias, bias1, rtol=0, atol=1e-9)
    for k, v in weights(first.branches["Default"].model).items():
        assert torch.equal(v, weights(model2)[k]), k


def test_random_keeps_descriptor_and_sets_bias(dataset, run_dir, pretrained):
    tr = finetune(dataset, run_dir, pretrained, "RANDOM")
    mine = tr.branches["Default"].model
    src, _ = load_model(pretrained, "small")  # RANDOM takes the first branch's descriptor
    theirs = weights(src)
    for k, v in weights(mine).items():
        if ".descriptor." in f".{k}":
            assert torch.equal(v, theirs[k]), k
        elif "filter_layers" in k and v.numel() > 1:
            assert not torch.equal(v, theirs[k]), k  # a fresh fitting net
    e, a, _ = frame_energies_and_counts(tr, src, 2)
    want = np.linalg.lstsq(a, e, rcond=None)[0]
    np.testing.assert_allclose(mine.atomic_model.out_bias[0, :, 0].numpy(), want, rtol=0,
                               atol=1e-10)


def test_finetuned_checkpoint_restarts(dataset, run_dir, pretrained):
    cfg = small_input(dataset, steps=2, save_freq=1)
    path = write(run_dir / "ft.json", cfg)
    assert main(["train", str(path), "--finetune", str(pretrained), "--model-branch",
                 "small"]) == 0
    state = torch.load(run_dir / "model.ckpt-2.pt", weights_only=False)
    assert state["model"]["_extra_state"]["train_infos"]["step"] == 1
    assert "model.Default.atomic_model.out_bias" in state["model"]
    cfg["training"]["numb_steps"] = 3
    assert main(["train", str(write(run_dir / "ft3.json", cfg)), "--restart",
                 "model.ckpt-2.pt"]) == 0


def test_multitask_input_resumes_and_finetunes_branches(dataset, run_dir, pretrained):
    """§12.1: a branch with finetune_head takes that branch (bias changed); a branch named as
    in the pretrained model without finetune_head is copied as is."""
    cfg = multi_input(dataset, steps=0)
    cfg["model"]["model_dict"]["small"]["finetune_head"] = "large"
    tr = build_trainer(parse_input(cfg, base_dir=run_dir), Finetune(str(pretrained)))
    large, _ = load_model(pretrained, "large")
    got_large = tr.branches["large"].model.atomic_model.out_bias
    assert torch.equal(got_large, large.atomic_model.out_bias)  # resumed
    small_fit = tr.branches["small"].model.atomic_model.fitting_net.state_dict()
    for k, v in large.atomic_model.fitting_net.state_dict().items():
        assert torch.equal(small_fit[k], v), k
    assert not torch.equal(tr.branches["small"].model.atomic_model.out_bias,
                           large.atomic_model.out_bias)
    with pytest.raises(ValueError, match="finetune_head"):
        build_trainer(parse_input(cfg, base_dir=run_dir), Finetune(str(pretrained), "small"))


# ---------------------------------------------------------------- errors
def test_unknown_branch_lists_the_branches(dataset, run_dir, pretrained):
    with pytest.raises(ValueError, match="no such branch.*small, large"):
        finetune(dataset, run_dir, pretrained, "water_9")


def test_unseen_type_is_an_error(dataset, run_dir, pretrained):
    def add_carbon(cfg):
        cfg["model"]["type_map"] = ["O", "H", "C"]
    with pytest.raises(ValueError, match=r"type_map: element\(s\) \['C'\]"):
        finetune(dataset, run_dir, pretrained, "small", add_carbon)


def test_shape_mismatch_names_the_key(dataset, run_dir, pretrained):
    def wider(cfg):
        cfg["model"]["descriptor"]["neuron"] = [4, 16]
    with pytest.raises(ValueError, match="model/descriptor/neuron"):
        finetune(dataset, run_dir, pretrained, "small", wider)


def test_use_pretrain_script_takes_the_pretrained_sections(dataset, run_dir, pretrained):
    def other(cfg):
        cfg["model"]["descriptor"].update(neuron=[4, 16], exclude_types=[[0, 0]])
        cfg["model"]["fitting_net"].update(neuron=[3], trainable=False)
        cfg["model"]["type_map"] = ["H", "O"]
    tr = finetune(dataset, run_dir, pretrained, "small", other, use_pretrain_script=True)
    model = tr.cfg.branches["Default"].model
    assert model.descriptor.neuron == [4, 8] and model.descriptor.exclude_types == []
    assert model.fitting_net.neuron == [8, 8] and model.fitting_net.trainable is False
    src, _ = load_model(pretrained, "small")
    assert torch.equal(tr.branches["Default"].model.atomic_model.fitting_net.filter_layers
                       .networks[1].layers[0].matrix,
                       src.atomic_model.fitting_net.filter_layers.networks[0].layers[0].matrix)


def test_cli_errors(dataset, run_dir, pretrained, capsys):
    path = str(write(run_dir / "ft.json", small_input(dataset, steps=0)))
    assert main(["train", path, "-t", str(pretrained), "--model-branch", "nope"]) == 2
    assert "small, large" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", path, "-t", str(pretrained), "-r", str(pretrained)])


# ---------------------------------------------------------------- type map remapping
def toy_model(type_map, one_side, exclude=(), sel=(6, 8, 4), seed=3):
    """An untrained model with random weights and per-type random davg/dstd/out_bias."""
    cfg = ModelConfig(type_map=list(type_map),
                      descriptor=SeAConfig(sel=list(sel), rcut=3.0, rcut_smth=0.5,
                                                  neuron=[4, 8], axis_neuron=2,
                                                  type_one_side=one_side, seed=seed,
                                                  exclude_types=[list(p) for p in exclude]),
                      fitting_net=EnergyFittingConfig(neuron=[8], seed=seed))
    model = EnergyModel(cfg)
    g = torch.Generator().manual_seed(seed)
    sea = model.atomic_model.descriptor.sea
    with torch.no_grad():
        for t in range(len(type_map)):  # slot-constant per type, as statistics make them
            sea.mean[t, :, 0] = torch.rand((), generator=g, dtype=torch.float64) * 0.1
            sea.stddev[t] = 0.5 + torch.rand(4, generator=g, dtype=torch.float64)
        sea.plan()  # statistics written by hand: choose the strategy again
        model.atomic_model.out_bias.copy_(torch.randn(1, len(type_map), 1, generator=g,
                                                      dtype=torch.float64))
    model.eval()
    return model


def structure(type_map, names, seed=0):
    g = np.random.default_rng(seed)
    coord = torch.from_numpy(g.uniform(0, 5, (1, len(names), 3)))
    atype = torch.tensor([[type_map.index(n) for n in names]])
    box = torch.from_numpy((np.eye(3) * 5).reshape(1, 9))
    return coord, atype, box


@pytest.mark.parametrize("one_side", [True, False])
def test_reordered_type_map_gives_the_same_model(one_side):
    old_map, new_map = ["O", "H", "C"], ["C", "O", "H"]
    index = [old_map.index(t) for t in new_map]
    src = toy_model(old_map, one_side, exclude=[(0, 2)])
    dst = toy_model(new_map, one_side, exclude=[(1, 0)], sel=[4, 6, 8], seed=9)
    ft.transfer(src, dst, index, random_fitting=False)
    names = ["O", "H", "H", "C", "O", "H", "C", "H"]
    a = src(*structure(old_map, names))
    b = dst(*structure(new_map, names))
    for key in ("energy", "force", "virial", "atom_energy"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-12)


def test_subset_type_map_carries_each_elements_weights():
    """["O", "H"] from ["O", "H", "C"]: every O and H tensor is the pretrained one. (The model
    is not the same function: se_e2_a averages over sum(sel) slots, padding included, so
    dropping C's slots changes the descriptor even of structures without C.)"""
    src = toy_model(["O", "H", "C"], False)
    dst = toy_model(["H", "O"], False, sel=[8, 6], seed=5)
    ft.transfer(src, dst, [1, 0], random_fitting=False)
    s, d = src.atomic_model, dst.atomic_model
    assert torch.equal(d.descriptor.sea.filter_layers[0, 1].layers[1].matrix,
                       s.descriptor.sea.filter_layers[1, 0].layers[1].matrix)
    assert torch.equal(d.descriptor.sea.mean[1, :8], s.descriptor.sea.mean[0, 6:14])
    assert torch.equal(d.descriptor.sea.stddev[0, 8:], s.descriptor.sea.stddev[1, :6])
    assert torch.equal(d.fitting_net.filter_layers.networks[0].layers[0].matrix,
                       s.fitting_net.filter_layers.networks[1].layers[0].matrix)
    assert torch.equal(d.out_bias[0, :, 0], s.out_bias[0, [1, 0], 0])


def test_type_map_reorder_end_to_end(dataset, run_dir, pretrained):
    """Finetuning with ["H", "O"] gives the same model as with ["O", "H"] (same data)."""
    same = finetune(dataset, run_dir, pretrained, "small").branches["Default"].model

    def swap(cfg):
        cfg["model"]["type_map"] = ["H", "O"]
    swapped = finetune(dataset, run_dir, pretrained, "small", swap).branches["Default"].model
    names = ["O", "H", "H"] * 4
    a = same(*structure(["O", "H"], names))
    b = swapped(*structure(["H", "O"], names))
    for key in ("energy", "force", "virial"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-10)
    assert swapped.sel == same.sel[::-1]


def test_exclusions_must_follow_the_type_map(dataset, run_dir, pretrained):
    def excl(cfg):
        cfg["model"]["pair_exclude_types"] = [[0, 1]]
    with pytest.raises(ValueError, match="pair_exclude_types"):
        finetune(dataset, run_dir, pretrained, "small", excl)

