"""dpx's PyTorch versions of DeePMD-kit's tabulate ops (dpx.ops.reference) against a
scalar loop written from DeePMD-kit 3.2.0's CPU kernel semantics (measured against that
kernel: intervals of stride0 then stride1, linear extension with the boundary slope outside
[lower, max), the rows from the first repeat of the last row's input counted as that row
times their number), and their derivatives by gradcheck / gradgradcheck. Against DeePMD-kit
itself: tests/fidelity/test_freeze_fidelity.py (a `dp compress` file evaluated by dpx)."""
from types import SimpleNamespace

import pytest
import torch

from dpx.ops.deepmd import unsupported_compression
from dpx.ops.reference import tabulate_fusion_se_a, tabulate_fusion_se_r

INFO = torch.tensor([-1.0, 1.0, 2.0, 0.1, 0.2, -1.0], dtype=torch.float64)
NINT, M = 25, 3  # (1 - -1) / 0.1 + (2 - 1) / 0.2 intervals


def loop_value(table, x):
    lower, upper, top, s0, s1 = [float(v) for v in INFO[:5]]
    first = int((upper - lower) / s0)
    last = first + int((top - upper) / s1) - 1

    def poly(a, t, d=0):
        c = [float(v) for v in a]
        if d == 0:
            return sum(c[k] * t ** k for k in range(6))
        return sum(k * c[k] * t ** (k - 1) for k in range(1, 6))
    out = []
    for k in range(M):
        if x < lower:
            a = table[0, 6 * k:6 * k + 6]
            out.append(poly(a, 0.0) + poly(a, 0.0, 1) * (x - lower))
        elif x < top:
            idx = int((x - lower) / s0) if x < upper else first + int((x - upper) / s1)
            start = idx * s0 + lower if x < upper else (idx - first) * s1 + upper
            out.append(poly(table[idx, 6 * k:6 * k + 6], x - start))
        else:
            a, t = table[last, 6 * k:6 * k + 6], top - ((last - first) * s1 + upper)
            out.append(poly(a, t) + poly(a, t, 1) * (x - top))
    return torch.tensor(out, dtype=torch.float64)


def loop_se_a(table, em_x, em):
    nloc, nnei = em.shape[:2]
    x = em_x.reshape(nloc, nnei)
    out = torch.zeros(nloc, 4, M, dtype=torch.float64)
    for i in range(nloc):
        for j in range(nnei):
            repeat = float(x[i, j]) == float(x[i, -1])
            w = nnei - j if repeat else 1
            out[i] += w * em[i, j][:, None] * loop_value(table, float(x[i, j]))[None, :]
            if repeat:
                break
    return out


def inputs(seed=0, padded=True):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(NINT, M * 6, generator=g, dtype=torch.float64)
    em = 1.5 * torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    pad = torch.tensor([0.3, 0.0, 0.0, 0.0], dtype=torch.float64)
    if padded:
        em[:, 5:] = pad  # a sorted list's padding
        em[1, 2:] = pad
    em[2, 0, 0] = -3.0  # below the table
    em[2, 1, 0] = 2.7   # above it
    return table, em[:, :, :1].reshape(-1, 1).clone(), em


def test_se_a_equals_the_kernel_loop():
    table, em_x, em = inputs()
    (out,) = tabulate_fusion_se_a(table, INFO, em_x, em, M)
    assert torch.allclose(out, loop_se_a(table, em_x, em), rtol=1e-13, atol=1e-13)


def test_se_r_equals_the_kernel_loop():
    table, em_x, _ = inputs()
    s = em_x.reshape(3, 7)
    (out,) = tabulate_fusion_se_r(table, INFO, s, M)
    want = torch.stack([torch.stack([loop_value(table, float(v)) for v in row]) for row in s])
    assert torch.allclose(out, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("op", ["se_a", "se_r"])
def test_derivatives(op):
    # no padding: perturbing one of several tied rows would move the repeat rule's cut
    table, em_x, em = inputs(1, padded=False)
    if op == "se_a":
        def f(x, e):
            return tabulate_fusion_se_a(table, INFO, x, e, M)[0]
        args = (em_x.requires_grad_(), em.requires_grad_())
    else:
        def f(x):
            return tabulate_fusion_se_r(table, INFO, x, M)[0]
        args = (em_x.reshape(3, 7).clone().requires_grad_(),)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_compressed_descriptors_dpx_cannot_evaluate_are_named():
    def module(name):
        descriptor = SimpleNamespace(original_name=name, compress=True)
        return SimpleNamespace(atomic_model=SimpleNamespace(descriptor=descriptor))
    assert unsupported_compression(module("DescrptSeA")) is None
    assert unsupported_compression(module("DescrptSeR")) is None
    assert unsupported_compression(module("DescrptSeT")) == "descrptset"
    plain = SimpleNamespace(atomic_model=SimpleNamespace(descriptor=SimpleNamespace(
        original_name="DescrptSeT", compress=False)))
    assert unsupported_compression(plain) is None
