"""The AVX-512 and AVX2+FMA builds of the CPU kernels against the baseline (generic) build.

The library holds up to three builds of kernels/cpu/se_a.cpp, env_mat.cpp, embed.cpp and
nlist_count.cpp and picks one per process (kernels/cpu/isa.h): the widest the CPU has, capped
by DPX_CPU_ISA.
This process runs the widest; subprocesses with DPX_CPU_ISA=generic (and =avx2 where this one
runs avx512) compute the same outputs, and they agree to 1e-12 relative in float64 (1e-5 in
float32): FMA and the vector width change the rounding, not the sums. And no code compiled for
AVX2 or AVX-512 is reachable from the generic build through a shared symbol (CMakeLists.txt).
"""
from __future__ import annotations

import ctypes
import os
import platform
import re
import shutil
import subprocess
import sys
from bisect import bisect_left
from pathlib import Path

import pytest
import torch
from _inputs import DTYPES, assert_close, deriv_args, em_args, env_inputs, needs_library, randn

from dpx.ops import _library

pytestmark = needs_library
OPS = torch.ops.dpx


def cpu_isa() -> str:
    """The build this process runs: "avx512", "avx2" or "generic" (dpx_cpu_isa)."""
    lib = ctypes.CDLL(str(_library.LIBRARY))
    lib.dpx_cpu_isa.restype = ctypes.c_char_p
    return lib.dpx_cpu_isa().decode()


def outputs() -> dict[str, torch.Tensor]:
    """Every op of env_mat.cpp and se_a.cpp on fixed inputs, in float32 and float64. Widths m
    cover the vector blocks and their tails in both builds (m < 8, m % 8 = 4, m a multiple of
    16), odd nnei the two-slot loops' last slot."""
    out = {}
    for dtype in DTYPES:
        inp = env_inputs(0, dtype)
        gen = torch.Generator().manual_seed(0)
        x = inp["ext_coord"]
        ge = randn(gen, *inp["nlist"].shape, 4, dtype=dtype)
        t = randn(gen, *x.shape, dtype=dtype)
        out[f"env_mat_se_a {dtype}"] = OPS.env_mat_se_a(*em_args(inp))
        out[f"env_mat_se_a_vjp {dtype}"] = OPS.env_mat_se_a_vjp(ge, *deriv_args(inp))
        out[f"env_mat_se_a_jvp {dtype}"] = OPS.env_mat_se_a_jvp(t, *deriv_args(inp))
        out[f"env_mat_se_a_hvp {dtype}"] = OPS.env_mat_se_a_hvp(ge, t, *deriv_args(inp))
        for nnei, m, k in ((9, 3, 2), (138, 100, 16), (7, 32, 5)):
            shapes = ((nnei, 4), (nnei, m), (4, m), (4, m), (4, m), (m, k))
            em, g, gt, a, b, gd = (randn(gen, 6, *s, dtype=dtype) for s in shapes)
            tag = f"m={m} {dtype}"
            out[f"se_a_reduce {tag}"] = OPS.se_a_reduce(em, g)
            out[f"se_a_reduce_grad_em {tag}"] = OPS.se_a_reduce_grad_em(gt, g)
            out[f"se_a_reduce_grad_g {tag}"] = OPS.se_a_reduce_grad_g(gt, em)
            out[f"se_a_gram {tag}"] = OPS.se_a_gram(a, b, k)
            out[f"se_a_gram_grad_a {tag}"] = OPS.se_a_gram_grad_a(gd, b)
            out[f"se_a_gram_grad_b {tag}"] = OPS.se_a_gram_grad_b(gd, a)
        out.update(embed_outputs(gen, dtype))
    return out


def embed_outputs(gen, dtype) -> dict[str, torch.Tensor]:
    """The fused embedding ops (embed.cpp) on every activation; widths whose rows are not
    whole vectors in any build (3, 5) and ones that are (8, 16); em's layouts."""
    out = {}
    widths = [1, 3, 8, 16, 5]
    nparam = sum(i * o + o for i, o in zip(widths[:-1], widths[1:]))
    em = randn(gen, 200, 4, dtype=dtype)
    center = torch.sort(torch.randint(0, 9, (200,), generator=gen)).values
    params = 0.5 * randn(gen, nparam, dtype=dtype)
    gt, gge = randn(gen, 9, 4, 5, dtype=dtype), randn(gen, 200, 4, dtype=dtype)
    for act in range(6):
        net = (center, params, widths, act, False)
        tag = f"act={act} {dtype}"
        out[f"se_a_embed_reduce {tag}"] = OPS.se_a_embed_reduce(em, *net, 9, 0.1)
        out[f"se_a_embed_reduce_grad_em {tag}"] = OPS.se_a_embed_reduce_grad_em(gt, em, *net, 0.1)
        out[f"se_a_embed_reduce_grad_params {tag}"] = OPS.se_a_embed_reduce_grad_params(
            gt, em, *net, 0.1)
        for i, x in enumerate(OPS.se_a_embed_reduce_grad_em_grad(gge, gt, em, *net, 0.1)):
            out[f"se_a_embed_reduce_grad_em_grad[{i}] {tag}"] = x
    # em's other layouts: K = 8 with s apart (its last column, s_last), K = 1
    for k, s_last in ((8, True), (1, False)):
        em = randn(gen, 200, k + s_last, dtype=dtype)
        gt, gge = randn(gen, 9, k, 5, dtype=dtype), randn(gen, 200, k + s_last, dtype=dtype)
        net = (center, params, widths, 1, False)
        tag = f"K={k} s_last={s_last} {dtype}"
        out[f"se_a_embed_reduce {tag}"] = OPS.se_a_embed_reduce(em, *net, 9, 0.1, s_last)
        out[f"se_a_embed_reduce_grad_em {tag}"] = OPS.se_a_embed_reduce_grad_em(
            gt, em, *net, 0.1, s_last)
        out[f"se_a_embed_reduce_grad_params {tag}"] = OPS.se_a_embed_reduce_grad_params(
            gt, em, *net, 0.1, s_last)
        for i, x in enumerate(OPS.se_a_embed_reduce_grad_em_grad(gge, gt, em, *net, 0.1,
                                                                 s_last)):
            out[f"se_a_embed_reduce_grad_em_grad[{i}] {tag}"] = x
    return out


def outputs_of(isa: str, path: Path) -> dict[str, torch.Tensor]:
    """outputs() from a process that runs the `isa` kernels."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch; "
              f"import test_isa as t; assert t.cpu_isa() == {isa!r}, t.cpu_isa(); "
              f"torch.save(t.outputs(), {str(path)!r})")
    env = {**os.environ, "DPX_CPU_ISA": isa}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    return torch.load(path)


ISA = cpu_isa() if _library.LOADED else "generic"
NARROWER = [b for b in ("generic", "avx2") if (b, ISA) in
            (("generic", "avx2"), ("generic", "avx512"), ("avx2", "avx512"))]


@pytest.mark.skipif(not NARROWER, reason="only the generic kernels are in use here (no "
                    "AVX2/FMA on this CPU, a library built without them, or DPX_CPU_ISA)")
@pytest.mark.parametrize("narrower", NARROWER or ["generic"])
def test_vector_kernels_match_narrower_builds(tmp_path, narrower):
    """float64 to 1e-12 and float32 to 1e-5, relative to the largest entry (assert_close)."""
    wide = outputs()
    other = outputs_of(narrower, tmp_path / f"{narrower}.pt")
    assert wide.keys() == other.keys()
    for name, value in wide.items():
        try:
            assert_close(value, other[name])
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


NLIST_TESTS = Path(__file__).parents[1] / "nlist" / "test_neighbor_list.py"


@pytest.mark.skipif(not NARROWER, reason="only the generic kernels are in use here")
@pytest.mark.parametrize("narrower", NARROWER or ["generic"])
def test_neighbor_stat_in_narrower_builds(narrower):
    """The counting pass (nlist_count.cpp) is built per instruction set too, and must give
    the list's numbers bit for bit in each: the neighbor-list tests, each of which checks
    dpx::neighbor_stat against the list (assert_same_stat), pass in a process that runs the
    narrower build."""
    env = {**os.environ, "DPX_CPU_ISA": narrower}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "-p", "no:xdist", str(NLIST_TESTS)], env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


# Mangled names in dpx::cpu::avx2 or dpx::cpu::avx512, with the entities local to their
# functions (lambdas: _ZZ...): code that only the dispatch in kernels/cpu/isa.h reaches.
ISA_NAMESPACE = re.compile(r"_Z(Z)*N[KVrRO]*3dpx3cpu(4avx2|6avx512)")
GENERIC_NAMESPACE = re.compile(r"_Z(Z)*N[KVrRO]*3dpx3cpu7generic")
# In 64-bit mode C4 and C5 always open a VEX prefix and 62 an EVEX one (LES, LDS and BOUND do
# not exist there); only segment and address-size prefixes may come before them.
VEX_OPENERS = {"c4", "c5", "62"}
LEGACY_PREFIXES = {"26", "2e", "36", "3e", "64", "65", "67"}


def vex_addresses(library: Path) -> list[int]:
    """Addresses of the VEX- and EVEX-encoded (AVX and later) instructions in `library`."""
    out = subprocess.run(["objdump", "-d", "-w", str(library)], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split("\t")  # "  addr:", raw bytes, mnemonic (-w: one line each)
        if len(fields) < 3 or not fields[0].strip().endswith(":"):
            continue
        raw = [b for b in fields[1].split() if b not in LEGACY_PREFIXES]
        if raw and raw[0] in VEX_OPENERS:
            found.append(int(fields[0].strip()[:-1], 16))
    return found


def global_functions(library: Path) -> list[tuple[str, int, int]]:
    """(mangled name, address, size) of every global function `library` defines: the dynamic
    symbols, and the static ones where the library is not stripped."""
    found = set()
    for dynamic in (["-D"], []):
        out = subprocess.run(["nm", *dynamic, "--defined-only", "-S", str(library)],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[2] in ("T", "W", "i"):  # strong, weak, ifunc
                found.add((fields[3].split("@")[0], int(fields[0], 16), int(fields[1], 16)))
    return sorted(found)


def with_vector_code(functions, vex: list[int]) -> list[str]:
    """The names among `functions` whose bytes hold a VEX or EVEX instruction (`vex` sorted)."""
    found = []
    for name, start, size in functions:
        first = bisect_left(vex, start)
        if first < len(vex) and vex[first] < start + size:
            found.append(name)
    return found


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 builds only")
@pytest.mark.skipif(not (shutil.which("nm") and shutil.which("objdump")),
                    reason="needs nm and objdump (binutils)")
def test_generic_path_reaches_no_vector_code():
    """The AVX2 and AVX-512 objects may share only their own namespaces with the rest of the
    library. A global symbol that such an object defines elsewhere, an implicit instantiation of
    std::vector's members say, is a COMDAT copy that the linker may pick for every caller: the
    baseline build would then run AVX code, and die with SIGILL on a CPU without it. So no
    global function outside dpx::cpu::avx2/avx512 may hold a VEX/EVEX instruction."""
    library = Path(_library.LIBRARY)
    vex = vex_addresses(library)
    functions = global_functions(library)
    generic = [f for f in functions if GENERIC_NAMESPACE.match(f[0])]
    if with_vector_code(generic, vex):
        pytest.skip("the baseline build itself uses AVX (CXXFLAGS=-march=...): nothing to guard")
    vector_builds = [f for f in functions if ISA_NAMESPACE.match(f[0])]
    assert not vector_builds or with_vector_code(vector_builds, vex), \
        "no VEX/EVEX instruction found in the AVX2/AVX-512 kernels: objdump's output not parsed"
    leaks = with_vector_code([f for f in functions if not ISA_NAMESPACE.match(f[0])], vex)
    if leaks and shutil.which("c++filt"):
        leaks = subprocess.run(["c++filt"], input="\n".join(leaks), capture_output=True,
                               text=True).stdout.splitlines()
    assert not leaks, ("global functions outside dpx::cpu::avx2/avx512 with AVX code (built "
                       "with -mavx2/-mavx512*, reachable from the generic build):\n  "
                       + "\n  ".join(leaks))
