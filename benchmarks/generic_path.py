"""What the GPU default costs, measured on the CPU: the training step's model work on dpx's
compiled kernels against the code a GPU runs until `dpx check` passed them (ops/paths.py:
the batched PyTorch neighbor search, the pure-PyTorch env mat and reductions, the embedding
nets as modules).

One frame of the shared water data (192 atoms), the single-task example's model (se_e2_a,
neuron 25-50-100, fitting 240x3, float64), TRAINING options: neighbor list -> energy ->
forces -> a force + energy loss -> its weight gradient, i.e. the model's part of a step
(no optimizer, no data loading). The two paths take turns, call by call, so that load from
elsewhere on the machine falls on both alike; prints the median of each and the ratio.
The run's two paths must also give the same loss gradient (checked, 1e-10).

    python benchmarks/generic_path.py [--repeats 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.model import TRAINING, EnergyModel
from dpx.ops import paths

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXAMPLE = SHARED / "examples" / "single_task" / "input.json"
SYSTEM = SHARED / "water" / "data" / "data_0"


def frame():
    s = SYSTEM / "set.000"
    coord = torch.from_numpy(np.load(s / "coord.npy")[:1]).reshape(1, -1, 3)
    box = torch.from_numpy(np.load(s / "box.npy")[:1])
    atype = torch.from_numpy(np.loadtxt(SYSTEM / "type.raw", dtype=np.int64))[None]
    force = torch.from_numpy(np.load(s / "force.npy")[:1]).reshape(1, -1, 3)
    return coord, atype, box, force


def model(selection: dict[str, bool]):
    """The example's model with ops/paths.py's selection for the CPU set to `selection`."""
    paths._CACHE.clear()
    paths._CACHE["cpu"] = (selection, "benchmark")
    cfg = parse(ModelConfig, json.loads(EXAMPLE.read_text())["model"], "model")
    m = EnergyModel(cfg, TRAINING).train()
    m.atomic_model.descriptor.plan()
    return m


def step(m, coord, atype, box, force):
    out = m(coord, atype, box)
    loss = ((out["force"] - force) ** 2).mean() + out["energy"].sum() ** 2 * 1e-6
    params = [p for p in m.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    inputs = frame()
    kernels = model(dict.fromkeys(paths.FAMILIES, True))
    generic = model(dict.fromkeys(paths.FAMILIES, False))
    generic.load_state_dict(kernels.state_dict())
    # the statistics are left at their defaults (zero mean, unit std): slot-constant, so both
    # models take their usual strategy (fused on the kernels, sparse nets on the generic path)
    print(f"strategies: kernels {kernels.atomic_model.descriptor.sea.strategy}, generic "
          f"{generic.atomic_model.descriptor.sea.strategy}; {args.threads} threads, torch "
          f"{torch.__version__}")
    ga, gb = step(kernels, *inputs), step(generic, *inputs)
    worst = max(float((a - b).abs().max() / max(1.0, float(b.abs().max())))
                for a, b in zip(ga, gb) if b.numel())
    assert worst < 1e-10, f"the two paths disagree: {worst:.2e}"
    times = {"kernels": [], "generic": []}
    for _ in range(args.repeats):
        for name, m in (("kernels", kernels), ("generic", generic)):
            t0 = time.perf_counter()
            step(m, *inputs)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model part of a step (192 atoms, forces + force-loss weight gradient), median of "
          f"{args.repeats}: kernels {1e3 * med['kernels']:.1f} ms, generic "
          f"{1e3 * med['generic']:.1f} ms, generic/kernels {med['generic'] / med['kernels']:.2f}"
          f" (gradients agree to {worst:.1e})")


if __name__ == "__main__":
    main()
