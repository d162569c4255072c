"""se_e2_a embedding reductions: T = em^T G / nnei and the descriptor D = T^T T[:, :axis_neuron].

Both are bilinear, so each op's partial derivatives are again ops of the same small family:
  T = reduce(em, g):         dL/dem = reduce_grad_em(gT, g),  dL/dg = reduce_grad_g(gT, em)
  gE = reduce_grad_em(gT, g): d/dgT = reduce(ggE, g),          d/dg = reduce_grad_g(gT, ggE)
  gG = reduce_grad_g(gT, em): d/dgT = reduce(em, ggG),         d/dem = reduce_grad_em(gT, ggG)
and likewise for gram(a, b) with gram_grad_a / gram_grad_b. Every derivative order is
therefore available (training on forces needs the second).
"""
from __future__ import annotations

import torch

from dpx.ops import _checks, _library, paths, reference

_OPS = torch.ops.dpx if _library.LOADED else None


def se_a_descriptor(em: torch.Tensor, g: torch.Tensor, axis_neuron: int):
    """em [..., nnei, 4] (normalized env matrix rows), g [..., nnei, M] (embedding of each
    slot) -> (D [..., M * axis_neuron], T [..., 4, M]) with T = (1/nnei) sum_j em_j (x) g_j and
    D[m, n] = sum_a T[a, m] T[a, n], n < axis_neuron, flattened row-major (deepmd-compat §3.5).
    """
    if not isinstance(em, torch.Tensor) or em.dim() < 2:
        raise ValueError(f"em must be a tensor [..., nnei, 4], got {getattr(em, 'shape', em)!r}")
    _checks.tensor("em", em, em.dim(), _checks.FLOATS, last=4)
    if not isinstance(g, torch.Tensor) or g.dim() != em.dim() or g.shape[:-1] != em.shape[:-1]:
        raise ValueError(f"g must be [..., nnei, M] with the leading shape of em "
                         f"{tuple(em.shape[:-1])}, got {tuple(getattr(g, 'shape', ()))}")
    _checks.same("g", g, "em", em)
    m = g.shape[-1]
    if not isinstance(axis_neuron, int) or not 0 < axis_neuron <= m:
        raise ValueError(f"axis_neuron must be an integer in [1, M = {m}], got {axis_neuron!r}")
    impl = _OPS if paths.kernel(em.device, "se_a") else reference  # ops/paths.py's choice
    t = impl.se_a_reduce(em, g)
    d = impl.se_a_gram(t, t, axis_neuron)
    return d.reshape(*d.shape[:-2], m * axis_neuron), t


if _OPS is not None:
    def _save(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    def _reduce_bwd(ctx, gt):
        em, g = ctx.saved_tensors
        return (_OPS.se_a_reduce_grad_em(gt, g) if ctx.needs_input_grad[0] else None,
                _OPS.se_a_reduce_grad_g(gt, em) if ctx.needs_input_grad[1] else None)

    def _reduce_grad_em_bwd(ctx, gge):
        gt, g = ctx.saved_tensors
        return (_OPS.se_a_reduce(gge, g) if ctx.needs_input_grad[0] else None,
                _OPS.se_a_reduce_grad_g(gt, gge) if ctx.needs_input_grad[1] else None)

    def _reduce_grad_g_bwd(ctx, ggg):
        gt, em = ctx.saved_tensors
        return (_OPS.se_a_reduce(em, ggg) if ctx.needs_input_grad[0] else None,
                _OPS.se_a_reduce_grad_em(gt, ggg) if ctx.needs_input_grad[1] else None)

    def _gram_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    def _gram_bwd(ctx, gd):
        a, b = ctx.saved_tensors
        return (_OPS.se_a_gram_grad_a(gd, b) if ctx.needs_input_grad[0] else None,
                _OPS.se_a_gram_grad_b(gd, a) if ctx.needs_input_grad[1] else None, None)

    def _gram_grad_a_bwd(ctx, gga):
        gd, b = ctx.saved_tensors
        return (_OPS.se_a_gram(gga, b, gd.shape[-1]) if ctx.needs_input_grad[0] else None,
                _OPS.se_a_gram_grad_b(gd, gga) if ctx.needs_input_grad[1] else None)

    def _gram_grad_b_bwd(ctx, ggb):
        gd, a = ctx.saved_tensors
        return (_OPS.se_a_gram(a, ggb, gd.shape[-1]) if ctx.needs_input_grad[0] else None,
                _OPS.se_a_gram_grad_a(gd, ggb) if ctx.needs_input_grad[1] else None)

    for _name, _bwd, _setup in (
            ("se_a_reduce", _reduce_bwd, _save),
            ("se_a_reduce_grad_em", _reduce_grad_em_bwd, _save),
            ("se_a_reduce_grad_g", _reduce_grad_g_bwd, _save),
            ("se_a_gram", _gram_bwd, _gram_setup),
            ("se_a_gram_grad_a", _gram_grad_a_bwd, _save),
            ("se_a_gram_grad_b", _gram_grad_b_bwd, _save)):
        torch.library.register_autograd(f"dpx::{_name}", _bwd, setup_context=_setup)

    @torch.library.register_fake("dpx::se_a_reduce")
    def _(em, g):
        return em.new_empty(*em.shape[:-2], 4, g.shape[-1])

    @torch.library.register_fake("dpx::se_a_reduce_grad_em")
    def _(grad_t, g):
        return g.new_empty(*g.shape[:-1], 4)

    @torch.library.register_fake("dpx::se_a_reduce_grad_g")
    def _(grad_t, em):
        return em.new_empty(*em.shape[:-1], grad_t.shape[-1])

    @torch.library.register_fake("dpx::se_a_gram")
    def _(a, b, axis_neuron):
        return a.new_empty(*a.shape[:-2], a.shape[-1], axis_neuron)

    @torch.library.register_fake("dpx::se_a_gram_grad_a")
    def _(grad_d, b):
        return torch.empty_like(b)

    @torch.library.register_fake("dpx::se_a_gram_grad_b")
    def _(grad_d, a):
        return torch.empty_like(a)
