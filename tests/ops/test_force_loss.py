"""The force-loss weight gradient: the check that a broken double backward cannot pass.

A small se_e2_a-like energy model in float64 (environment matrix -> one tanh embedding net per
neighbor type applied to s = em[..., 0] -> se_a_descriptor -> fitting net -> E = sum) is run
once on the dpx ops and once on the reference twins. Training on forces differentiates
F = -dE/dx once more with respect to every weight, which goes through every derivative op
(vjp -> jvp/hvp, reduce/gram -> their grad ops and back). The weight gradients must agree to
1e-10; forces are checked against finite differences of E, and two weight gradients against
finite differences of the loss.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from _inputs import DEVICES, needs_library, on

import dpx.ops
from dpx.ops import reference

pytestmark = needs_library

NLOC, NTYPES, SEL = 12, 2, (4, 8)
RCUT, RCUT_SMTH, AXIS = 3.0, 1.0, 2
M1 = 8


def _system(periodic: bool, seed: int = 0):
    """coord [1, 12, 3], atype [1, 12], and the extended system (ext = coord[mapping] +
    shift), ext_atype, nlist [1, 12, sum(SEL)] built by brute force."""
    gen = torch.Generator().manual_seed(seed)
    box = 4.2 if periodic else None
    pts: list[torch.Tensor] = []
    while len(pts) < NLOC:   # no pair closer than 0.9
        p = torch.rand(3, generator=gen, dtype=torch.float64) * (box or 3.2)
        if all(float((p - q).norm()) > 0.9 for q in pts):
            pts.append(p)
    coord = torch.stack(pts)[None]
    atype = torch.tensor([[0] * 4 + [1] * 8])[:, torch.randperm(NLOC, generator=gen)]
    if periodic:   # rcut < box: one shell of images holds every neighbor; locals first
        shifts = sorted(itertools.product((-1, 0, 1), repeat=3), key=lambda s: sum(map(abs, s)))
        shift = torch.tensor(shifts, dtype=torch.float64).repeat_interleave(NLOC, 0) * box
        mapping = torch.arange(NLOC).repeat(len(shifts))
    else:
        shift = torch.zeros(NLOC, 3, dtype=torch.float64)
        mapping = torch.arange(NLOC)
    ext = (coord[0, mapping] + shift).detach()
    ext_atype = atype[0, mapping]
    # DeePMD-kit's list: the nearest sum(SEL) within rcut, then per type the first sel[t]
    nlist = torch.full((1, NLOC, sum(SEL)), -1, dtype=torch.long)
    sec = [0, *itertools.accumulate(SEL)]
    for i in range(NLOC):
        r = (ext - ext[i]).norm(dim=-1)
        r[i] = float("inf")
        order = [int(j) for j in torch.argsort(r, stable=True) if r[j] <= RCUT][: sum(SEL)]
        for t in range(NTYPES):
            of_t = [j for j in order if int(ext_atype[j]) == t][: SEL[t]]
            nlist[0, i, sec[t]: sec[t] + len(of_t)] = torch.tensor(of_t, dtype=torch.long)
    return coord, atype, mapping, shift, nlist


def _params(seed: int = 1, device="cpu"):
    gen = torch.Generator().manual_seed(seed)

    def p(*shape, scale=1.0):
        w = scale * torch.randn(*shape, generator=gen, dtype=torch.float64)
        return w.to(device).requires_grad_(True)

    emb = [[p(1, 4), p(4, scale=0.3), p(4, M1, scale=0.5), p(M1, scale=0.3)] for _ in range(NTYPES)]
    fit = [p(M1 * AXIS, 8, scale=0.3), p(8, scale=0.3), p(8, 1, scale=0.3), p(1)]
    davg = torch.zeros(NTYPES, sum(SEL), 4, dtype=torch.float64)
    davg[..., 0] = 0.1 + 0.2 * torch.rand(NTYPES, 1, generator=gen, dtype=torch.float64)
    dstd = torch.empty(NTYPES, sum(SEL), 4, dtype=torch.float64)
    dstd[..., 0] = 0.2 + 0.2 * torch.rand(NTYPES, 1, generator=gen, dtype=torch.float64)
    dstd[..., 1:] = 0.1 + 0.1 * torch.rand(NTYPES, 1, 1, generator=gen, dtype=torch.float64)
    return [w for net in emb for w in net] + fit, davg.to(device), dstd.to(device)


def _energy(coord, atype, mapping, shift, nlist, weights, davg, dstd, impl: str):
    """Total energy [1] of the model on the dpx ops ("dpx"; "dpx-first-order": forces
    constant in the coordinates, as training runs it) or the reference twins."""
    ext = coord[:, mapping] + shift     # ghosts are differentiable images of the locals
    if impl.startswith("dpx"):
        em = dpx.ops.env_mat_se_a(ext, nlist, atype, davg, dstd, RCUT, RCUT_SMTH,
                                  coords_second_order=impl == "dpx")
    else:
        em = reference.env_mat_se_a(ext, nlist, atype, davg, dstd, RCUT, RCUT_SMTH)
    s = em[..., 0:1]
    sec = [0, *itertools.accumulate(SEL)]
    g = []
    for t in range(NTYPES):
        w1, b1, w2, b2 = weights[4 * t: 4 * t + 4]
        h = torch.tanh(s[..., sec[t]: sec[t + 1], :] @ w1 + b1)
        g.append(torch.tanh(h @ w2 + b2))
    g = torch.cat(g, dim=-2)
    if impl.startswith("dpx"):
        d, _ = dpx.ops.se_a_descriptor(em, g, AXIS)
    else:
        t_ = reference.se_a_reduce(em, g)
        d = reference.se_a_gram(t_, t_, AXIS).flatten(-2)
    fw1, fb1, fw2, fb2 = weights[4 * NTYPES:]
    e_atom = torch.tanh(d @ fw1 + fb1) @ fw2 + fb2
    return e_atom.sum(dim=(1, 2))


def _force_loss(system, weights, davg, dstd, impl, f_ref, e_ref, wrt_coord=False):
    coord, *rest = system
    coord = coord.clone().requires_grad_(True)
    e = _energy(coord, *rest, weights, davg, dstd, impl)
    (grad,) = torch.autograd.grad(e.sum(), coord, create_graph=True)
    force = -grad
    loss = (force - f_ref).pow(2).sum() + (e - e_ref).pow(2).sum()
    targets = list(weights) + ([coord] if wrt_coord else [])
    grads = torch.autograd.grad(loss, targets)
    return e.detach(), force.detach(), loss.detach(), grads


def _targets(seed=5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(1, NLOC, 3, generator=gen, dtype=torch.float64),
            torch.randn(1, generator=gen, dtype=torch.float64))


def _rel(a, b):
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("periodic", [False, True], ids=["cluster", "periodic"])
def test_force_loss_weight_gradient_matches_reference(periodic, device):
    system = on(device, _system(periodic))
    nlist = system[-1]
    assert (nlist >= 0).any() and (nlist < 0).any()   # real neighbors and padding
    if periodic:
        assert (nlist >= NLOC).any()                    # ghosts in the list
    weights, davg, dstd = _params(device=device)
    f_ref, e_ref = on(device, _targets())
    out = _force_loss(system, weights, davg, dstd, "dpx", f_ref, e_ref, wrt_coord=True)
    ref = _force_loss(system, weights, davg, dstd, "reference", f_ref, e_ref, wrt_coord=True)
    for a, b in zip(out[:3], ref[:3]):      # energy, force, loss
        assert _rel(a, b) < 1e-12
    assert len(out[3]) == 4 * NTYPES + 4 + 1
    for k, (a, b) in enumerate(zip(out[3], ref[3])):
        assert float(b.abs().max()) > 0, k     # every weight takes part
        assert _rel(a, b) < 1e-10, (k, _rel(a, b))


@pytest.mark.parametrize("device", DEVICES)
def test_first_order_coords_keep_the_weight_gradient(device):
    """coords_second_order=False (training): forces and the force-loss weight gradient equal
    the reference's, while d loss/d coord loses the hvp term (so it must differ)."""
    system = on(device, _system(True))
    weights, davg, dstd = _params(device=device)
    f_ref, e_ref = on(device, _targets())
    out = _force_loss(system, weights, davg, dstd, "dpx-first-order", f_ref, e_ref,
                      wrt_coord=True)
    ref = _force_loss(system, weights, davg, dstd, "reference", f_ref, e_ref, wrt_coord=True)
    for a, b in zip(out[:3], ref[:3]):
        assert _rel(a, b) < 1e-12
    for k, (a, b) in enumerate(zip(out[3][:-1], ref[3][:-1])):
        assert _rel(a, b) < 1e-10, (k, _rel(a, b))
    assert _rel(out[3][-1], ref[3][-1]) > 1e-6   # the coordinate gradient lost its hvp term


@pytest.mark.parametrize("periodic", [False, True], ids=["cluster", "periodic"])
def test_force_matches_finite_differences(periodic):
    system = _system(periodic, seed=2)
    coord, *rest = system
    weights, davg, dstd = _params(3)
    with torch.no_grad():
        weights = [w.detach() for w in weights]
    x = coord.clone().requires_grad_(True)
    e = _energy(x, *rest, weights, davg, dstd, "dpx")
    (force,) = torch.autograd.grad(-e.sum(), x)
    h = 1e-5
    fd = torch.empty_like(coord)
    with torch.no_grad():
        for i, c in itertools.product(range(NLOC), range(3)):
            xp, xm = coord.clone(), coord.clone()
            xp[0, i, c] += h
            xm[0, i, c] -= h
            ep = _energy(xp, *rest, weights, davg, dstd, "dpx")
            em = _energy(xm, *rest, weights, davg, dstd, "dpx")
            fd[0, i, c] = -(ep - em) / (2 * h)
    assert float(force.abs().max()) > 1e-3
    torch.testing.assert_close(force, fd, rtol=1e-6, atol=1e-7 * float(fd.abs().max()))


def test_weight_gradient_matches_finite_differences():
    system = _system(False, seed=4)
    weights, davg, dstd = _params(6)
    f_ref, e_ref = _targets(7)
    *_, grads = _force_loss(system, weights, davg, dstd, "dpx", f_ref, e_ref)
    h = 1e-6
    # one embedding weight (reaches the loss only through the double backward of the
    # descriptor) and one fitting weight
    for k, idx in ((2, (1, 3)), (4 * NTYPES, (5, 2))):
        def loss_at(delta, k=k, idx=idx):
            ws = [w.detach().clone() for w in weights]
            ws[k][idx] += delta
            ws = [w.requires_grad_(True) for w in ws]
            return _force_loss(system, ws, davg, dstd, "dpx", f_ref, e_ref)[2]

        fd = (loss_at(h) - loss_at(-h)) / (2 * h)
        an = grads[k][idx]
        assert abs(float(an)) > 1e-4
        assert abs(float(fd - an)) <= 1e-6 * abs(float(an)) + 1e-8, (k, float(fd), float(an))
