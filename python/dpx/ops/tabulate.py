"""DeePMD-kit's compressed se_e2_a embedding (deepmd::tabulate_fusion_se_a) by dpx's kernel:
what dpx.ops.deepmd registers under DeePMD-kit's op name where DeePMD-kit's library is
absent, so that `dpx test` and the ASE calculator run compressed files at compiled speed.

The pure-PyTorch twin is dpx.ops.reference.tabulate_fusion_se_a (the same arithmetic,
differentiable to any order). The compiled pair is the value and its first derivative
(forces); a derivative of that (create_graph, as a force loss would take) goes through the
twin. The tables are constants: no gradient flows to them.
"""
from __future__ import annotations

import torch

from dpx.ops import _library
from dpx.ops import reference as twin

_OPS = torch.ops.dpx if _library.LOADED else None


def tabulate_fusion_se_a(table: torch.Tensor, table_info: torch.Tensor, em_x: torch.Tensor,
                         em: torch.Tensor, last_layer_size: int) -> list[torch.Tensor]:
    """DeePMD-kit's schema and return type: [out [nloc, 4, last_layer_size]]."""
    if _OPS is None or not em.is_cpu:
        return twin.tabulate_fusion_se_a(table, table_info, em_x, em, last_layer_size)
    return [_OPS.tabulate_se_a(table, table_info, em_x, em, last_layer_size)]


if _OPS is not None:
    def _setup(ctx, inputs, output):
        table, table_info, em_x, em, m = inputs
        ctx.save_for_backward(table, table_info, em_x, em)
        ctx.m = m

    def _backward(ctx, grad_out):
        table, table_info, em_x, em = ctx.saved_tensors
        want = ctx.needs_input_grad[2:4]
        if not torch.is_grad_enabled():  # forces: the compiled derivative
            dem_x, dem = _OPS.tabulate_se_a_grad(grad_out, table, table_info, em_x, em)
            return None, None, dem_x if want[0] else None, dem if want[1] else None, None
        # a derivative to be differentiated again: the twin's graph
        inputs = [t for t, w in zip((em_x, em), want) if w]
        out = twin.tabulate_fusion_se_a(table, table_info, em_x, em, ctx.m)[0]
        grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True))
        return (None, None, next(grads) if want[0] else None, next(grads) if want[1] else None,
                None)

    torch.library.register_autograd("dpx::tabulate_se_a", _backward, setup_context=_setup)

    @torch.library.register_fake("dpx::tabulate_se_a")
    def _(table, table_info, em_x, em, last_layer_size):
        return em.new_empty(em.shape[0], 4, last_layer_size)

    @torch.library.register_fake("dpx::tabulate_se_a_grad")
    def _(grad_out, table, table_info, em_x, em):
        return torch.empty_like(em_x), torch.empty_like(em)
