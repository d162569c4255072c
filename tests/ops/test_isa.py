"""The AVX2+FMA build of the CPU kernels against the baseline (generic) build.

The library holds both builds of kernels/cpu/se_a.cpp and env_mat.cpp and picks one per
process (kernels/cpu/isa.h): avx2 where the CPU has AVX2 and FMA, generic where it has not or
where DPX_CPU_ISA=generic. This process runs the avx2 kernels; a subprocess with
DPX_CPU_ISA=generic computes the same outputs, and the two agree to 1e-12 relative in float64
(1e-5 in float32): FMA and the vector width change the rounding, not the sums.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _inputs import DTYPES, assert_close, deriv_args, em_args, env_inputs, needs_library, randn

from dpx.ops import _library

pytestmark = needs_library
OPS = torch.ops.dpx


def cpu_isa() -> str:
    """The build this process runs: "avx2" or "generic" (the library's dpx_cpu_isa)."""
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
    return out


def generic_outputs(path: Path) -> dict[str, torch.Tensor]:
    """outputs() from a process that runs the generic kernels."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch; "
              f"import test_isa as t; assert t.cpu_isa() == 'generic'; "
              f"torch.save(t.outputs(), {str(path)!r})")
    env = {**os.environ, "DPX_CPU_ISA": "generic"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    return torch.load(path)


@pytest.mark.skipif(not _library.LOADED or cpu_isa() != "avx2",
                    reason="the avx2 kernels are not in use here (no AVX2/FMA on this CPU, "
                           "a library built without them, or DPX_CPU_ISA=generic)")
def test_avx2_kernels_match_generic(tmp_path):
    """float64 to 1e-12 and float32 to 1e-5, relative to the largest entry (assert_close)."""
    avx2 = outputs()
    generic = generic_outputs(tmp_path / "generic.pt")
    assert avx2.keys() == generic.keys()
    for name, value in avx2.items():
        try:
            assert_close(value, generic[name])
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
