"""dpx::se_a_reduce / se_a_gram families and dpx.ops.se_a_descriptor: the per-op test matrix.

Each op against its reference twin (float32 and float64, several leading shapes, strided
inputs), gradcheck and gradgradcheck in float64 w.r.t. every tensor argument, opcheck, and a
clear error naming the argument for bad input. The matrix runs on every device in DEVICES (CUDA
where a GPU is present), plus CUDA against CPU.
"""
from __future__ import annotations

import pytest
import torch
from _inputs import DEVICES, DTYPES, SEEDS, assert_close, needs_cuda, needs_library, on, randn

import dpx.ops
from dpx.ops import reference

pytestmark = needs_library
OPS = torch.ops.dpx
BAD = (TypeError, ValueError, RuntimeError)
LEADS = ((2, 3), (5,), (2, 1, 2), ())


def _operands(seed, dtype=torch.float64, lead=(2, 3), nnei=7, m=8, k=3):
    """Arguments of every op of the two families, consistent with each other."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: randn(gen, *lead, *s, dtype=dtype)
    return {"em": r(nnei, 4), "g": r(nnei, m), "grad_t": r(4, m), "a": r(4, m), "b": r(4, m),
            "grad_d": r(m, k), "k": k}


def _calls(o):
    """(op name, args) of every op on the operands o."""
    return [
        ("se_a_reduce", (o["em"], o["g"])),
        ("se_a_reduce_grad_em", (o["grad_t"], o["g"])),
        ("se_a_reduce_grad_g", (o["grad_t"], o["em"])),
        ("se_a_gram", (o["a"], o["b"], o["k"])),
        ("se_a_gram_grad_a", (o["grad_d"], o["b"])),
        ("se_a_gram_grad_b", (o["grad_d"], o["a"])),
    ]


NAMES = [name for name, _ in _calls(_operands(0))]


# ----------------------------------------------------------------------------------------
# forward against the reference
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lead", LEADS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_ops_match_reference(seed, dtype, lead, device):
    o = on(device, _operands(seed, dtype, lead))
    for name, args in _calls(o):
        out = getattr(OPS, name)(*args)
        ref = getattr(reference, name)(*args)
        assert out.shape == ref.shape and out.dtype == dtype, name
        assert_close(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_ops_accept_strided_inputs(device):
    """Non-contiguous views (transposes, slices) give the same numbers as contiguous ones."""
    o = on(device, _operands(4, lead=(3, 2)))
    strided = {k: (v.transpose(0, 1).contiguous().transpose(0, 1) if k != "k" else v)
               for k, v in o.items()}
    strided["g"] = torch.cat([o["g"], o["g"]], dim=-1)[..., ::2]   # stride 2 in M
    strided["g"][...] = o["g"]
    assert not strided["em"].is_contiguous() and not strided["g"].is_contiguous()
    for (name, args), (_, sargs) in zip(_calls(o), _calls(strided)):
        assert_close(getattr(OPS, name)(*sargs), getattr(reference, name)(*args))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_leading_dimension(device):
    o = on(device, _operands(0, lead=(2, 0)))
    for name, args in _calls(o):
        out = getattr(OPS, name)(*args)
        assert out.shape == getattr(reference, name)(*args).shape, name


def test_results_do_not_depend_on_thread_count():
    o = _operands(3, lead=(40,), nnei=9, m=12, k=5)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append([getattr(OPS, name)(*args) for name, args in _calls(o)])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    o = _operands(5, dtype, lead=(7, 3), nnei=13, m=40, k=6)
    for (name, args), (_, cargs) in zip(_calls(o), _calls(on("cuda", o))):
        out = getattr(OPS, name)(*cargs)
        assert out.is_cuda, name
        assert_close(out.cpu(), getattr(OPS, name)(*args))


def test_gram_grad_b_zero_beyond_axis_neuron():
    o = _operands(1, m=8, k=3)
    gb = OPS.se_a_gram_grad_b(o["grad_d"], o["a"])
    assert (gb[..., 3:] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_descriptor_matches_reference(seed, dtype, device):
    o = on(device, _operands(seed, dtype, lead=(2, 5), nnei=9, m=6))
    d, t = dpx.ops.se_a_descriptor(o["em"], o["g"], 4)
    t_ref = reference.se_a_reduce(o["em"], o["g"])
    d_ref = reference.se_a_gram(t_ref, t_ref, 4).reshape(2, 5, 24)
    assert d.shape == (2, 5, 24) and t.shape == (2, 5, 4, 6)
    assert_close(t, t_ref)
    assert_close(d, d_ref)
    # deepmd-compat §3.5 written out: D[m, n] = sum_a T[a, m] T[a, n], flattened m * M2 + n
    tt = (o["em"].double().transpose(-1, -2) @ o["g"].double()) / 9
    assert_close(d, (tt.transpose(-1, -2) @ tt[..., :4]).flatten(-2), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_descriptor_second_derivative_matches_reference(dtype, device):
    """Gradient of a gradient (the force-loss shape) through the public function."""
    o = on(device, _operands(6, dtype, lead=(3,), nnei=5, m=6))
    gen = torch.Generator().manual_seed(9)
    w = randn(gen, 3, 24, dtype=dtype).to(device)
    v = randn(gen, 3, 5, 4, dtype=dtype).to(device)

    def run(descriptor):
        em = o["em"].clone().requires_grad_(True)
        g = o["g"].clone().requires_grad_(True)
        d, t = descriptor(em, g)
        (gem,) = torch.autograd.grad((d * w).sum() + t.pow(2).sum(), em, create_graph=True)
        return torch.autograd.grad((gem * v).sum(), (em, g))

    def ref(em, g):
        t = reference.se_a_reduce(em, g)
        return reference.se_a_gram(t, t, 4).flatten(-2), t

    for a, b in zip(run(lambda em, g: dpx.ops.se_a_descriptor(em, g, 4)), run(ref)):
        assert_close(a, b)


# ----------------------------------------------------------------------------------------
# gradcheck / gradgradcheck in float64
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_gradcheck_ops(seed, name, device):
    o = on(device, _operands(seed, lead=(2,), nnei=3, m=4, k=2))
    (args,) = [a for n, a in _calls(o) if n == name]
    tensors = [a.clone().requires_grad_(True) for a in args if isinstance(a, torch.Tensor)]
    extra = [a for a in args if not isinstance(a, torch.Tensor)]

    def fn(*ts):
        return getattr(OPS, name)(*ts, *extra)

    assert torch.autograd.gradcheck(fn, tensors)
    assert torch.autograd.gradgradcheck(fn, tensors)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_gradcheck_descriptor(seed, device):
    o = on(device, _operands(seed, lead=(2,), nnei=3, m=4))
    em, g = (o[k].clone().requires_grad_(True) for k in ("em", "g"))

    def fn(em, g):
        return dpx.ops.se_a_descriptor(em, g, 2)

    assert torch.autograd.gradcheck(fn, (em, g))
    assert torch.autograd.gradgradcheck(fn, (em, g))


# ----------------------------------------------------------------------------------------
# opcheck
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(dtype, name, device):
    o = on(device, _operands(2, dtype, lead=(2, 3), nnei=4, m=5, k=2))
    (args,) = [a for n, a in _calls(o) if n == name]
    op = getattr(OPS, name).default
    torch.library.opcheck(op, args)
    grad_args = tuple(a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a
                      for a in args)
    torch.library.opcheck(op, grad_args)


# ----------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------
def _public_bad():
    o = _operands(0, lead=(2, 3), nnei=5, m=6)
    em, g = o["em"], o["g"]
    return [
        ("em", (em.long(), g, 2)),
        ("em", (em[..., :3], g[..., :], 2)),
        ("em", (em[0, 0, 0], g, 2)),                    # 1-d
        ("em", ([[0.0] * 4], g, 2)),
        ("g", (em, g[:, :2], 2)),                        # leading shape
        ("g", (em, g[..., :4, :], 2)),                   # nnei
        ("g", (em, g.float(), 2)),
        ("g", (em.float(), g, 2)),
        ("g", (em, g[None], 2)),
        ("axis_neuron", (em, g, 7)),
        ("axis_neuron", (em, g, 0)),
        ("axis_neuron", (em, g, 2.0)),
    ]


@pytest.mark.parametrize("name, args", _public_bad(),
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(_public_bad())])
def test_bad_input_public(name, args):
    with pytest.raises(BAD, match=name):
        dpx.ops.se_a_descriptor(*args)


def _op_bad():
    o = _operands(0, lead=(2, 3), nnei=5, m=6, k=2)
    em, g, gt, a, b, gd = (o[k] for k in ("em", "g", "grad_t", "a", "b", "grad_d"))
    return [
        ("se_a_reduce", "em", (em.long(), g)),
        ("se_a_reduce", "em", (em[..., :3], g)),
        ("se_a_reduce", "em", (em[0, 0, 0], g)),
        ("se_a_reduce", "em|g", (em, g.float())),
        ("se_a_reduce", "g", (em, g[:, :2])),
        ("se_a_reduce", "g", (em, g[..., :4, :])),
        ("se_a_reduce", "g", (em, g[0, 0, 0, 0])),
        ("se_a_reduce", "g", (em, g.long())),
        ("se_a_reduce_grad_em", "g", (gt, g.long())),
        ("se_a_reduce_grad_em", "g", (gt, g[0, 0, 0])),
        ("se_a_reduce_grad_em", "grad_t|g", (gt.float(), g)),
        ("se_a_reduce_grad_em", "grad_t", (gt[..., :5], g)),
        ("se_a_reduce_grad_em", "grad_t", (gt[..., :3, :], g)),
        ("se_a_reduce_grad_em", "grad_t", (gt[:1], g)),
        ("se_a_reduce_grad_g", "grad_t|em", (gt, em.float())),
        ("se_a_reduce_grad_g", "em", (gt, em[..., :2])),
        ("se_a_reduce_grad_g", "grad_t|em", (gt.float(), em)),
        ("se_a_reduce_grad_g", "grad_t", (gt[..., :3, :], em)),
        ("se_a_reduce_grad_g", "grad_t", (gt[:, :2], em)),
        ("se_a_gram", "a", (a.long(), b, 2)),
        ("se_a_gram", "a", (a[..., :3, :], b, 2)),
        ("se_a_gram", "a", (a[0, 0, 0], b, 2)),
        ("se_a_gram", "a|b", (a, b.float(), 2)),
        ("se_a_gram", "b", (a, b[..., :5], 2)),
        ("se_a_gram", "b", (a, b[:1], 2)),
        ("se_a_gram", "axis_neuron", (a, b, 7)),
        ("se_a_gram", "axis_neuron", (a, b, 0)),
        ("se_a_gram_grad_a", "grad_d|b", (gd.float(), b)),
        ("se_a_gram_grad_a", "grad_d", (gd[..., :5, :], b)),
        ("se_a_gram_grad_a", "grad_d", (torch.zeros(2, 3, 6, 7, dtype=gd.dtype), b)),
        ("se_a_gram_grad_a", "grad_d", (gd[..., :0], b)),
        ("se_a_gram_grad_a", "b", (gd, b.long())),
        ("se_a_gram_grad_a", "b", (gd, b[..., :3, :])),
        ("se_a_gram_grad_b", "grad_d", (gd[:1], a)),
        ("se_a_gram_grad_b", "grad_d", (torch.zeros(2, 3, 6, 7, dtype=gd.dtype), a)),
        ("se_a_gram_grad_b", "grad_d|a", (gd, a.float())),
        ("se_a_gram_grad_b", "a", (gd, a[0, 0, 0])),
    ]


@pytest.mark.parametrize("op, name, args", _op_bad(),
                         ids=[f"{o}-{n}-{i}" for i, (o, n, _) in enumerate(_op_bad())])
def test_bad_input_ops(op, name, args):
    # a dtype mismatch between two arguments ("x|y") may be blamed on either of them
    with pytest.raises(RuntimeError, match=rf"dpx::{op}: .*\b({name})\b"):
        getattr(OPS, op)(*args)
