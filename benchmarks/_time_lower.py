"""Times `forward_lower` of frozen files on one input, calls taken in turns (who goes first
rotates), after warm-up calls (TorchScript profiles the first ones). Imports only torch (and
DeePMD-kit's op library where it is installed), so that benchmarks/freeze.py can run it in
another interpreter: `python _time_lower.py job.pt` prints one JSON line.

job.pt: {"models": {name: path}, "inputs": (ext_coord, ext_atype, nlist), "repeats": n,
"threads": n or 0}. Output: {name: {"median": s, "min": s, "energy": [...], "force": [...]}}.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import torch


def deepmd_ops() -> str:
    """Where deepmd::tabulate_fusion_* come from in this process."""
    try:
        import deepmd.pt.cxx_op  # noqa: F401  DeePMD-kit's C++ op library
        torch.ops.deepmd.tabulate_fusion_se_a  # noqa: B018
        return "DeePMD-kit's op library"
    except (ImportError, AttributeError, RuntimeError):
        pass
    try:
        from dpx.ops import deepmd as dpx_ops
        dpx_ops.ensure()
        return "dpx's PyTorch stand-ins (dpx.ops.reference)"
    except ImportError:
        return "none"


def time_calls(models: dict, inputs, repeats: int) -> dict:
    times = {name: [] for name in models}
    for _ in range(3):
        for m in models.values():
            m.forward_lower(*inputs)
    names = list(models)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            models[name].forward_lower(*inputs)
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def run(job: dict) -> dict:
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    ops = deepmd_ops()
    models = {name: torch.jit.load(path) for name, path in job["models"].items()}
    inputs = job["inputs"]
    out = {}
    for name, m in models.items():
        res = m.forward_lower(*inputs)
        out[name] = {"energy": res["energy"].detach().flatten().tolist(),
                     "force": res["extended_force"].detach().flatten().tolist()}
    for name, (median, best) in time_calls(models, inputs, job["repeats"]).items():
        out[name].update(median=median, min=best)
    return {"models": out, "deepmd_ops": ops, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


if __name__ == "__main__":
    print(json.dumps(run(torch.load(sys.argv[1], weights_only=False))))
