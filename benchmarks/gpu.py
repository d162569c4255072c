"""Measure first (issue 8): dpx's CUDA ops and training step on a GPU, in one command.

    python benchmarks/gpu.py                      # on the GPU machine: everything below
    python benchmarks/gpu.py --device cpu --quick # smoke test anywhere (numbers meaningless)

1. Per-op timings on the water frame of benchmarks/ops.py (192 atoms, rcut 6, sel [46, 92],
   M1 100, axis_neuron 16, float64): dpx ops against their pure-PyTorch reference twins on
   the same device (median ms, CUDA-synchronized).
2. The end-to-end training step of ../shared/examples/single_task and multi_task: dpx and
   `dp --pt train` (DeePMD-kit 3.2.0; skipped with a message when `dp` is absent), s/step
   (median over display intervals after the first, as benchmarks/train_step.py), peak GPU
   memory (dpx: torch.cuda.max_memory_allocated in the training process; dp: nvidia-smi
   polling of its process, which includes the CUDA context) and the ratios.
3. The step's floor: FLOPs and bytes of one se_e2_a training step counted analytically for
   the single-task config, against the matmul FLOP/s and device copy bandwidth measured here;
   dpx's step time is printed as a multiple of that floor.
4. Inference of a replicated water box (the ops.py water frame 4x4x4: 12 288 atoms): energy
   and forces per call of `forward` (what DeepPot and ASE call) with dpx's frozen model and
   DeePMD-kit's frozen model of the same checkpoint (the single-task example after one
   training step), both loaded in this process on the device.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import run_training  # noqa: E402
from ops import AXIS, M1, RCUT, RCUT_SMTH, SEL, extend_and_list, statistics_of, water_frame  # noqa: E402
from train_step import EXAMPLES, prepare  # noqa: E402


# ----------------------------------------------------------------------------------------
# timing on a device
# ----------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


# ----------------------------------------------------------------------------------------
# 1. per-op timings
# ----------------------------------------------------------------------------------------
def op_cases(device: torch.device, dtype: torch.dtype):
    """{name: {"dpx": fn, "reference": fn}} on the water frame."""
    import dpx.ops
    from dpx.ops import reference

    coord, atype, length, _ = water_frame()
    ext, nlist = extend_and_list(coord, atype, length)
    ext = torch.tensor(ext, dtype=dtype, device=device)[None]
    nlist = torch.tensor(nlist, device=device)[None]
    at = torch.tensor(atype, device=device)[None]
    davg, dstd = (t.to(device, dtype) for t in statistics_of(ext.cpu().double(), nlist.cpu(),
                                                              at.cpu()))
    c = torch.tensor(coord % length, dtype=dtype, device=device)[None]
    box = torch.tensor([[length, 0, 0, 0, length, 0, 0, 0, length]], dtype=dtype, device=device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    g = torch.randn(1, len(atype), sum(SEL), M1, generator=gen, dtype=torch.float64)
    g = g.to(device, dtype)
    args = (nlist, at, davg, dstd, RCUT, RCUT_SMTH)

    def force_loss(env_mat, descriptor):
        def run():
            x = ext.clone().requires_grad_(True)
            w = g.clone().requires_grad_(True)
            em = env_mat(x, *args)
            d, _ = descriptor(em, w)
            (f,) = torch.autograd.grad(d.sum(), x, create_graph=True)
            f.pow(2).sum().backward()
        return run

    def ref_descriptor(em, gg):
        t = reference.se_a_reduce(em, gg)
        return reference.se_a_gram(t, t, AXIS).flatten(-2), t

    def dpx_descriptor(em, gg):
        return dpx.ops.se_a_descriptor(em, gg, AXIS)

    em = dpx.ops.env_mat_se_a(ext, *args)
    embed = embed_force_loss(em, nlist, dtype)
    return {
        "neighbor_list": {"dpx": lambda: dpx.ops.neighbor_list(c, at, box, RCUT, list(SEL)),
                          "reference": lambda: dpx.ops.reference.neighbor_list(
                              c.cpu(), at.cpu(), box.cpu(), RCUT, list(SEL))},
        "env_mat fwd": {"dpx": lambda: dpx.ops.env_mat_se_a(ext, *args),
                        "reference": lambda: reference.env_mat_se_a(ext, *args)},
        "descriptor fwd": {"dpx": lambda: dpx_descriptor(em, g),
                           "reference": lambda: ref_descriptor(em, g)},
        "env_mat+descriptor force loss": {
            "dpx": force_loss(dpx.ops.env_mat_se_a, dpx_descriptor),
            "reference": force_loss(reference.env_mat_se_a, ref_descriptor)},
        "embedding+reduce force loss": embed,
    }


def embed_force_loss(em: torch.Tensor, nlist: torch.Tensor, dtype: torch.dtype) -> dict:
    """The fused embedding family (dpx.ops.se_a_embed: forward, force derivative, the force
    loss's weight gradient) against the same net in PyTorch autograd, on the water frame's
    filled slots through one net of neuron [25, 50, 100], tanh."""
    from dpx.ops import reference
    from dpx.ops.se_a_embed import se_a_embed_reduce
    widths = [1, 25, 50, M1]
    nparams = sum(i * o + o for i, o in zip(widths[:-1], widths[1:]))
    gen = torch.Generator(device="cpu").manual_seed(1)
    params = (0.3 * torch.randn(nparams, generator=gen, dtype=torch.float64)).to(em.device, dtype)
    filled = (nlist[0] >= 0).reshape(-1)
    rows = em[0].reshape(-1, 4)[filled].contiguous()
    center = torch.nonzero(nlist[0] >= 0)[:, 0].contiguous()
    ncenter = nlist.shape[1]

    def run(fn):
        def step():
            r = rows.clone().requires_grad_(True)
            p = params.clone().requires_grad_(True)
            t = fn(r, center, p, widths, 1, False, ncenter, 1.0 / nlist.shape[2])
            (gr,) = torch.autograd.grad(t.square().sum(), r, create_graph=True)
            gr.pow(2).sum().backward()
        return step
    return {"dpx": run(se_a_embed_reduce), "reference": run(reference.se_a_embed_reduce)}


def per_op(device, dtype, repeats) -> None:
    print(f"\n## 1. ops on {device} ({dtype}), median ms over {repeats} runs "
          "(reference neighbor_list runs on CPU: it is a python loop)")
    print(f"{'op':32s} {'dpx':>10s} {'reference':>10s} {'ref/dpx':>8s}")
    for name, impls in op_cases(device, dtype).items():
        t = {k: median_ms(fn, device, repeats) for k, fn in impls.items()}
        print(f"{name:32s} {t['dpx']:10.3f} {t['reference']:10.3f} "
              f"{t['reference'] / t['dpx']:8.2f}")


# ----------------------------------------------------------------------------------------
# 2. end-to-end training step
# ----------------------------------------------------------------------------------------
DPX_WITH_GPU_MEMORY = (
    "import atexit, sys, torch\n"
    "from dpx.cli.main import main\n"
    "def _mem():\n"
    "    if torch.cuda.is_available():\n"
    "        open('gpu_mem_bytes', 'w').write(str(torch.cuda.max_memory_allocated()))\n"
    "atexit.register(_mem)\n"
    "sys.argv = ['dpx', 'train', 'input.json']\n"
    "sys.exit(main())\n")


class GpuMemoryPoll:
    """Largest GPU memory (MiB) that nvidia-smi reports for any process, polled every 0.2 s
    while the training runs (dp runs alone on the device, so that is dp's)."""

    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout
                for line in out.split():
                    self.peak = max(self.peak, float(line))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def end_to_end(example: str, steps: int, disp: int, dp: str | None, device) -> dict:
    env = dict(os.environ)
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""   # the trainer picks cuda whenever it sees one
    base = Path(tempfile.mkdtemp(prefix=f"dpx-gpu-{example}-"))
    res = {}
    folder = base / "dpx"
    folder.mkdir()
    prepare(example, steps, disp, folder)
    r = run_training([sys.executable, "-c", DPX_WITH_GPU_MEMORY], folder, folder / "log.txt", env)
    mem = folder / "gpu_mem_bytes"
    r["gpu_mib"] = float(mem.read_text()) / 2**20 if mem.exists() else float("nan")
    res["dpx"] = r
    if dp is None:
        print(f"   [{example}] dp (DeePMD-kit) not found: skipping the dp side "
              "(install DeePMD-kit 3.2.0 or pass --dp PATH)")
    else:
        folder = base / "dp"
        folder.mkdir()
        prepare(example, steps, disp, folder)
        with GpuMemoryPoll() as poll:
            r = run_training([dp, "--pt", "train", "input.json"], folder, folder / "log.txt", env)
        r["gpu_mib"] = poll.peak if shutil.which("nvidia-smi") else float("nan")
        res["dp"] = r
    shutil.rmtree(base, ignore_errors=True)
    return res


def peer_dp(arg: str | None) -> str | None:
    dp = arg or shutil.which("dp")
    if dp and not (Path(dp).exists() or shutil.which(dp)):
        dp = None   # "--dp none", or a path that is not there
    return dp


def end_to_end_all(args, device) -> dict:
    dp = peer_dp(args.dp)
    print(f"\n## 2. training step, {args.steps} steps, disp_freq {args.disp}")
    print(f"{'example':8s} {'tool':5s} {'s/step':>9s} {'peak GPU MiB':>13s}")
    out = {}
    for example in ("single", "multi"):
        if not EXAMPLES[example].exists():
            print(f"   {EXAMPLES[example]} not found: skipping {example}")
            continue
        res = end_to_end(example, args.steps, args.disp, dp, device)
        for tool, r in res.items():
            print(f"{example:8s} {tool:5s} {r['s_per_step']:9.4f} {r['gpu_mib']:13.0f}")
        if "dp" in res:
            d, x = res["dp"], res["dpx"]
            print(f"{example:8s} ratio dp/dpx: step {d['s_per_step'] / x['s_per_step']:.2f}x, "
                  f"GPU memory dpx/dp {x['gpu_mib'] / max(d['gpu_mib'], 1e-9):.2f}")
        out[example] = res
    return out


# ----------------------------------------------------------------------------------------
# 3. the floor
# ----------------------------------------------------------------------------------------
def step_cost(cfg: dict, nloc: int, itemsize: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one training step of se_e2_a + ener fitting on nloc atoms.

    Forward FLOPs per atom: the embedding nets on nnei slots (1 -> n1 -> ... -> M1, 2 a b
    per layer), T = em^T G / nnei (8 nnei M1), D = T^T T< (8 M1 axis), the fitting net.
    A force-loss step differentiates twice: forces cost ~2 forwards, the weight gradient of
    the force loss ~2 of (forward + forces); in all ~9 forwards. Bytes: the per-slot tensors
    (G and the embedding activations [nloc, nnei, n_l]) are the traffic; each is written once
    and read about twice per pass, over the same 9 passes."""
    d, fit = cfg["descriptor"], cfg["fitting_net"]
    nnei, axis = sum(d["sel"]), d["axis_neuron"]
    widths = [1, *d["neuron"]]
    m1 = widths[-1]
    emb = sum(2 * a * b for a, b in zip(widths, widths[1:])) * nnei
    fwidths = [m1 * axis, *fit["neuron"], 1]
    fitting = sum(2 * a * b for a, b in zip(fwidths, fwidths[1:]))
    fwd = nloc * (emb + 8 * nnei * m1 + 8 * m1 * axis + fitting)
    act = nloc * nnei * (sum(widths[1:]) + 4 + 3) * itemsize
    return 9.0 * fwd, 9.0 * 3 * act


def machine_peaks(device, dtype, quick: bool) -> tuple[float, float]:
    """(matmul FLOP/s, copy bytes/s) measured now on device in dtype."""
    n = 512 if quick else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = median_ms(lambda: a @ b, device, 3 if quick else 10) / 1e3
    flops = 2 * n**3 / t
    m = (1 << 20) if quick else (1 << 28)
    x = torch.empty(m, device=device, dtype=torch.float32)
    y = torch.empty_like(x)
    t = median_ms(lambda: y.copy_(x), device, 3 if quick else 20) / 1e3
    return flops, 2 * x.numel() * x.element_size() / t


def floor(args, device, e2e: dict) -> None:
    src = EXAMPLES["single"]
    if not src.exists():
        print(f"\n## 3. floor: {src} not found, skipped")
        return
    cfg = json.loads(src.read_text())["model"]
    dtype = torch.float64   # the examples' precision (DeePMD-kit's default)
    nloc = int(args.nloc)
    flops, nbytes = step_cost(cfg, nloc, torch.finfo(dtype).bits // 8)
    peak_flops, bandwidth = machine_peaks(device, dtype, args.quick)
    t_floor = max(flops / peak_flops, nbytes / bandwidth)
    print(f"\n## 3. floor of a single-task step ({nloc} atoms per batch, {dtype})")
    print(f"step FLOPs {flops:.3e}, bytes {nbytes:.3e}; measured matmul {peak_flops / 1e12:.2f} "
          f"TFLOP/s, copy {bandwidth / 1e9:.0f} GB/s -> floor {1e3 * t_floor:.3f} ms "
          f"({'compute' if flops / peak_flops > nbytes / bandwidth else 'memory'} bound)")
    step = e2e.get("single", {}).get("dpx", {}).get("s_per_step")
    if step:
        print(f"dpx step {1e3 * step:.2f} ms = {step / t_floor:.1f} x the floor")


# ----------------------------------------------------------------------------------------
# 4. inference of a large box with the frozen models
# ----------------------------------------------------------------------------------------
def frozen_models(dp: str | None, folder: Path, env: dict) -> dict[str, Path]:
    """{tool: frozen file} of one checkpoint of the single-task example (one step)."""
    prepare("single", 1, 1, folder)
    dpx = [sys.executable, "-m", "dpx.cli.main"]
    subprocess.run([*dpx, "train", "input.json"], cwd=folder, env=env, check=True,
                   capture_output=True)
    subprocess.run([*dpx, "freeze", "-c", "model.ckpt-1.pt", "-o", "dpx.pth"], cwd=folder,
                   env=env, check=True, capture_output=True)
    out = {"dpx": folder / "dpx.pth"}
    if dp is not None:
        subprocess.run([dp, "--pt", "freeze", "-c", "model.ckpt-1.pt", "-o", "dp.pth"],
                       cwd=folder, env=env, check=True, capture_output=True)
        out["dp"] = folder / "dp.pth"
    return out


def replicated_water(n: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    coord, atype, length, _ = water_frame()
    shifts = torch.tensor([[i, j, k] for i in range(n) for j in range(n) for k in range(n)],
                          dtype=torch.float64) * length
    c = (torch.as_tensor(coord, dtype=torch.float64)[None] + shifts[:, None]).reshape(1, -1, 3)
    t = torch.as_tensor(atype).repeat(n ** 3)[None]
    box = (torch.eye(3, dtype=torch.float64) * length * n).reshape(1, 9)
    return c.to(device), t.to(device), box.to(device)


def inference(args, device, dp: str | None) -> None:
    if not EXAMPLES["single"].exists():
        print(f"\n## 4. inference: {EXAMPLES['single']} not found, skipped")
        return
    env = dict(os.environ)
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    folder = Path(tempfile.mkdtemp(prefix="dpx-gpu-infer-"))
    files = frozen_models(dp, folder, env)
    n = 1 if args.quick else 4
    coord, atype, box = replicated_water(n, device)
    print(f"\n## 4. inference, {atype.shape[1]} atoms (water frame {n}x{n}x{n}), energy + forces")
    times = {}
    for tool, path in files.items():
        model = torch.jit.load(str(path), map_location=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times[tool] = median_ms(lambda m=model: m(coord, atype, box), device, args.repeats)
        mib = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else float("nan"))
        print(f"{tool:5s} {times[tool]:10.2f} ms per call, peak GPU {mib:8.0f} MiB")
        del model
    if "dp" in times:
        print(f"ratio dp/dpx: {times['dp'] / times['dpx']:.2f}x")
    else:
        print("dp (DeePMD-kit) not found: no DeePMD-kit side")
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--disp", type=int, default=20)
    p.add_argument("--nloc", type=int, default=192, help="atoms per batch for the floor")
    p.add_argument("--dp", default=os.environ.get("DPX_DP"),
                   help="DeePMD-kit's dp executable (default: $DPX_DP or dp on PATH; "
                        "'none' skips the dp side)")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["ops", "train", "floor", "infer"])
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke test")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.steps, args.disp = 2, 6, 2
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (torch.cuda.is_available() is False): use --device cpu")
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# dpx GPU benchmark on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    if "ops" not in args.skip:
        per_op(device, dtype, args.repeats)
    e2e = end_to_end_all(args, device) if "train" not in args.skip else {}
    if "floor" not in args.skip:
        floor(args, device, e2e)
    if "infer" not in args.skip:
        inference(args, device, peer_dp(args.dp))


if __name__ == "__main__":
    main()
