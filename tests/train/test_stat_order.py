"""DeepmdStatStream (dpx.train.stat_order): the replay of DeePMD-kit's global-generator stream
leaves dpx's own generator where it was, continues from branch to branch, and gives each
system the first batches of a permutation of its frames. That the frames are DeePMD-kit's is
checked against DeePMD-kit itself in tests/fidelity/test_stat_frames_fidelity.py."""
from types import SimpleNamespace

import numpy as np
import torch

from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.model.energy import EnergyModel
from dpx.train.stat_order import DeepmdStatStream


def _run(nframes):
    model = EnergyModel(parse(ModelConfig, {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [4, 8], "rcut": 3.0, "neuron": [4, 8],
                       "axis_neuron": 2, "seed": 1},
        "fitting_net": {"neuron": [8, 8], "seed": 1}}, "model"))
    systems = [SimpleNamespace(nframes=n) for n in nframes]
    data = SimpleNamespace(train=SimpleNamespace(systems=systems), valid=None)
    return SimpleNamespace(model=model, data=data), systems


def test_stream_is_forked_and_continues():
    run, systems = _run([7, 5])
    cfg = SimpleNamespace(training=SimpleNamespace(seed=10))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    stream = DeepmdStatStream(cfg, {"a": run})
    first = stream.permutations(systems, [2, 1], nbatch=3)
    assert torch.equal(torch.get_rng_state(), before)  # dpx's generator untouched
    assert [len(p) for p in first] == [6, 3]  # 3 batches of 2 frames, 3 of 1
    for perm, n in zip(first, (7, 5)):
        assert len(set(perm.tolist())) == len(perm) and perm.max() < n
    # a second branch continues the stream: other frames than a fresh stream's first draw
    second = stream.permutations(systems, [2, 1], nbatch=3)
    again = DeepmdStatStream(cfg, {"a": run}).permutations(systems, [2, 1], nbatch=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
