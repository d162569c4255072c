"""Multi-task semantics: weighted task draws, shared parts as shared tensors, private parts
untouched by other branches' steps, levels, restart."""
import copy
import math

import numpy as np
import pytest
import torch

from dpx.config import parse_input
from dpx.train.branches import BranchSampler
from dpx.train.startup import Fresh, Restart, build_trainer
from tests.train.conftest import multi_input


def test_draw_frequencies_follow_model_prob():
    """Counts of 20000 draws lie within 4.5 binomial standard deviations of n p."""
    weights = [1.0, 2.0, 5.0, 0.5]
    sampler = BranchSampler(["a", "b", "c", "d"], weights, seed=10)
    n = 20000
    draws = [sampler.draw() for _ in range(n)]
    p = np.array(weights) / sum(weights)
    for key, pk in zip("abcd", p):
        count = draws.count(key)
        assert abs(count - n * pk) <= 4.5 * math.sqrt(n * pk * (1 - pk)), (key, count, n * pk)


def test_draws_are_reproducible_and_resumable():
    a = BranchSampler(["x", "y"], [1, 3], seed=4)
    first = [a.draw() for _ in range(50)]
    state = copy.deepcopy(a.state_dict())
    rest = [a.draw() for _ in range(50)]
    b = BranchSampler(["x", "y"], [1, 3], seed=4)
    assert [b.draw() for _ in range(50)] == first
    b.load_state_dict(state)
    assert [b.draw() for _ in range(50)] == rest
    other_rank = BranchSampler(["x", "y"], [1, 3], seed=4, rank=1)
    assert [other_rank.draw() for _ in range(50)] != first


def build(dataset, run_dir, mutate=None, restart=None):
    cfg = multi_input(dataset)
    if mutate:
        mutate(cfg)
    return build_trainer(parse_input(cfg, base_dir=run_dir),
                         Restart(restart) if restart else Fresh())


def sea(trainer, key):
    return trainer.branches[key].model.atomic_model.descriptor.sea


def fitting_layers(trainer, key):
    return trainer.branches[key].model.atomic_model.fitting_net.filter_layers.networks[0].layers


def test_shared_parameters_are_one_tensor(dataset, run_dir):
    tr = build(dataset, run_dir)
    small, large = sea(tr, "small"), sea(tr, "large")
    assert small is large and small.mean is large.mean
    for a, b in zip(fitting_layers(tr, "small"), fitting_layers(tr, "large")):
        assert a.matrix is not b.matrix
    ids = [id(p) for p in tr.optimizer.param_groups[0]["params"]]
    assert len(ids) == len(set(ids))
    out_a = tr.branches["small"].model.atomic_model.out_bias
    assert out_a is not tr.branches["large"].model.atomic_model.out_bias


def test_step_on_one_branch_leaves_the_other_private_parts(dataset, run_dir):
    tr = build(dataset, run_dir)
    before = {k: v.clone() for k, v in tr.wrapper.state_dict().items() if k != "_extra_state"}
    tr.step("small", 1e-3)
    after = tr.wrapper.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.small.atomic_model.fitting_net") for k in changed)
    assert any(".descriptor.sea.filter_layers" in k for k in changed)  # shared: moved
    assert not any(k.startswith("model.large.atomic_model.fitting_net") for k in changed)


def test_level_1_shares_embedding_nets_only(dataset, run_dir):
    def level1(cfg):
        cfg["model"]["model_dict"]["large"]["descriptor"] = "sea_descriptor:1"
        cfg["model"]["model_dict"]["large"]["fitting_net"] = "fit:1"
        cfg["model"]["model_dict"]["small"]["fitting_net"] = "fit"
        cfg["model"]["shared_dict"]["fit"] = {"neuron": [8, 8], "seed": 3}
    tr = build(dataset, run_dir, level1)
    small, large = sea(tr, "small"), sea(tr, "large")
    assert small is not large and small.filter_layers is large.filter_layers
    assert not torch.equal(small.mean, large.mean)  # each branch's own statistics
    fs, fl = fitting_layers(tr, "small"), fitting_layers(tr, "large")
    assert all(a is b for a, b in zip(fs[:-1], fl[:-1]))
    assert fs[-1] is not fl[-1]


def test_undefined_level_is_an_error(dataset, run_dir):
    def level2(cfg):
        cfg["model"]["model_dict"]["large"]["descriptor"] = "sea_descriptor:2"
    with pytest.raises(ValueError, match="shared level 2 is not defined for se_e2_a"):
        build(dataset, run_dir, level2)


def test_sharing_survives_restart(dataset, run_dir):
    tr = build(dataset, run_dir)
    tr.run()
    again = build(dataset, run_dir, restart="model.ckpt-6.pt")
    assert sea(again, "small") is sea(again, "large")
    for a, b in zip(sea(tr, "small").parameters(), sea(again, "small").parameters()):
        assert torch.equal(a, b)


def test_num_epoch_dict_sets_steps_and_weights(dataset, run_dir):
    def epochs(cfg):
        t = cfg["training"]
        del t["model_prob"], t["numb_steps"]
        t["num_epoch_dict"] = {"small": 1.0, "large": 2.0}
    tr = build(dataset, run_dir, epochs)
    # 8 frames each, batch 1 -> 8 batches per epoch: weights 8 and 16
    assert tr.num_steps == 24
    np.testing.assert_allclose(tr.sampler.prob, [1 / 3, 2 / 3])


def test_equal_weights_without_model_prob_are_logged(dataset, run_dir, caplog):
    """dpx keeps DeePMD-kit's documented rule; the log says DeePMD-kit 3.2's code differs."""
    def no_prob(cfg):
        del cfg["training"]["model_prob"]
    with caplog.at_level("INFO", logger="dpx"):
        tr = build(dataset, run_dir, no_prob)
    np.testing.assert_allclose(tr.sampler.prob, [0.5, 0.5])
    assert "branch probabilities {'small': 0.5, 'large': 0.5}: equal weights, as " \
           "training/model_prob is not given (DeePMD-kit 3.2 weights each branch by its " \
           "number of systems instead" in caplog.text


@pytest.mark.parametrize("disp_avg", [False, True])
def test_report_scores_the_other_branches_on_fresh_batches(dataset, run_dir, monkeypatch,
                                                           disp_avg):
    """A display row (deepmd-compat §9.3, DeePMD-kit's rule; rows against dp in
    tests/fidelity/test_lcurve_fidelity.py): the branch of the display step shows that step;
    every other branch one fresh training batch, even one that stepped earlier in the
    interval (with disp_avg, the mean of its steps; a fresh batch only without any)."""
    tr = build(dataset, run_dir, lambda c: c["training"].update(disp_avg=disp_avg))
    tr.wrapper.train()  # as Trainer.run sets it before the steps and after each report
    interval = {"small": [], "large": [tr.step("large", 1e-3)]}
    interval["small"].append(tr.step("small", 1e-3))
    drawn = []
    for name, branch in tr.branches.items():
        monkeypatch.setattr(branch.data, "next_train", lambda device, name=name, f=branch.data
                            .next_train: drawn.append(name) or f(device))
    values = tr.evaluate(interval, 1e-3, "small")
    assert drawn == ([] if disp_avg else ["large"])
    for name in ("small", "large") if disp_avg else ("small",):
        assert {m: v[1] for m, v in values[name].items()} == interval[name][-1]
    tr.wrapper.train()
    interval = {"small": [tr.step("small", 1e-3)], "large": []}
    drawn.clear()
    tr.evaluate(interval, 1e-3, "small")
    assert drawn == ["large"]
