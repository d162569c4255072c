"""dpx::env_mat_se_a and its derivative chain (_vjp, _jvp, _hvp): the per-op test matrix.

Forward against the reference twin, gradcheck/gradgradcheck in float64 of the public op and of
every derivative op, opcheck of all four, the padding/cut-off conventions of deepmd-compat
§3.2, the explicit end of the chain at the third derivative, and bad input. The matrix runs
on every device in DEVICES (CUDA where a GPU is present), plus CUDA against CPU.
"""
from __future__ import annotations

import pytest
import torch
from _inputs import (
    AT_RCUT,
    BEYOND,
    DEVICES,
    DTYPES,
    INNER,
    PAD,
    SEEDS,
    SWITCH,
    assert_close,
    deriv_args,
    em_args,
    env_inputs,
    needs_cuda,
    needs_library,
    nondet_tol,
    on,
    randn,
)

import dpx.ops
from dpx.ops import reference

# torch.func.jvp (inside reference.env_mat_se_a_jvp) warns about torch.jit.script internally
pytestmark = [needs_library,
              pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")]
OPS = torch.ops.dpx
PROTECTIONS = (0.0, 0.3)
BAD = (TypeError, ValueError, RuntimeError)


def _small(seed, protection=0.0, device="cpu"):
    """gradcheck sizes: 2 frames, 3 centers, 7 extended atoms, 7 slots; no neighbor exactly
    at rcut, where the third derivative jumps (see env_inputs)."""
    return on(device, env_inputs(seed, torch.float64, nloc=3, nghost=4, protection=protection,
                                 rcut_gap=0.05))


# ----------------------------------------------------------------------------------------
# forward against the reference
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("protection", PROTECTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_forward_matches_reference(seed, dtype, protection, device):
    inp = on(device, env_inputs(seed, dtype, protection=protection))
    em = dpx.ops.env_mat_se_a(*em_args(inp))
    assert em.shape == (*inp["nlist"].shape, 4) and em.dtype == dtype
    assert_close(em, reference.env_mat_se_a(*em_args(inp)))
    assert_close(OPS.env_mat_se_a(*em_args(inp)), reference.env_mat_se_a(*em_args(inp)))


def test_inputs_cover_every_slot_kind():
    """The generator really produces each case the environment matrix distinguishes."""
    for seed in SEEDS:
        inp = env_inputs(seed)
        kinds = set(inp["kind"].unique().tolist())
        assert kinds == {PAD, INNER, SWITCH, AT_RCUT, BEYOND}, seed
        assert (inp["nlist"] >= inp["atype"].shape[1]).any()   # ghosts are neighbors


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("protection", PROTECTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_padded_and_out_of_range_rows_are_normalized_zeros(dtype, protection, device):
    """Raw row 0 for padding and for r >= rcut, so the row is exactly -davg/dstd."""
    inp = on(device, env_inputs(3, dtype, protection=protection))
    em = dpx.ops.env_mat_se_a(*em_args(inp))
    atype, kind = inp["atype"], inp["kind"]
    expect = (-inp["davg"][atype] / inp["dstd"][atype])
    for k in (PAD, AT_RCUT, BEYOND):
        sel = kind == k
        assert sel.any()
        torch.testing.assert_close(em[sel], expect[sel], rtol=0, atol=0)
    # inside rcut the row is not the normalized zero
    live = (kind == INNER) | (kind == SWITCH)
    assert ((em[live] - expect[live]).abs().amax(-1) > 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_inner_rows_are_unswitched(dtype):
    """Below rcut_smth sw = 1: raw row = (1/rho, d/rho^2) exactly as §3.2 writes it."""
    p = 0.3
    inp = env_inputs(4, dtype, protection=p)
    em = dpx.ops.env_mat_se_a(*em_args(inp)).double()
    x, nlist, atype = inp["ext_coord"].double(), inp["nlist"], inp["atype"]
    raw = em * inp["dstd"].double()[atype] + inp["davg"].double()[atype]
    f, i, k = (inp["kind"] == INNER).nonzero(as_tuple=True)
    d = x[f, nlist[f, i, k]] - x[f, i]
    rho = d.norm(dim=-1, keepdim=True) + p
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(raw[f, i, k], torch.cat([1 / rho, d / rho**2], -1),
                               rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------
# derivative ops against their reference twins
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("protection", PROTECTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_derivative_ops_match_reference(seed, dtype, protection, device):
    inp = on(device, env_inputs(seed, dtype, protection=protection))
    gen = torch.Generator().manual_seed(100 + seed)
    grad_em = randn(gen, *inp["nlist"].shape, 4, dtype=dtype).to(device)
    tangent = randn(gen, *inp["ext_coord"].shape, dtype=dtype).to(device)
    args = deriv_args(inp)
    assert_close(OPS.env_mat_se_a_vjp(grad_em, *args), reference.env_mat_se_a_vjp(grad_em, *args))
    assert_close(OPS.env_mat_se_a_jvp(tangent, *args), reference.env_mat_se_a_jvp(tangent, *args))
    assert_close(OPS.env_mat_se_a_hvp(grad_em, tangent, *args),
                 reference.env_mat_se_a_hvp(grad_em, tangent, *args))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_autograd_chain_matches_reference(dtype, device):
    """First and second derivatives through the public op equal autograd of the twin."""
    inp = on(device, env_inputs(5, dtype, protection=0.1))
    gen = torch.Generator().manual_seed(7)
    w = randn(gen, *inp["nlist"].shape, 4, dtype=dtype).to(device)
    v = randn(gen, *inp["ext_coord"].shape, dtype=dtype).to(device)

    def grads(fn):
        x = inp["ext_coord"].clone().requires_grad_(True)
        em = fn(x, *em_args(inp)[1:])
        (g1,) = torch.autograd.grad((em * w).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad((g1 * v).sum(), x)
        return g1.detach(), g2

    for a, b in zip(grads(dpx.ops.env_mat_se_a), grads(reference.env_mat_se_a)):
        assert_close(a, b)


def test_results_do_not_depend_on_thread_count():
    """Centers are split over threads and slot results folded without atomics: bitwise
    the same on 1 and 2 threads."""
    inp = env_inputs(6, nloc=40, nghost=20)
    gen = torch.Generator().manual_seed(1)
    ge = randn(gen, *inp["nlist"].shape, 4)
    t = randn(gen, *inp["ext_coord"].shape)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append([OPS.env_mat_se_a(*em_args(inp)),
                         OPS.env_mat_se_a_vjp(ge, *deriv_args(inp)),
                         OPS.env_mat_se_a_jvp(t, *deriv_args(inp)),
                         OPS.env_mat_se_a_hvp(ge, t, *deriv_args(inp))])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    """Every op of the chain on CUDA against the CPU op on the same inputs (the two devices
    share the per-slot math; vjp and hvp sum in another order on CUDA: atomics)."""
    inp = env_inputs(8, dtype, nloc=40, nghost=20, protection=0.2)
    gen = torch.Generator().manual_seed(8)
    ge = randn(gen, *inp["nlist"].shape, 4, dtype=dtype)
    t = randn(gen, *inp["ext_coord"].shape, dtype=dtype)

    def run(device):
        i = on(device, inp)
        g, tt = ge.to(device), t.to(device)
        return [OPS.env_mat_se_a(*em_args(i)), OPS.env_mat_se_a_vjp(g, *deriv_args(i)),
                OPS.env_mat_se_a_jvp(tt, *deriv_args(i)),
                OPS.env_mat_se_a_hvp(g, tt, *deriv_args(i))]

    for a, b in zip(run("cuda"), run("cpu")):
        assert a.is_cuda
        assert_close(a.cpu(), b)


@needs_cuda
def test_cuda_bad_indices_give_nan():
    """CUDA skips the range checks that would need a host round trip; a bad nlist entry or
    center type is NaN in the outputs, never an out-of-bounds read."""
    inp = on("cuda", _small(0))
    bad = inp["nlist"].clone()
    bad[1, 2, 0] = inp["ext_coord"].shape[1]
    em = OPS.env_mat_se_a(*em_args({**inp, "nlist": bad}))
    assert em[1, 2, 0].isnan().all() and not em[0].isnan().any()
    g = OPS.env_mat_se_a_vjp(torch.ones_like(em), *deriv_args({**inp, "nlist": bad}))
    assert g[1, 2].isnan().all()
    atype = inp["atype"].clone()
    atype[0, 1] = inp["dstd"].shape[0]
    em = OPS.env_mat_se_a(*em_args({**inp, "atype": atype}))
    assert em[0, 1].isnan().all() and not em[1].isnan().any()


# ----------------------------------------------------------------------------------------
# gradcheck / gradgradcheck in float64
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("protection", PROTECTIONS)
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_gradcheck_public(seed, protection, device):
    inp = _small(seed, protection, device)
    x = inp["ext_coord"].clone().requires_grad_(True)
    rest = em_args(inp)[1:]

    def fn(x):
        return dpx.ops.env_mat_se_a(x, *rest)

    tol = nondet_tol(device)
    assert torch.autograd.gradcheck(fn, (x,), nondet_tol=tol)
    assert torch.autograd.gradgradcheck(fn, (x,), nondet_tol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("protection", PROTECTIONS)
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_gradcheck_derivative_ops(seed, protection, device):
    """vjp and jvp are differentiable in both tensor arguments (to hvp / to each other);
    the second derivative of vjp (jvp) in its linear argument needs no third order."""
    inp = _small(seed, protection, device)
    gen = torch.Generator().manual_seed(200 + seed)
    x = inp["ext_coord"].clone().requires_grad_(True)
    ge = randn(gen, *inp["nlist"].shape, 4).to(device).requires_grad_(True)
    t = randn(gen, *x.shape).to(device).requires_grad_(True)
    rest = deriv_args(inp)[1:]

    def vjp(ge, x):
        return OPS.env_mat_se_a_vjp(ge, x, *rest)

    def jvp(t, x):
        return OPS.env_mat_se_a_jvp(t, x, *rest)

    tol = nondet_tol(device)
    assert torch.autograd.gradcheck(vjp, (ge, x), nondet_tol=tol)
    assert torch.autograd.gradcheck(jvp, (t, x), nondet_tol=tol)
    x0 = x.detach()
    assert torch.autograd.gradgradcheck(lambda ge: vjp(ge, x0), (ge,), nondet_tol=tol)
    assert torch.autograd.gradgradcheck(lambda t: jvp(t, x0), (t,), nondet_tol=tol)
    # hvp itself: forward only (its derivative is the unsupported third order), checked as
    # the numerical derivative of vjp in x contracted with the tangent
    with torch.no_grad():
        h = OPS.env_mat_se_a_hvp(ge, t, x, *rest)
        eps = 1e-6
        fd = (vjp(ge, x + eps * t) - vjp(ge, x - eps * t)) / (2 * eps)
    torch.testing.assert_close(h, fd, rtol=1e-6, atol=1e-6 * float(fd.abs().max()))


def test_third_derivative_raises():
    inp = _small(0)
    gen = torch.Generator().manual_seed(3)
    x = inp["ext_coord"].clone().requires_grad_(True)
    em = dpx.ops.env_mat_se_a(x, *em_args(inp)[1:])
    w = randn(gen, *em.shape)
    (g1,) = torch.autograd.grad((em * w).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad((g1 * randn(gen, *x.shape)).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third derivative"):
        torch.autograd.grad(g2.sum(), x)
    # and on the op itself, in any of its differentiable arguments
    ge = w.clone().requires_grad_(True)
    h = OPS.env_mat_se_a_hvp(ge, randn(gen, *x.shape), x.detach(), *deriv_args(inp)[1:])
    with pytest.raises(NotImplementedError, match="second order"):
        h.sum().backward()


# ----------------------------------------------------------------------------------------
# opcheck: schema, autograd registration, fake kernel, aot dispatch
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(dtype, device):
    inp = _small(1, 0.2, device)
    inp["ext_coord"] = inp["ext_coord"].to(dtype)
    inp["davg"], inp["dstd"] = inp["davg"].to(dtype), inp["dstd"].to(dtype)
    gen = torch.Generator().manual_seed(11)
    x = inp["ext_coord"]
    ge = randn(gen, *inp["nlist"].shape, 4, dtype=dtype).to(device)
    t = randn(gen, *x.shape, dtype=dtype).to(device)
    rest = deriv_args(inp)[1:]
    xg, geg, tg = (a.clone().requires_grad_(True) for a in (x, ge, t))
    cases = [
        (OPS.env_mat_se_a.default, em_args(inp)),
        (OPS.env_mat_se_a.default, (xg, *em_args(inp)[1:])),
        (OPS.env_mat_se_a_vjp.default, (ge, x, *rest)),
        (OPS.env_mat_se_a_vjp.default, (geg, xg, *rest)),
        (OPS.env_mat_se_a_jvp.default, (t, x, *rest)),
        (OPS.env_mat_se_a_jvp.default, (tg, xg, *rest)),
        (OPS.env_mat_se_a_hvp.default, (ge, t, x, *rest)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)
    # hvp with inputs that require grad: everything but aot dispatch, whose backward would
    # be the unsupported third derivative
    torch.library.opcheck(OPS.env_mat_se_a_hvp.default, (geg, tg, xg, *rest),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))


def test_fake_shapes_follow_inputs():
    inp = _small(0)
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        fake = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
                for k, v in inp.items()}
        em = OPS.env_mat_se_a(*em_args(fake))
        g = OPS.env_mat_se_a_vjp(em, *deriv_args(fake))
        j = OPS.env_mat_se_a_jvp(g, *deriv_args(fake))
        h = OPS.env_mat_se_a_hvp(j, g, *deriv_args(fake))
    assert em.shape == j.shape == (*inp["nlist"].shape, 4)
    assert g.shape == h.shape == inp["ext_coord"].shape


# ----------------------------------------------------------------------------------------
# bad input: a clear error naming the argument, public function and op alike
# ----------------------------------------------------------------------------------------
def _bad_cases():
    """(argument name, {field: bad value}) pairs; both call paths must reject each."""
    inp = _small(0)
    x, nlist, atype, davg, dstd = (inp[k] for k in ("ext_coord", "nlist", "atype", "davg", "dstd"))
    nall = x.shape[1]
    big, neg = nlist.clone(), nlist.clone()
    big[1, 2, 0] = nall
    neg[0, 1, 3] = -2
    return inp, [
        ("ext_coord", {"ext_coord": x.long()}),
        ("ext_coord", {"ext_coord": x[..., :2]}),
        ("ext_coord", {"ext_coord": x[0]}),
        ("ext_coord", {"ext_coord": x[:, :2]}),            # nall < nloc
        ("ext_coord", {"ext_coord": x[:1]}),               # nf mismatch
        ("nlist", {"nlist": nlist.int()}),
        ("nlist", {"nlist": nlist.double()}),
        ("nlist", {"nlist": nlist[0]}),
        ("nlist", {"nlist": big}),
        ("nlist", {"nlist": neg}),
        ("atype", {"atype": atype[:, :-1]}),
        ("atype", {"atype": atype.double()}),
        ("atype", {"atype": torch.full_like(atype, davg.shape[0])}),
        ("atype", {"atype": torch.full_like(atype, -1)}),
        ("davg", {"davg": davg.float()}),
        ("davg", {"davg": davg[:, :-1]}),
        ("davg", {"davg": davg[..., :3]}),
        ("dstd", {"dstd": dstd.float()}),
        ("dstd", {"dstd": dstd[:, 1:]}),
        ("dstd", {"dstd": dstd[0]}),
        ("rcut", {"rcut": 0.0}),
        ("rcut", {"rcut": -1.0}),
        ("rcut_smth", {"rcut_smth": inp["rcut"]}),
        ("rcut_smth", {"rcut_smth": inp["rcut"] + 1.0}),
        ("rcut_smth", {"rcut_smth": -0.5}),
        ("protection", {"protection": -0.1}),
    ]


_INP, _CASES = _bad_cases()


@pytest.mark.parametrize("name, change", _CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(_CASES)])
def test_bad_input_public(name, change):
    inp = {**_INP, **change}
    with pytest.raises(BAD, match=name):
        dpx.ops.env_mat_se_a(*em_args(inp))


# the op takes atype as int64 only; the public function accepts any integer type
_OP_CASES = _CASES + [("atype", {"atype": _INP["atype"].int()})]


@pytest.mark.parametrize("name, change", _OP_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(_OP_CASES)])
def test_bad_input_ops(name, change):
    inp = {**_INP, **change}
    gen = torch.Generator().manual_seed(0)
    x = _INP["ext_coord"]
    ge = randn(gen, *_INP["nlist"].shape, 4)
    t = randn(gen, *x.shape)
    with pytest.raises(RuntimeError, match=name):
        OPS.env_mat_se_a(*em_args(inp))
    if name == "davg":   # the derivative ops take no davg
        return
    for call in (lambda: OPS.env_mat_se_a_vjp(ge, *deriv_args(inp)),
                 lambda: OPS.env_mat_se_a_jvp(t, *deriv_args(inp)),
                 lambda: OPS.env_mat_se_a_hvp(ge, t, *deriv_args(inp))):
        with pytest.raises(RuntimeError, match=name):
            call()


@pytest.mark.parametrize("op", ["env_mat_se_a_vjp", "env_mat_se_a_jvp", "env_mat_se_a_hvp"])
def test_bad_gradient_arguments(op):
    inp = _small(0)
    x = inp["ext_coord"]
    ge, t = torch.ones(*inp["nlist"].shape, 4, dtype=x.dtype), torch.ones_like(x)
    fn = getattr(OPS, op)
    good = {"env_mat_se_a_vjp": (ge,), "env_mat_se_a_jvp": (t,), "env_mat_se_a_hvp": (ge, t)}[op]
    names = {"env_mat_se_a_vjp": ("grad_em",), "env_mat_se_a_jvp": ("tangent",),
             "env_mat_se_a_hvp": ("grad_em", "tangent")}[op]
    for pos, name in enumerate(names):
        for bad in (good[pos][..., :-1], good[pos].float(), good[pos][0]):
            args = list(good)
            args[pos] = bad
            with pytest.raises(RuntimeError, match=name):
                fn(*args, *deriv_args(inp))


def test_bad_input_non_tensor_and_nonfinite():
    inp = _small(0)
    with pytest.raises(TypeError, match="ext_coord"):
        dpx.ops.env_mat_se_a(inp["ext_coord"].tolist(), *em_args(inp)[1:])
    for rcut in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rcut"):
            dpx.ops.env_mat_se_a(*em_args({**inp, "rcut": rcut}))
    with pytest.raises(ValueError, match="protection"):
        dpx.ops.env_mat_se_a(*em_args({**inp, "protection": float("nan")}))
