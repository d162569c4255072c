"""se_e2_a ops: dpx against their pure-PyTorch reference twins on a water frame.

One frame of 192 atoms (64 O, 128 H) in a 12.44 A cubic box, float64, rcut 6 A, rcut_smth
0.5 A, sel [46, 92] (nnei 138), M1 = 100, axis_neuron 16: the frame comes from
../shared/water/data/data_0 when it is there, else from random water-like positions. The
extended system and the neighbor list are built by brute force in numpy (not timed).

Each op is timed three ways, with the reference twin and with dpx:
  fwd   the op alone;
  bwd   forward and first backward (the gradient of a weighted sum of the outputs);
  dbl   forward and double backward, shaped like a force loss: E = <w, op(inputs)>,
        F = dE/d(input) with create_graph, loss = |F|^2, loss.backward() to the weights.
The headline is the environment matrix plus the reduction, forward and double backward
together: em = env_mat(x); G = tanh(s a + b) (a one-layer embedding of s = em[..., 0]);
D, T = se_a_descriptor(em, G, 16); E = D @ w; F = dE/dx (create_graph); loss = |F|^2;
loss.backward() (to a, b, w and x). Two variants follow it: a realistic embedding net
1-25-50-100 in place of the one layer, and G a weight of its own (no embedding: the ops and
their autograd chain alone). Prints medians in ms and ref/dpx (> 1: dpx is faster); --profile
splits the headline double backward between the dpx ops and the rest. Columns: medians, then
the best run of each (the least disturbed by other processes on a shared machine).

    python benchmarks/ops.py [--repeats 15] [--threads 2] [--profile]
"""
from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

RCUT, RCUT_SMTH, SEL, M1, AXIS = 6.0, 0.5, (46, 92), 100, 16
WATER = Path(__file__).resolve().parents[1] / ".." / "shared" / "water" / "data" / "data_0"


# ----------------------------------------------------------------------------------------
# the frame: coordinates, extended system, neighbor list, statistics
# ----------------------------------------------------------------------------------------
def water_frame(seed: int = 0):
    """(coord [192, 3], atype [192], box length, source description)."""
    if (WATER / "set.000" / "coord.npy").exists():
        coord = np.load(WATER / "set.000" / "coord.npy")[0].reshape(-1, 3)
        box = np.load(WATER / "set.000" / "box.npy")[0].reshape(3, 3)
        atype = np.loadtxt(WATER / "type.raw", dtype=np.int64)
        return coord, atype, float(box[0, 0]), f"{WATER.resolve()} frame 0"
    rng = np.random.default_rng(seed)
    length = 12.44
    oxygens: list[np.ndarray] = []
    while len(oxygens) < 64:   # O-O >= 2.5 A
        p = rng.uniform(0, length, 3)
        d = np.array(oxygens) - p if oxygens else np.zeros((0, 3))
        d -= length * np.round(d / length)
        if not len(d) or np.linalg.norm(d, axis=-1).min() > 2.5:
            oxygens.append(p)
    coord, atype = [], []
    for o in oxygens:   # two H at 0.96 A, 104.5 degrees apart
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        v = rng.normal(size=3)
        v -= v @ u * u
        v /= np.linalg.norm(v)
        ang = np.deg2rad(104.5) / 2
        coord += [o, o + 0.96 * (np.cos(ang) * u + np.sin(ang) * v),
                  o + 0.96 * (np.cos(ang) * u - np.sin(ang) * v)]
        atype += [0, 1, 1]
    return np.array(coord) % length, np.array(atype), length, "synthetic water (random molecules)"


def extend_and_list(coord, atype, length):
    """Periodic images within rcut of the cell (locals first) and DeePMD-kit's typed list."""
    coord = coord % length
    nloc = len(coord)
    shifts = sorted(itertools.product((-1, 0, 1), repeat=3), key=lambda s: sum(map(abs, s)))
    ext, ext_type = [coord], [atype]
    for s in shifts[1:]:
        img = coord + np.array(s) * length
        keep = ((img > -RCUT) & (img < length + RCUT)).all(-1)
        ext.append(img[keep])
        ext_type.append(atype[keep])
    ext, ext_type = np.concatenate(ext), np.concatenate(ext_type)
    d = np.linalg.norm(ext[None, :, :] - coord[:, None, :], axis=-1)
    d[np.arange(nloc), np.arange(nloc)] = np.inf
    nlist = np.full((nloc, sum(SEL)), -1, dtype=np.int64)
    sec = [0, *itertools.accumulate(SEL)]
    for i in range(nloc):
        order = np.argsort(d[i], kind="stable")
        order = order[d[i, order] <= RCUT][: sum(SEL)]
        for t in range(len(SEL)):
            of_t = order[ext_type[order] == t][: SEL[t]]
            nlist[i, sec[t]: sec[t] + len(of_t)] = of_t
    return ext, nlist


def statistics_of(ext, nlist, atype):
    """davg/dstd as DeePMD-kit computes them (deepmd-compat §3.3) from this frame."""
    from dpx.ops import reference
    ntypes, nnei = len(SEL), sum(SEL)
    one = torch.ones(ntypes, nnei, 4, dtype=torch.float64)
    raw = reference.env_mat_se_a(ext, nlist, atype, 0 * one, one, RCUT, RCUT_SMTH)[0]
    davg, dstd = torch.zeros_like(one), torch.ones_like(one)
    for t in range(ntypes):
        rows = raw[atype[0] == t]
        r, a = rows[..., 0], rows[..., 1:]
        davg[t, :, 0] = r.mean()
        dstd[t, :, 0] = r.std(unbiased=False).clamp(min=1e-2)
        dstd[t, :, 1:] = a.pow(2).mean().sqrt().clamp(min=1e-2)
    return davg, dstd


# ----------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------
def paired_times_ms(fns, repeats: int) -> list[tuple[float, float]]:
    """(median, best) wall time of each callable; the calls are interleaved so that load from
    other processes falls on all of them alike (the best is the least disturbed run)."""
    for fn in fns:   # warm-up: allocator, autograd registrations, first-call paths
        fn()
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [(1e3 * statistics.median(ts), 1e3 * min(ts)) for ts in times]


def cases(x0, nlist, atype, davg, dstd):
    """{row: {mode: {impl: callable}}} for every op and the headline."""
    import dpx.ops
    from dpx.ops import reference

    gen = torch.Generator().manual_seed(0)
    nnei = nlist.shape[2]

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)

    def env(impl):
        fn = dpx.ops.env_mat_se_a if impl == "dpx" else reference.env_mat_se_a
        return lambda x: fn(x, nlist, atype, davg, dstd, RCUT, RCUT_SMTH)

    def reduce(impl):
        return (torch.ops.dpx if impl == "dpx" else reference).se_a_reduce

    def gram(impl):
        return (torch.ops.dpx if impl == "dpx" else reference).se_a_gram

    def descriptor(impl):
        if impl == "dpx":
            return lambda em, g: dpx.ops.se_a_descriptor(em, g, AXIS)[0]

        def ref(em, g):
            t = reference.se_a_reduce(em, g)
            return reference.se_a_gram(t, t, AXIS).flatten(-2)
        return ref

    em0 = reference.env_mat_se_a(x0, nlist, atype, davg, dstd, RCUT, RCUT_SMTH).detach()
    a_emb, b_emb = rnd(M1, scale=0.5), rnd(M1, scale=0.5)
    g0 = torch.tanh(em0[..., 0:1] * a_emb + b_emb)
    t0 = reference.se_a_reduce(em0, g0)
    w_em, w_t, w_d = rnd(nnei, 4), rnd(4, M1), rnd(M1, AXIS)
    w_fit = rnd(M1 * AXIS, scale=0.05)

    def three(make, inputs, weight):
        """fwd / bwd / dbl for y = op(*inputs): E = <weight, y>, gradients to inputs[0]
        (forces) and, through the double backward, to every other input and the weight."""
        def fwd():
            with torch.no_grad():
                make()(*inputs)

        def bwd():
            ins = [t.detach().requires_grad_(True) for t in inputs]
            (make()(*ins) * weight).sum().backward()

        def dbl():
            ins = [t.detach().requires_grad_(True) for t in inputs]
            w = weight.detach().requires_grad_(True)
            e = (make()(*ins) * w).sum()
            (f,) = torch.autograd.grad(e, ins[0], create_graph=True)
            f.pow(2).sum().backward()
        return {"fwd": fwd, "bwd": bwd, "dbl": dbl}

    def headline(impl, embed):
        def step(mode):
            x = x0.detach().requires_grad_(mode != "fwd")
            ps = [p.detach().requires_grad_(mode != "fwd") for p in embed[1]] + \
                [w_fit.detach().requires_grad_(mode != "fwd")]
            with torch.set_grad_enabled(mode != "fwd"):
                em = env(impl)(x)
                g = embed[0](em[..., 0:1], ps[:-1])
                e = (descriptor(impl)(em, g) @ ps[-1]).sum()
                if mode == "fwd":
                    return
                if mode == "bwd":
                    e.backward()
                    return
                (f,) = torch.autograd.grad(e, x, create_graph=True)
                f.pow(2).sum().backward()
        return {m: (lambda m=m: step(m)) for m in ("fwd", "bwd", "dbl")}

    one_layer = (lambda s, p: torch.tanh(s * p[0] + p[1]), [a_emb, b_emb])
    sizes = (1, 25, 50, 100)
    mlp_params = [rnd(i, o, scale=1 / i**0.5) for i, o in itertools.pairwise(sizes)] + \
        [rnd(o, scale=0.1) for o in sizes[1:]]

    def mlp(s, p):
        h = s
        for w, b in zip(p[:3], p[3:]):
            h = torch.tanh(h @ w + b)
        return h

    rows = {}
    for impl in ("reference", "dpx"):
        rows.setdefault("env_mat_se_a", {})[impl] = three(
            lambda impl=impl: env(impl), [x0], w_em)
        rows.setdefault("se_a_reduce", {})[impl] = three(
            lambda impl=impl: reduce(impl), [em0, g0], w_t)
        rows.setdefault("se_a_gram", {})[impl] = three(
            lambda impl=impl: (lambda t: gram(impl)(t, t, AXIS)), [t0], w_d)
        rows.setdefault("se_a_descriptor", {})[impl] = three(
            lambda impl=impl: descriptor(impl), [em0, g0], w_fit)
        rows.setdefault("HEADLINE env_mat+descriptor", {})[impl] = headline(impl, one_layer)
        rows.setdefault("  same, embedding 1-25-50-100", {})[impl] = headline(
            impl, (mlp, mlp_params))
        # G a weight of its own (independent of s): the ops and their autograd chain without
        # the G-sized elementwise work of an embedding net, which both sides share
        rows.setdefault("  same, G a leaf weight", {})[impl] = headline(
            impl, (lambda s, p: p[0], [g0]))
    return rows


def profile_headline(impls) -> None:
    """Where the headline double backward spends its time: the dpx ops (and the autograd
    nodes that wrap them) against everything else (the embedding, the fitting, autograd)."""
    from torch.profiler import ProfilerActivity, profile
    for impl in ("reference", "dpx"):
        fn = impls[impl]["dbl"]
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                fn()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 5e3
        ops = sum(e.self_cpu_time_total for e in events if "dpx" in e.key) / 5e3
        print(f"\n{impl}: {total:.1f} ms per step under the profiler, {ops:.1f} ms in dpx ops")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
            ms = e.self_cpu_time_total / 5e3
            print(f"  {e.key[:58]:<58}{ms:9.2f} ms {e.count // 5:4d} calls")


def kernel_isa() -> str:
    """The build of dpx's CPU kernels this process runs: "avx2" or "generic" (DPX_CPU_ISA)."""
    import ctypes

    from dpx.ops import _library
    lib = ctypes.CDLL(str(_library.LIBRARY))
    if not hasattr(lib, "dpx_cpu_isa"):   # a library from before the AVX2 build
        return "generic"
    lib.dpx_cpu_isa.restype = ctypes.c_char_p
    return lib.dpx_cpu_isa().decode()


def machine_info() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, "
            f"python {platform.python_version()}, dpx CPU kernels: {kernel_isa()}")


def main() -> None:
    import dpx.ops

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="run the rows whose name contains this")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler table of the headline double backward (dpx)")
    args = parser.parse_args()
    assert dpx.ops.LOADED, "the dpx op library is not built: pip install --no-build-isolation ."
    torch.set_num_threads(args.threads)

    coord, atype_np, length, source = water_frame()
    ext_np, nlist_np = extend_and_list(coord, atype_np, length)
    x0 = torch.from_numpy(ext_np)[None]
    nlist = torch.from_numpy(nlist_np)[None]
    atype = torch.from_numpy(atype_np)[None]
    davg, dstd = statistics_of(x0, nlist, atype)
    filled = (nlist >= 0).sum(-1).double().mean()
    print(machine_info())
    print(f"frame: {source}; nloc {nlist.shape[1]}, nall {x0.shape[1]}, nnei {nlist.shape[2]} "
          f"({filled:.1f} filled on average), M1 {M1}, axis_neuron {AXIS}, float64")
    rows = cases(x0, nlist, atype, davg, dstd)
    print(f"{'op':<32}{'mode':>5}{'ref ms':>10}{'dpx ms':>10}{'ref/dpx':>9}"
          f"{'best ref':>10}{'best dpx':>10}{'ref/dpx':>9}")
    for name, impls in rows.items():
        if args.only and args.only not in name:
            continue
        for mode in ("fwd", "bwd", "dbl"):
            (ref, ref_best), (new, new_best) = paired_times_ms(
                [impls["reference"][mode], impls["dpx"][mode]], args.repeats)
            print(f"{name:<32}{mode:>5}{ref:>10.2f}{new:>10.2f}{ref / new:>9.2f}"
                  f"{ref_best:>10.2f}{new_best:>10.2f}{ref_best / new_best:>9.2f}", flush=True)
    if args.profile:
        profile_headline(rows["HEADLINE env_mat+descriptor"])

if __name__ == "__main__":
    main()
