"""dpx train against DeePMD-kit's `dp --pt train` on the same input, same machine, same run.

For each tool: seconds per training step (median over display intervals after the first,
timed by when lcurve.out gains a line, so both are measured the same way and both include
their validation passes), start-up time (launch to the first lcurve line), and peak RSS
(largest process, from getrusage). Prints the table and the ratios (dp / dpx).

    python benchmarks/train_step.py --example single   # ../shared/examples/single_task
    python benchmarks/train_step.py --example multi    # ../shared/examples/multi_task
    python benchmarks/train_step.py --example dpa1     # ../shared/examples/dpa1 (DeePMD-kit's)
    python benchmarks/train_step.py --example se_atten_v2   # the same, se_atten_v2 without
                                                            # attention layers
    python benchmarks/train_step.py --steps 300 --dp /path/to/venv/bin/dp
    python benchmarks/train_step.py --dpx-ref /path/to/other/venv/bin/dpx   # + another build
    python benchmarks/train_step.py --replicate 2 2 1     # 768-atom frames (supercells)

--replicate a b c trains both tools on periodic supercells of the water frames (192 a b c
atoms; energies and virials times a b c, forces tiled: exact labels of the same physics), to
show how the step grows with atoms. The FLOP floor: the matrix-product FLOPs of one dpx
training step written as plain autograd (torch.utils.flop_counter on the unfused model) over
the fp64 matmul rate measured here in the same run; the step is reported as a multiple of it.

The water data comes from ../shared/water (not shipped with dpx).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = {"single": SHARED / "examples" / "single_task" / "input.json",
            "multi": SHARED / "examples" / "multi_task" / "input.json",
            "dpa1": SHARED / "examples" / "dpa1" / "input_torch.json",
            "se_atten_v2": SHARED / "examples" / "dpa1" / "input_torch.json"}
# examples made from another by changing its descriptor's keys
VARIANTS = {"se_atten_v2": {"type": "se_atten_v2", "attn_layer": 0}}
# DeePMD-kit as users install it (tests/oracle/install_lammps.sh); DPX_DP or --dp for another
DEFAULT_DP = os.environ.get("DPX_DP", str(ROOT / ".venv-lammps" / "bin" / "dp"))


def supercell(src: Path, dst: Path, reps: tuple[int, int, int]) -> Path:
    """A DeePMD system of src's frames replicated reps times along the cell vectors."""
    import numpy as np
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "type_map.raw", dst / "type_map.raw")
    atype = np.loadtxt(src / "type.raw", dtype=int)
    n = int(np.prod(reps))
    np.savetxt(dst / "type.raw", np.tile(atype, n), fmt="%d")
    for st in sorted(src.glob("set.*")):
        out = dst / st.name
        out.mkdir(exist_ok=True)
        box = np.load(st / "box.npy").reshape(-1, 3, 3)
        coord = np.load(st / "coord.npy").reshape(len(box), -1, 3)
        shifts = np.array([[i, j, k] for i in range(reps[0]) for j in range(reps[1])
                           for k in range(reps[2])], dtype=float)
        offsets = np.einsum("sd,fde->fse", shifts, box)            # [nf, n, 3]
        big = (coord[:, None] + offsets[:, :, None]).reshape(len(box), -1)
        np.save(out / "coord.npy", big)
        np.save(out / "box.npy", (box * np.array(reps)[None, :, None]).reshape(len(box), 9))
        np.save(out / "energy.npy", np.load(st / "energy.npy") * n)
        force = np.load(st / "force.npy").reshape(len(box), -1, 3)
        np.save(out / "force.npy", np.tile(force, (1, n, 1)).reshape(len(box), -1))
        if (st / "virial.npy").exists():
            np.save(out / "virial.npy", np.load(st / "virial.npy") * n)
    return dst


def prepare(example: str, steps: int, disp: int, folder: Path, data: dict | None = None) -> Path:
    """The example input with absolute data paths (or data's supercells) and the benchmark's
    step counts."""
    src = EXAMPLES[example]
    cfg = json.loads(src.read_text())
    if example in VARIANTS:
        cfg["model"]["descriptor"].update(VARIANTS[example])

    def absolute(section):
        if section and "systems" in section:
            section["systems"] = [data.get(s, s) if data else s for s in
                                  (str((src.parent / s).resolve()) for s in section["systems"])]
    t = cfg["training"]
    for branch in (t.get("data_dict") or {"": t}).values():
        absolute(branch.get("training_data"))
        absolute(branch.get("validation_data"))
    t.update(numb_steps=steps, disp_freq=disp, save_freq=steps)
    path = folder / "input.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def matmul_rate() -> float:
    """fp64 FLOP/s of torch.mm on this machine's threads (best of 5, 2048^3)."""
    import torch
    a = torch.randn(2048, 2048, dtype=torch.float64)
    torch.mm(a, a)
    best = min(_timed(lambda: torch.mm(a, a)) for _ in range(5))
    return 2 * 2048 ** 3 / best


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def step_flops(input_json: Path) -> float:
    """Matrix-product FLOPs of one training step (energy, forces, the force-loss backward)
    of the input's first branch on its first training frame, the model on plain PyTorch
    modules (no fused op: only aten's products are counted, with torch.utils.flop_counter's
    formulas; FlopCounterMode itself cannot follow the forces' autograd.grad)."""
    import dataclasses

    import numpy as np
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        flops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.flops += formula(*args, **(kwargs or {}), out_val=out)
            return out

    from dpx.config import ModelConfig
    from dpx.config.schema import parse
    from dpx.model import TRAINING, EnergyModel
    cfg = json.loads(input_json.read_text())
    model_cfg = cfg["model"]
    if "model_dict" in model_cfg:  # the first branch, its shared parts inlined
        shared = model_cfg.get("shared_dict", {})
        branch = dict(next(iter(model_cfg["model_dict"].values())))
        for key, value in list(branch.items()):
            if isinstance(value, str) and value.split(":")[0] in shared:
                branch[key] = shared[value.split(":")[0]]
        model_cfg = branch
        system = next(iter(cfg["training"]["data_dict"].values()))["training_data"]["systems"][0]
    else:
        system = cfg["training"]["training_data"]["systems"][0]
    model_cfg = {k: v for k, v in model_cfg.items() if k not in ("data_stat_nbatch",)}
    if isinstance(model_cfg["type_map"], str):
        model_cfg["type_map"] = shared[model_cfg["type_map"]]
    model = EnergyModel(parse(ModelConfig, model_cfg, "model"),
                        dataclasses.replace(TRAINING, fused_embedding=False)).train()
    st = sorted(Path(system).glob("set.*"))[0]
    coord = torch.tensor(np.load(st / "coord.npy")[:1]).reshape(1, -1, 3)
    box = torch.tensor(np.load(st / "box.npy")[:1])
    type_map = Path(system, "type_map.raw").read_text().split()
    atype = torch.tensor([model.type_map.index(type_map[t])
                          for t in np.loadtxt(Path(system, "type.raw"), dtype=int)])[None]
    params = [p for p in model.parameters() if p.requires_grad]
    with Counter() as counter:
        out = model(coord, atype, box)
        loss = out["energy"].sum() + (out["force"] ** 2).sum()
        loss.backward(inputs=params)
    return float(counter.flops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--example", choices=list(EXAMPLES), default="single")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--disp", type=int, default=10)
    p.add_argument("--dp", default=DEFAULT_DP, help="DeePMD-kit's dp executable")
    p.add_argument("--dpx", default=shutil.which("dpx") or str(Path(sys.executable).parent / "dpx"))
    p.add_argument("--dpx-ref", default=None, help="another dpx build's dpx (e.g. before a "
                   "change), timed in the same run as dpx-ref")
    p.add_argument("--repeats", type=int, default=1, help="rounds of all tools, interleaved")
    p.add_argument("--keep", action="store_true", help="keep the run folders")
    p.add_argument("--replicate", type=int, nargs=3, metavar=("A", "B", "C"), default=None,
                   help="train on A x B x C supercells of the water frames")
    p.add_argument("--no-floor", action="store_true", help="skip the FLOP-floor measurement")
    args = p.parse_args()
    if not EXAMPLES[args.example].exists():
        sys.exit(f"{EXAMPLES[args.example]} not found: the benchmark needs ../shared")
    base = Path(tempfile.mkdtemp(prefix="dpx-bench-"))
    data = None
    if args.replicate:
        water = (SHARED / "water" / "data").resolve()
        data = {str(d): str(supercell(d, base / "data" / d.name, tuple(args.replicate)))
                for d in sorted(water.glob("data_*"))}
    tools = [("dpx", [args.dpx, "--pt", "train", "input.json"]),
             ("dp", [args.dp, "--pt", "train", "input.json"])]
    if args.dpx_ref:
        tools.insert(1, ("dpx-ref", [args.dpx_ref, "train", "input.json"]))
    runs = {name: [] for name, _ in tools}
    for k in range(args.repeats):
        for name, cmd in tools:
            folder = base / f"{name}-{k}"
            folder.mkdir()
            prepare(args.example, args.steps, args.disp, folder, data)
            runs[name].append(run_training(cmd, folder, folder / "log.txt"))
    # per tool, the round with the median step time
    results = {name: sorted(r, key=lambda x: x["s_per_step"])[len(r) // 2]
               for name, r in runs.items()}
    atoms = 192 * (1 if not args.replicate else args.replicate[0] * args.replicate[1]
                   * args.replicate[2])
    print(f"# {args.example} example, {atoms} atoms a frame, {args.steps} steps, "
          f"disp_freq {args.disp}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'':7s} {'s/step':>9s} {'start-up s':>11s} {'peak RSS MB':>12s} {'wall s':>8s}"
          f"   s/step of each round")
    for name, r in results.items():
        rounds = " ".join(f"{x['s_per_step']:.4f}" for x in runs[name])
        print(f"{name:7s} {r['s_per_step']:9.4f} {r['startup']:11.1f} {r['peak_rss_mb']:12.0f} "
              f"{r['wall']:8.1f}   {rounds}")
    d, x = results["dp"], results["dpx"]
    print(f"ratio dp/dpx: step {d['s_per_step'] / x['s_per_step']:.2f}x faster, "
          f"start-up {d['startup'] / x['startup']:.2f}x, "
          f"memory {x['peak_rss_mb'] / d['peak_rss_mb']:.2f} of dp's")
    if not args.no_floor:
        flops = step_flops(prepare(args.example, 1, 1, base, data))
        rate = matmul_rate()
        floor = flops / rate
        print(f"FLOP floor: {flops / 1e9:.2f} GFLOP a step (matrix products) at "
              f"{rate / 1e9:.0f} GFLOP/s fp64 = {floor:.4f} s; dpx step {x['s_per_step'] / floor:.2f}x "
              f"the floor, dp {d['s_per_step'] / floor:.2f}x")
    if args.dpx_ref:
        ref = results["dpx-ref"]
        print(f"ratio dp/dpx-ref: step {d['s_per_step'] / ref['s_per_step']:.2f}x; "
              f"dpx-ref/dpx: step {ref['s_per_step'] / x['s_per_step']:.2f}x")
    if args.keep:
        print(f"run folders kept in {base}")
    else:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
