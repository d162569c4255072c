"""Batch sizes, system probabilities, batches, resume and statistics sampling."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from dpx.data import (
    DataSampler,
    make_stat_input,
    make_system,
    process_sys_probs,
    resolve_batch_size,
    system_probs,
    total_numb_batch,
)


def mem_system(name, natoms, nframes, nopbc=False, seed=0):
    rng = np.random.default_rng(seed)
    atype = np.arange(natoms) % 2
    box = None if nopbc else np.tile(np.eye(3).reshape(9) * 10, (nframes, 1))
    labels = {"energy": rng.normal(size=(nframes, 1)),
              "force": rng.normal(size=(nframes, natoms * 3))}
    return make_system(name, atype, rng.uniform(0, 10, (nframes, natoms * 3)), box, labels,
                       type_map=["O", "H"])


# ---------------------------------------------------------------- batch sizes

@pytest.mark.parametrize("batch_size, expected", [
    (7, [7, 7, 7, 7]),
    ([1, 2, 3, 4], [1, 2, 3, 4]),
    ("auto", [11, 4, 1, 1]),          # ceil(32 / natoms)
    ("auto:100", [34, 10, 2, 1]),
    ("max:64", [21, 6, 1, 1]),        # 64 // natoms, at least 1
    ("filter:64", [21, 6, 1, None]),  # systems above 64 atoms dropped
])
def test_batch_size_rules(batch_size, expected):
    assert resolve_batch_size(batch_size, [3, 10, 64, 100]) == expected


@pytest.mark.parametrize("batch_size, message", [
    ([1, 2], r"training_data/batch_size: a list of 2 batch sizes for 4 systems"),
    ("bogus", r"training_data/batch_size: 'bogus' is not a batch size"),
    ("auto:0", r"'auto:0' is not a batch size"),
    (0, r"batch size 0 must be a positive integer"),
    (True, r"batch size True must be a positive integer"),
])
def test_batch_size_errors(batch_size, message):
    with pytest.raises(ValueError, match=message):
        resolve_batch_size(batch_size, [3, 10, 64, 100], "training_data/batch_size")


# ---------------------------------------------------------------- probabilities

NB = [2, 3, 5]


@pytest.mark.parametrize("kwargs, expected", [
    ({"auto_prob": "prob_uniform"}, [1 / 3, 1 / 3, 1 / 3]),
    ({}, [0.2, 0.3, 0.5]),  # default prob_sys_size: proportional to batches
    ({"auto_prob": "prob_sys_size;0:1:0.25;1:3:0.75"}, [0.25, 0.75 * 3 / 8, 0.75 * 5 / 8]),
    ({"auto_prob": "prob_sys_size;1:3:1"}, [0.0, 0.375, 0.625]),
    ({"sys_probs": [0.5, -1, -1]}, [0.5, 0.5 * 3 / 8, 0.5 * 5 / 8]),
    ({"sys_probs": [0.5, 0.5, -1]}, [0.5, 0.5, 0.0]),
    ({"sys_probs": [0.2, 0.3, 0.5], "auto_prob": "prob_uniform"}, [0.2, 0.3, 0.5]),
])
def test_system_probs(kwargs, expected):
    np.testing.assert_allclose(system_probs(NB, **kwargs), expected, rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"sys_probs": [0.6, 0.6, -1]}, r"training_data/sys_probs: the non-negative .* 1.2 > 1"),
    ({"sys_probs": [0.2, 0.3, 0.4]}, r"sum to 0.9, not 1, and no negative entry"),
    ({"sys_probs": [0.5, 0.5]}, r"sys_probs: 2 entries for 3 systems"),
    ({"auto_prob": "bogus"}, r"training_data/auto_prob: unknown style 'bogus'"),
    ({"auto_prob": "prob_sys_size;0:4:1"}, r"block '0:4:1' of .* 0 <= a < b <= 3"),
    ({"auto_prob": "prob_sys_size;0:2"}, r"block '0:2'"),
])
def test_system_probs_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        system_probs(NB, **kwargs)


def test_process_sys_probs_tolerance():
    np.testing.assert_allclose(process_sys_probs([0.5, 0.5 + 1e-9, -1], NB), [0.5, 0.5, 0.0],
                               atol=2e-9)


@pytest.mark.parametrize("probs, expected", [
    ([0.2, 0.3, 0.5], 10), ([0.0, 0.375, 0.625], 8), ([1, 1, 1], 15), ([1, 0, 0], 2)])
def test_total_numb_batch(probs, expected):
    assert total_numb_batch(NB, probs) == expected


# ---------------------------------------------------------------- batches

def test_batch_shapes_and_dtypes():
    sampler = DataSampler([mem_system("a", 5, 4), mem_system("b", 3, 6, nopbc=True)], 2, seed=0)
    batches = {b["sid"]: b for b in sampler.sample(20)}
    a, b = batches[0], batches[1]
    assert a["coord"].shape == (2, 5, 3) and a["coord"].dtype == torch.float64
    assert a["atype"].shape == (2, 5) and a["atype"].dtype == torch.int64
    assert a["box"].shape == (2, 9) and b["box"] is None
    assert a["energy"].shape == (2, 1) and a["force"].shape == (2, 5, 3)
    assert a["virial"].shape == (2, 9) and a["atom_ener"].shape == (2, 5)
    assert a["atom_pref"].shape == (2, 15)
    assert (a["find_energy"], a["find_force"], a["find_virial"]) == (1.0, 1.0, 0.0)
    assert a["natoms"] == 5 and len(a["fid"]) == 2
    torch.testing.assert_close(a["coord"], torch.from_numpy(sampler.systems[0].coord[a["fid"]]))


def test_passes_without_replacement_last_batch_short():
    sampler = DataSampler([mem_system("a", 2, 7)], 3, seed=1)
    first = [sampler.next_batch()["fid"] for _ in range(3)]
    assert [len(f) for f in first] == [3, 3, 1]
    first = [i for fids in first for i in fids]
    assert sorted(first) == list(range(7))
    second = [i for _ in range(3) for i in sampler.next_batch()["fid"]]
    assert sorted(second) == list(range(7)) and second != first


def test_draw_frequencies_follow_probs():
    systems = [mem_system("a", 2, 4), mem_system("b", 2, 12), mem_system("c", 2, 8)]
    sampler = DataSampler(systems, 2, sys_probs=[0.5, 0.0, -1], seed=3)
    counts = np.bincount([sampler.next_batch()["sid"] for _ in range(4000)], minlength=3)
    np.testing.assert_allclose(counts / 4000, [0.5, 0.0, 0.5], atol=0.03)
    assert counts[1] == 0


def test_filter_drops_systems_and_sid_indexes_kept():
    systems = [mem_system("a", 4, 3), mem_system("big", 40, 3), mem_system("c", 4, 3)]
    sampler = DataSampler(systems, "filter:10", seed=0)
    assert [s.name for s in sampler.systems] == ["a", "c"] and sampler.batch_sizes == [2, 2]
    with pytest.raises(ValueError, match=r"training_data/batch_size: 'filter:2' drops every"):
        DataSampler(systems, "filter:2")


def _trace(sampler, n):
    return [(b["sid"], tuple(b["fid"])) for b in sampler.sample(n)]


def test_same_seed_same_draws_and_different_seed_differs():
    systems = [mem_system("a", 2, 9), mem_system("b", 3, 5)]
    assert _trace(DataSampler(systems, 2, seed=(7, 0)), 30) == _trace(
        DataSampler(systems, 2, seed=(7, 0)), 30)
    assert _trace(DataSampler(systems, 2, seed=(7, 0)), 30) != _trace(
        DataSampler(systems, 2, seed=(7, 1)), 30)


def test_resume_from_state_is_exact():
    systems = [mem_system("a", 2, 9), mem_system("b", 3, 5), mem_system("c", 3, 1)]
    run = DataSampler(systems, 2, seed=11)
    _trace(run, 13)  # mid-pass for some systems, untouched for others
    state = json.loads(json.dumps(run.state_dict()))  # plain values survive JSON
    buffer = io.BytesIO()
    torch.save({"sampler": run.state_dict()}, buffer)  # and a weights_only checkpoint
    buffer.seek(0)
    from_ckpt = torch.load(buffer, weights_only=True)["sampler"]
    expected = _trace(run, 40)
    for saved in (state, from_ckpt):
        resumed = DataSampler(systems, 2, seed=999)
        resumed.load_state_dict(saved)
        assert _trace(resumed, 40) == expected


def test_resume_with_other_data_is_an_error():
    state = DataSampler([mem_system("a", 2, 9)], 2, seed=0).state_dict()
    with pytest.raises(ValueError, match=r"training_data: saved sampler state has nframes "
                                         r"\[9\] but the data now has \[8\]"):
        DataSampler([mem_system("a", 2, 8)], 2).load_state_dict(state)


def test_many_branches_are_cheap():
    systems = [mem_system(f"s{i}", 6, 50, seed=i) for i in range(4)]
    samplers = [DataSampler(systems, "auto", seed=(0, i)) for i in range(32)]
    assert all(s.next_batch()["coord"].shape[0] == 6 for s in samplers)


# ---------------------------------------------------------------- statistics

def test_stat_input_first_batches_of_a_fresh_pass():
    systems = [mem_system("a", 4, 7), mem_system("b", 2, 30)]
    stats = make_stat_input(systems, [3, 2], nbatch=2, seed=5, ntypes=3)
    assert [len(s["fid"]) for s in stats] == [6, 4]  # min(nbatch, nbatches) * batch size
    assert stats[0]["coord"].shape == (6, 4, 3) and stats[1]["energy"].shape == (4, 1)
    assert stats[0]["type_count"].tolist() == [[2, 2, 0]] * 6
    assert len(set(stats[1]["fid"])) == 4 and stats[0]["find_energy"] == 1.0
    # the labels the statistics read, the frames' own; forces and the rest left out
    assert torch.equal(stats[1]["energy"], torch.from_numpy(systems[1].labels["energy"][
        stats[1]["fid"]]))
    assert "force" not in stats[0] and "find_force" not in stats[0] and "virial" not in stats[1]
    again = make_stat_input(systems, [3, 2], nbatch=2, seed=5, ntypes=3)
    assert [s["fid"] for s in again] == [s["fid"] for s in stats]
    everything = make_stat_input(systems, [3, 2], nbatch=100, seed=5)
    assert sorted(everything[0]["fid"]) == list(range(7))
    assert [s["fid"] for s in make_stat_input(systems, [3, 2], 2, seed=6)] != [
        s["fid"] for s in stats]


def test_stat_input_leaves_training_draws_alone():
    systems = [mem_system("a", 2, 9), mem_system("b", 3, 5)]
    plain, with_stats = DataSampler(systems, 2, seed=4), DataSampler(systems, 2, seed=4)
    with_stats.stat_input(nbatch=3)
    assert _trace(plain, 20) == _trace(with_stats, 20)
