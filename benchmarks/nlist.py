"""Neighbor search: dpx against vesin on water-like systems.

Water density (0.1 atoms/A^3, O:H = 1:2) in a cubic periodic box, rcut 6 A, float64: a
lattice of molecules with random orientations and jitter, replicated to 1k, 10k and 100k
atoms. dpx builds the extended system and DeePMD-kit's sorted, type-split neighbor list
(dpx.ops.neighbor_list, the public function, so argument checks and the differentiable
ext_coord are included); vesin builds an unsorted full pair list (i, j, shift, distance).
Both run on the same number of threads (--threads, default torch's). Prints the median of
several repeats, taken in turns, and the ratio dpx/vesin (< 1: dpx is faster).

    python benchmarks/nlist.py [--sizes 1000 10000 100000] [--repeats 7] [--threads N]
    python benchmarks/nlist.py --gpu-default --sizes 192 768 3000   # issue 26's choice

--gpu-default times what a GPU runs until `dpx check` passed dpx's CUDA search: the batched
PyTorch search (dpx.ops.nlist_generic, the op's outputs bit for bit) against the CPU kernel
and vesin-torch's pair search (a raw unsorted pair list: turning it into DeePMD-kit's sorted,
typed, padded list would add a sort on top), all on this machine's CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

RCUT = 6.0
SEL = [60, 120]      # water at rcut 6 averages ~30 O and ~60 H neighbors; DeePMD uses [46, 92]
MOLECULES_PER_A3 = 0.1 / 3


def water_like(natoms: int, seed: int = 0):
    """Molecules on a cubic lattice, jittered, each with two H at 0.96 A in random directions."""
    rng = np.random.default_rng(seed)
    m = max(1, round((natoms / 3) ** (1 / 3)))
    a = MOLECULES_PER_A3 ** (-1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    o = (grid + rng.uniform(-0.15, 0.15, grid.shape)) * a
    u = rng.normal(size=(len(o), 2, 3))
    h = o[:, None, :] + 0.96 * u / np.linalg.norm(u, axis=-1, keepdims=True)
    coord = np.concatenate([o[:, None, :], h], 1).reshape(-1, 3)
    atype = np.tile([0, 1, 1], len(o))
    return coord, atype, m * a


def median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function; the functions take turns, so that load from
    elsewhere on the machine falls on all of them alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def gpu_default(sizes: list[int], repeats: int) -> None:
    import vesin.torch as vesin_torch

    from dpx.ops import nlist_generic
    print(f"rcut {RCUT} A, sel {SEL}, float64, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, vesin-torch {vesin_torch.__version__}")
    print(f"{'natoms':>8} {'kernel ms':>10} {'generic ms':>11} {'vesin-torch ms':>15} "
          f"{'generic/kernel':>15} {'generic/vesin':>14}")
    for n in sizes:
        coord, atype, length = water_like(n)
        c, t = torch.from_numpy(coord)[None], torch.from_numpy(atype)[None]
        b = torch.from_numpy(np.eye(3) * length).reshape(1, 9)
        calc = vesin_torch.NeighborList(cutoff=RCUT, full_list=True)
        fns = [lambda: torch.ops.dpx.neighbor_list(c, t, b, RCUT, SEL),
               lambda: nlist_generic.neighbor_list(c, t, b, RCUT, SEL),
               lambda: calc.compute(c[0], b.reshape(3, 3), True, "ijSd")]
        k, g, v = median_times(fns, repeats)
        print(f"{len(coord):>8} {1e3 * k:>10.2f} {1e3 * g:>11.2f} {1e3 * v:>15.2f} "
              f"{g / k:>15.2f} {g / v:>14.2f}")


def main() -> None:
    import vesin

    import dpx.ops

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="threads for both (default: torch's)")
    parser.add_argument("--gpu-default", action="store_true",
                        help="the batched PyTorch search against the kernel and vesin-torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    assert dpx.ops.LOADED, "the dpx op library is not built: pip install --no-build-isolation ."
    if args.gpu_default:
        return gpu_default(args.sizes, args.repeats)

    print(f"rcut {RCUT} A, sel {SEL}, float64, {args.threads} threads, torch {torch.__version__}, "
          f"vesin {vesin.__version__}")
    print(f"{'natoms':>8} {'nall':>8} {'pairs':>10} {'dpx ms':>9} {'vesin ms':>9} {'dpx/vesin':>9}")
    for n in args.sizes:
        coord, atype, length = water_like(n)
        box = np.eye(3) * length
        c = torch.from_numpy(coord)[None]
        t = torch.from_numpy(atype)[None]
        b = torch.from_numpy(box).reshape(1, 9)

        def run_dpx():
            return dpx.ops.neighbor_list(c, t, b, RCUT, SEL)

        calc = vesin.NeighborList(cutoff=RCUT, full_list=True, n_threads=args.threads)

        def run_vesin():
            return calc.compute(points=coord, box=box, periodic=True, quantities="ijSd")

        out = run_dpx()
        i, _, _, _ = run_vesin()
        assert int(out.nnei_max.max()) <= max(SEL), "sel overflows: raise SEL"
        # same pair count: every pair within rcut is in the list when sel does not overflow
        assert int((out.nlist >= 0).sum()) == len(i), "dpx and vesin disagree on the pairs"
        t_dpx, t_vesin = median_times([run_dpx, run_vesin], args.repeats)
        print(f"{len(coord):>8} {out.ext_coord.shape[1]:>8} {len(i):>10} {1e3 * t_dpx:>9.2f} "
              f"{1e3 * t_vesin:>9.2f} {t_dpx / t_vesin:>9.2f}")


if __name__ == "__main__":
    main()
