"""The fused se_e2_a embedding + reduction ops against their pure-PyTorch twins.

Both implementations: the CPU kernels (dpx::) and the device-generic ATen code that CUDA runs,
exposed on the CPU as dpx_generic:: (ops/se_a_embed_generic.h). Every op of the family
(forward, the force derivative, the energy's parameter gradient, the force loss's second
derivative) on every activation the kernels implement, with and without
resnet_dt, on widths that take each of DeePMD-kit's skip rules (kept, doubled, none), in
float64 (1e-12) and float32 (1e-4); then gradcheck and gradgradcheck through the autograd
chain, opcheck, the same bits at any thread count, and the argument errors. The same matrix
again over em's layouts (LAYOUTS): K = 1, 4, 8 contracted columns, the net's input s em's
column 0 or a tensor of its own (the ops' s_last), with a force loss through em and s.
"""
from __future__ import annotations

import pytest
import torch
from _inputs import DEVICES, needs_cuda, needs_library

from dpx.ops import reference
from dpx.ops.se_a_embed import ACTIVATIONS, se_a_embed_reduce

pytestmark = needs_library
OPS = torch.ops.dpx
GENERIC = torch.ops.dpx_generic if hasattr(torch.ops, "dpx_generic") else None
IMPLS = {"kernels": OPS, "generic": GENERIC}
CODES = sorted(set(ACTIVATIONS.values()))
# kept (4 -> 4), doubled (4 -> 8, 8 -> 16; 1 -> 2: s itself is kept), none (1 -> 4, 3 -> 5)
WIDTHS = ([1, 4, 8, 16], [1, 4, 4], [1, 3, 5], [1, 6], [1, 2, 4], [1, 1, 2])


def nparams(widths, resnet_dt):
    return sum(i * o + o + (o if resnet_dt and o in (i, 2 * i) else 0)
               for i, o in zip(widths[:-1], widths[1:]))


def inputs(widths, resnet_dt, dtype=torch.float64, nslot=300, ncenter=11, seed=0):
    """em [nslot, 4] with s spread over the activations' interesting range (softplus's
    threshold 20 included), sorted centers with one center left empty, packed params."""
    gen = torch.Generator().manual_seed(seed)
    em = torch.randn(nslot, 4, generator=gen, dtype=torch.float64)
    em[:5, 0] = torch.tensor([25.0, -25.0, 0.0, 1e-9, 8.0])
    center = torch.sort(torch.randint(0, ncenter - 1, (nslot,), generator=gen)).values
    center[center == 3] = ncenter - 1    # an empty center
    center = torch.sort(center).values
    params = 0.6 * torch.randn(nparams(widths, resnet_dt), generator=gen, dtype=torch.float64)
    return em.to(dtype), center, params.to(dtype), ncenter


def all_ops(impl, em, center, params, widths, act, resnet_dt, ncenter, scale, seed=1,
            s_last=False):
    gen = torch.Generator().manual_seed(seed)
    k = em.shape[1] - s_last
    gt = torch.randn(ncenter, k, widths[-1], generator=gen, dtype=torch.float64).to(em.dtype)
    gge = torch.randn(em.shape, generator=gen, dtype=torch.float64).to(em.dtype)
    net = (center, params, widths, act, resnet_dt)
    return {"reduce": impl.se_a_embed_reduce(em, *net, ncenter, scale, s_last),
            "grad_em": impl.se_a_embed_reduce_grad_em(gt, em, *net, scale, s_last),
            "grad_params": impl.se_a_embed_reduce_grad_params(gt, em, *net, scale, s_last),
            **{f"grad_em_grad[{i}]": x for i, x in enumerate(
                impl.se_a_embed_reduce_grad_em_grad(gge, gt, em, *net, scale, s_last))}}


def assert_close(got, want, rtol):
    got, want = got.detach(), want.detach()
    scale = max(float(want.abs().max()), 1.0)
    err = float((got - want).abs().max()) / scale
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("resnet_dt", [False, True], ids=["plain", "resnet_dt"])
@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("act", CODES)
@pytest.mark.parametrize("impl", list(IMPLS))
def test_ops_match_reference(impl, act, widths, resnet_dt, dtype):
    em, center, params, ncenter = inputs(widths, resnet_dt, dtype)
    got = all_ops(IMPLS[impl], em, center, params, widths, act, resnet_dt, ncenter, 0.05)
    # the reference in float64: float32 kernels are checked against exact math
    want = all_ops(reference, em.double(), center, params.double(), widths, act, resnet_dt,
                   ncenter, 0.05)
    for name in want:
        assert got[name].dtype == dtype
        assert_close(got[name].double(), want[name], 1e-12 if dtype == torch.float64 else 1e-4)
    assert float(got["reduce"][3].abs().max()) == 0.0   # the empty center


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", [1, 3, 5], ids=["tanh", "softplus", "gelu"])
def test_gradcheck_and_gradgradcheck(act, device):
    widths, resnet_dt = [1, 3, 6], True
    em, center, params, ncenter = inputs(widths, resnet_dt, nslot=24, ncenter=4)
    em[:5, 0] = torch.tensor([2.0, -1.5, 0.3, 0.1, 0.8], dtype=em.dtype)  # smooth region
    em, center, params = em.to(device), center.to(device), params.to(device)
    em.requires_grad_(True)
    params.requires_grad_(True)

    def f(em, params):
        return se_a_embed_reduce(em, center, params, widths, act, resnet_dt, ncenter, 0.3)

    assert torch.autograd.gradcheck(f, (em, params))
    assert torch.autograd.gradgradcheck(f, (em, params))


def test_force_pass_skips_the_parameter_gradient():
    """Gradients wrt em alone (forces) do not run the parameter-gradient op, and the
    weights' gradient of an energy does not run the em one; both still equal the reference."""
    widths = [1, 4, 8]
    em, center, params, ncenter = inputs(widths, False)
    em.requires_grad_(True)
    params.requires_grad_(True)
    with torch.profiler.profile() as prof:
        t = se_a_embed_reduce(em, center, params, widths, 1, False, ncenter, 0.1)
        (gem,) = torch.autograd.grad(t.sum(), em, retain_graph=True)
        (gp,) = torch.autograd.grad(t.square().sum(), params)
    calls = [e.name for e in prof.events()]
    assert calls.count("dpx::se_a_embed_reduce_grad_em") >= 1
    assert calls.count("dpx::se_a_embed_reduce_grad_params") >= 1
    n_em = sum(1 for e in prof.events() if e.name == "dpx::se_a_embed_reduce_grad_em")
    n_p = sum(1 for e in prof.events() if e.name == "dpx::se_a_embed_reduce_grad_params")
    assert n_em == n_p   # one call each (however many records the profiler keeps per call)
    em_r, p_r = em.detach().requires_grad_(True), params.detach().requires_grad_(True)
    t_r = reference.se_a_embed_reduce(em_r, center, p_r, widths, 1, False, ncenter, 0.1)
    assert_close(gem, torch.autograd.grad(t_r.sum(), em_r, retain_graph=True)[0], 1e-12)
    assert_close(gp, torch.autograd.grad(t_r.square().sum(), p_r)[0], 1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    widths, resnet_dt = [1, 3, 6], True
    em, center, params, ncenter = (x.to(device) if torch.is_tensor(x) else x for x in
                                   inputs(widths, resnet_dt, nslot=40, ncenter=5))
    gen = torch.Generator().manual_seed(3)
    gt = torch.randn(ncenter, 4, 6, generator=gen, dtype=torch.float64).to(device)
    gge = torch.randn(em.shape, generator=gen, dtype=torch.float64).to(device)
    net = (center, params, widths, 1, resnet_dt)
    cases = [(OPS.se_a_embed_reduce, (em.requires_grad_(True), *net, ncenter, 0.2)),
             (OPS.se_a_embed_reduce_grad_em, (gt, em, *net, 0.2)),
             (OPS.se_a_embed_reduce_grad_params, (gt, em, *net, 0.2)),
             (OPS.se_a_embed_reduce_grad_em_grad, (gge, gt, em, *net, 0.2))]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_same_bits_at_any_thread_count():
    """Chunks are fixed by the slot list, not by the threads: 1 and 2 threads agree exactly
    (several chunks: 3000 slots)."""
    widths = [1, 8, 16]
    em, center, params, ncenter = inputs(widths, False, nslot=3000, ncenter=40)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(all_ops(OPS, em, center, params, widths, 1, False, ncenter, 0.1))
    finally:
        torch.set_num_threads(threads)
    for name in outs[0]:
        assert torch.equal(outs[0][name], outs[1][name]), name


def test_bad_arguments_are_named():
    widths = [1, 4, 8]
    em, center, params, ncenter = inputs(widths, False, nslot=20, ncenter=4)
    with pytest.raises(RuntimeError, match="center must be sorted"):
        OPS.se_a_embed_reduce(em, center.flip(0), params, widths, 1, False, ncenter, 0.1)
    with pytest.raises(RuntimeError, match=r"params must be \["):
        OPS.se_a_embed_reduce(em, center, params[:-1], widths, 1, False, ncenter, 0.1)
    with pytest.raises(RuntimeError, match="widths must be"):
        OPS.se_a_embed_reduce(em, center, params, [2, 4, 8], 1, False, ncenter, 0.1)
    with pytest.raises(RuntimeError, match="activation code"):
        OPS.se_a_embed_reduce(em, center, params, widths, 9, False, ncenter, 0.1)
    with pytest.raises(RuntimeError, match="values in"):
        OPS.se_a_embed_reduce(em, center, params, widths, 1, False, 2, 0.1)
    with pytest.raises(ValueError, match="activation must be one of"):
        se_a_embed_reduce(em, center, params, widths, 7, False, ncenter, 0.1)


def test_generic_chunks_match_the_kernels():
    """20 000 slots: three chunks of the generic code's plan (8192 slots, ending on a center)
    against the CPU kernels' 256-slot tiles, two independent implementations."""
    widths = [1, 8, 16]
    em, center, params, ncenter = inputs(widths, True, nslot=20000, ncenter=700)
    kernels = all_ops(OPS, em, center, params, widths, 5, True, ncenter, 0.02)
    generic = all_ops(GENERIC, em, center, params, widths, 5, True, ncenter, 0.02)
    for name in kernels:
        assert_close(generic[name], kernels[name], 1e-12)


def test_generic_checks_its_arguments():
    widths = [1, 4, 8]
    em, center, params, ncenter = inputs(widths, False, nslot=20, ncenter=4)
    with pytest.raises(RuntimeError, match="center must be sorted"):
        GENERIC.se_a_embed_reduce(em, center.flip(0), params, widths, 1, False, ncenter, 0.1)
    with pytest.raises(RuntimeError, match=r"grad_t must be \[ncenter, 4, 8\]"):
        GENERIC.se_a_embed_reduce_grad_em(torch.zeros(ncenter, 4, 7, dtype=em.dtype), em,
                                          center, params, widths, 1, False, 0.1)
    empty = GENERIC.se_a_embed_reduce(em[:0], center[:0], params, widths, 1, False, 3, 0.1)
    assert empty.shape == (3, 4, 8) and float(empty.abs().max()) == 0.0


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("act", CODES)
def test_cuda_matches_cpu(act, dtype):
    """Every op of the family on CUDA (the generic code on cuBLAS) against the CPU kernels,
    several chunks."""
    widths, resnet_dt = [1, 4, 8, 16], True
    em, center, params, ncenter = inputs(widths, resnet_dt, dtype, nslot=9000, ncenter=300)
    cpu = all_ops(OPS, em, center, params, widths, act, resnet_dt, ncenter, 0.05)
    cuda = all_ops(OPS, em.cuda(), center.cuda(), params.cuda(), widths, act, resnet_dt,
                   ncenter, 0.05)
    for name in cpu:
        assert cuda[name].is_cuda
        assert_close(cuda[name].cpu(), cpu[name], 1e-12 if dtype == torch.float64 else 1e-4)


# ------------------------------------------------------------------ em's layouts
# (K, s apart): em [nslot, K] with s = em[:, 0], or em [nslot, K] and s [nslot] of its own
# (the ops' em [nslot, K + 1], s_last); se_e2_a is (4, False), DPA-1's strip mode (8, True)
LAYOUTS = [(k, apart) for k in (1, 4, 8) for apart in (False, True)]
LAYOUT_IDS = [f"K={k}-{'s' if apart else 'em0'}" for k, apart in LAYOUTS]
# a deep net with resnet_dt, and one whose first layer keeps s itself (1 -> 1, then doubled)
LAYOUT_NETS = (([1, 4, 8, 16], 1, True), ([1, 1, 2], 3, False))


def layout_inputs(k, apart, widths, resnet_dt, dtype=torch.float64, **kw):
    """inputs() with em [nslot, K]; s (inputs()'s column 0, its special values included) is
    em's column 0, or with `apart` em's last column [nslot, K + 1] (the ops' s_last)."""
    em, center, params, ncenter = inputs(widths, resnet_dt, dtype, **kw)
    gen = torch.Generator().manual_seed(7)
    rest = torch.randn(em.shape[0], k - (not apart), generator=gen, dtype=torch.float64)
    parts = [rest.to(dtype), em[:, :1]] if apart else [em[:, :1], rest.to(dtype)]
    return torch.cat(parts, 1), center, params, ncenter


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("k", "apart"), LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("impl", list(IMPLS))
def test_layouts_match_reference(impl, k, apart, dtype):
    for widths, act, resnet_dt in LAYOUT_NETS:
        em, center, params, ncenter = layout_inputs(k, apart, widths, resnet_dt, dtype)
        got = all_ops(IMPLS[impl], em, center, params, widths, act, resnet_dt, ncenter, 0.05,
                      s_last=apart)
        want = all_ops(reference, em.double(), center, params.double(), widths, act,
                       resnet_dt, ncenter, 0.05, s_last=apart)
        for name in want:
            assert got[name].shape == want[name].shape, name
            assert got[name].dtype == dtype
            assert_close(got[name].double(), want[name],
                         1e-12 if dtype == torch.float64 else 1e-4)
        assert got["reduce"].shape == (ncenter, k, widths[-1])


def test_s_apart_is_not_contracted():
    """With s apart, T does not depend on s's column beyond G, and d/ds is G' alone: the same
    K columns with s = em[:, 0] apart give the se_e2_a numbers minus the G' term in column 0."""
    widths, act = [1, 4, 8], 1
    em, center, params, ncenter = inputs(widths, False)
    gen = torch.Generator().manual_seed(5)
    gt = torch.randn(ncenter, 4, 8, generator=gen, dtype=torch.float64)
    net = (center, params, widths, act, False)
    apart = torch.cat([em, em[:, :1]], 1)
    assert torch.equal(OPS.se_a_embed_reduce(apart, *net, ncenter, 0.1, True),
                       OPS.se_a_embed_reduce(em, *net, ncenter, 0.1))
    together = OPS.se_a_embed_reduce_grad_em(gt, em, *net, 0.1)
    split = OPS.se_a_embed_reduce_grad_em(gt, apart, *net, 0.1, True)
    assert_close(split[:, :4].sum(1) + split[:, 4], together.sum(1), 1e-13)
    assert_close(split[:, 1:4], together[:, 1:4], 1e-13)


def _layout_function(k, apart, widths, act, resnet_dt, ncenter, center, scale=0.3):
    """The public function on (em [nslot, K], s [nslot] or None, params)."""
    def f(em, s, params):
        return se_a_embed_reduce(em, center, params, widths, act, resnet_dt, ncenter, scale,
                                 s=s)
    return f


@pytest.mark.parametrize(("k", "apart"), LAYOUTS, ids=LAYOUT_IDS)
def test_layouts_gradcheck_and_gradgradcheck(k, apart):
    widths, act, resnet_dt = [1, 3, 6], 5, True
    em, center, params, ncenter = layout_inputs(k, apart, widths, resnet_dt, nslot=24,
                                                ncenter=4)
    s_col = k if apart else 0
    em[:5, s_col] = torch.tensor([2.0, -1.5, 0.3, 0.1, 0.8], dtype=em.dtype)  # smooth region
    f = _layout_function(k, apart, widths, act, resnet_dt, ncenter, center)
    params.requires_grad_(True)
    if apart:
        em, s = em[:, :k].clone().requires_grad_(True), em[:, k].clone().requires_grad_(True)
        args = (em, s, params)
        assert torch.autograd.gradcheck(f, args)
        assert torch.autograd.gradgradcheck(f, args)
    else:
        em.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda em, p: f(em, None, p), (em, params))
        assert torch.autograd.gradgradcheck(lambda em, p: f(em, None, p), (em, params))


def _force_loss(fn, x, params, k, apart, center, ncenter, widths, act, resnet_dt):
    """(forces, the loss's gradient by the net's weights and by A) of a force + energy loss
    with em and s smooth functions of the "coordinates" x [nslot, 3] and of weights A
    [3, K + 1]: em = tanh(x A[:, :K]), s = tanh(x A[:, K]) (column 0 of em when not apart).
    The gradient by A takes the force loss's d/d(em, s) (grad_em_grad's second output, whose
    s-column is the new s-derivative), the one by params its third."""
    x = x.detach().requires_grad_(True)
    params = params.detach().requires_grad_(True)
    gen = torch.Generator().manual_seed(11)
    a = torch.randn(3, k + 1, generator=gen, dtype=torch.float64).to(x.dtype).requires_grad_(True)
    em = torch.tanh(x @ a[:, :k])
    s = torch.tanh(x @ a[:, k])
    if not apart:
        em = torch.cat([s[:, None], em[:, 1:]], 1)
    t = fn(em, s if apart else None, params, center, widths, act, resnet_dt, ncenter)
    w = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(x.dtype)
    energy = (t * w).sum() + 0.5 * (t * t).sum()
    (force,) = torch.autograd.grad(-energy, x, create_graph=True)
    target = torch.randn(force.shape, generator=gen, dtype=torch.float64).to(x.dtype)
    loss = ((force - target) ** 2).sum() + energy ** 2
    return (force.detach(), *torch.autograd.grad(loss, (params, a)))


def _fused(em, s, params, center, widths, act, resnet_dt, ncenter):
    return se_a_embed_reduce(em, center, params, widths, act, resnet_dt, ncenter, 0.2, s=s)


def _unfused(em, s, params, center, widths, act, resnet_dt, ncenter):
    """The same T by plain autograd through the reference twin"""
    x = em if s is None else torch.cat([em, s[:, None]], 1)
    return reference.se_a_embed_reduce(x, center, params, widths, act, resnet_dt, ncenter, 0.2,
                                       s is not None)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("k", "apart"), LAYOUTS, ids=LAYOUT_IDS)
def test_layouts_force_loss_weight_gradient(k, apart, dtype):
    """Forces and the weight gradients of a force loss through em and s (grad_em_grad and
    its s-derivative) against plain autograd of the reference, float32 against float64."""
    widths, act, resnet_dt = [1, 4, 8, 16], 1, True
    _, center, params, ncenter = inputs(widths, resnet_dt, nslot=120, ncenter=7)
    x = torch.randn(120, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    net = (k, apart, center, ncenter, widths, act, resnet_dt)
    got = _force_loss(_fused, x.to(dtype), params.to(dtype), *net)
    want = _force_loss(_unfused, x, params, *net)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert_close(g.double(), w, 1e-11 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize(("k", "apart"), LAYOUTS, ids=LAYOUT_IDS)
def test_layouts_opcheck(k, apart):
    widths, resnet_dt = [1, 3, 6], True
    em, center, params, ncenter = layout_inputs(k, apart, widths, resnet_dt, nslot=40,
                                                ncenter=5)
    gen = torch.Generator().manual_seed(3)
    gt = torch.randn(ncenter, k, 6, generator=gen, dtype=torch.float64)
    gge = torch.randn(em.shape, generator=gen, dtype=torch.float64)
    net = (center, params, widths, 1, resnet_dt)
    cases = [(OPS.se_a_embed_reduce, (em.requires_grad_(True), *net, ncenter, 0.2, apart)),
             (OPS.se_a_embed_reduce_grad_em, (gt, em, *net, 0.2, apart)),
             (OPS.se_a_embed_reduce_grad_params, (gt, em, *net, 0.2, apart)),
             (OPS.se_a_embed_reduce_grad_em_grad, (gge, gt, em, *net, 0.2, apart))]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_layouts_generic_chunks_match_the_kernels():
    """K = 8 with s apart over two chunks of the generic code's plan against the kernels."""
    widths = [1, 8, 16]
    em, center, params, ncenter = layout_inputs(8, True, widths, True, nslot=9000,
                                                ncenter=300)
    kernels = all_ops(OPS, em, center, params, widths, 1, True, ncenter, 0.02, s_last=True)
    generic = all_ops(GENERIC, em, center, params, widths, 1, True, ncenter, 0.02, s_last=True)
    for name in kernels:
        assert_close(generic[name], kernels[name], 1e-12)


def test_layout_arguments_are_named():
    widths = [1, 4, 8]
    em, center, params, ncenter = layout_inputs(8, True, widths, False, nslot=20, ncenter=4)
    for impl in (OPS, GENERIC):
        with pytest.raises(RuntimeError, match=r"em must be \[nslot, K \+ 1\]"):
            impl.se_a_embed_reduce(em[:, :1], center, params, widths, 1, False, ncenter, 0.1,
                                   True)
        with pytest.raises(RuntimeError, match=r"grad_t must be \[ncenter, 8, 8\]"):
            impl.se_a_embed_reduce_grad_em(torch.zeros(ncenter, 9, 8, dtype=em.dtype), em,
                                           center, params, widths, 1, False, 0.1, True)
    with pytest.raises(ValueError, match=r"s must be \[nslot\]"):
        se_a_embed_reduce(em[:, :8], center, params, widths, 1, False, ncenter, 0.1,
                          s=em[:-1, 8])
    with pytest.raises(ValueError, match="s must be 1-d"):
        se_a_embed_reduce(em[:, :8], center, params, widths, 1, False, ncenter, 0.1,
                          s=em[:, 8:])
    with pytest.raises(TypeError, match="s has dtype"):
        se_a_embed_reduce(em[:, :8], center, params, widths, 1, False, ncenter, 0.1,
                          s=em[:, 8].float())


@needs_cuda
@pytest.mark.parametrize(("k", "apart"), LAYOUTS, ids=LAYOUT_IDS)
def test_layouts_cuda_match_cpu(k, apart):
    widths, resnet_dt = [1, 4, 8, 16], True
    em, center, params, ncenter = layout_inputs(k, apart, widths, resnet_dt, nslot=9000,
                                                ncenter=300)
    cpu = all_ops(OPS, em, center, params, widths, 1, resnet_dt, ncenter, 0.05, s_last=apart)
    cuda = all_ops(OPS, em.cuda(), center.cuda(), params.cuda(), widths, 1, resnet_dt, ncenter,
                   0.05, s_last=apart)
    for name in cpu:
        assert cuda[name].is_cuda
        assert_close(cuda[name].cpu(), cpu[name], 1e-12)
