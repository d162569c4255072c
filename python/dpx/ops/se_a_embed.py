"""The fused se_e2_a embedding + reduction: one embedding net G(s) on the filled slots of its
type pair, contracted with their environment-matrix rows into T without G in memory
(kernels/cpu/embed.h has the formulas). The net's input s is em's column 0 (se_e2_a) or a
tensor of its own (DPA-1's strip mode), which the ops take as em's last column (s_last): every
derivative w.r.t. the slots is then one em-shaped tensor, whatever K.

  T = se_a_embed_reduce(em, center, params, ..., s=None)
  dT -> em:     se_a_embed_reduce_grad_em        (forces: G and G' = dG/ds recomputed per tile)
  dT -> params: se_a_embed_reduce_grad_params    (the energy's weight gradient)
  d(grad_em) -> (grad_t, em, params): se_a_embed_reduce_grad_em_grad   (a force loss)

The two derivatives of the first backward are taken only where this backward pass will use
them (torch._C._will_engine_execute_node): computing forces skips the weight gradient, and
the weight gradient of a loss skips the forces' em gradient. On CUDA the same ops run the
device-generic implementation (chunked ATen operations, ops/se_a_embed_generic.h), which
dpx_generic:: exposes on every device for the tests. The backward of the last two ops
(third derivatives) is the reference twin's autograd, so gradgradcheck holds; it is slow and
training never calls it.
"""
from __future__ import annotations

import torch

from dpx.ops import _checks, _library, paths, reference

_OPS = torch.ops.dpx if _library.LOADED and hasattr(torch.ops.dpx, "se_a_embed_reduce") \
    else None
AVAILABLE = _OPS is not None
# a CUDA build registers the device-generic implementation (ops/se_a_embed_generic.h) for CUDA
HAS_CUDA = AVAILABLE and torch._C._dispatch_has_kernel_for_dispatch_key(
    "dpx::se_a_embed_reduce", "CUDA")


def runs_on(device: torch.device) -> bool:
    """The op library implements the family on this device and ops/paths.py runs it there
    (on a GPU: where `dpx check` passed it)."""
    return AVAILABLE and (device.type == "cpu" or (device.type == "cuda" and HAS_CUDA)) \
        and paths.kernel(device, "se_a_embed")

# activation codes of the kernels (kernels/cpu/embed.h); other activations take the unfused
# path. gelu and gelu_tf are both the tanh approximation in dpx and DeePMD-kit.
ACTIVATIONS = {"linear": 0, "none": 0, "tanh": 1, "relu": 2, "softplus": 3, "sigmoid": 4,
               "gelu": 5, "gelu_tf": 5}


def activation_code(key: str) -> int | None:
    """The kernels' code of a parsed activation name, None where they have none."""
    return ACTIVATIONS.get(key)


def se_a_embed_reduce(em: torch.Tensor, center: torch.Tensor, params: torch.Tensor,
                      widths: list[int], activation: int, resnet_dt: bool, ncenter: int,
                      scale: float, s: torch.Tensor | None = None) -> torch.Tensor:
    """T [ncenter, K, M], T[c, a, m] = scale sum_{p: center[p] = c} em[p, a] G(s[p])[m] for
    em [nslot, K] (K >= 1), G the net packed in params (dpx.ops.reference.embed_net), center
    [nslot] sorted, s [nslot] the net's input (em[:, 0] when None).

    Jacobian, with gT = dL/dT and G' = dG/ds:
      dL/dem[p, a] = scale (gT[c_p] G(s_p))[a]  (+ scale em[p] . (gT[c_p] G'(s_p)) at a = 0
                     when s is None)
      dL/ds[p]     = scale em[p] . (gT[c_p] G'(s_p))
    """
    _checks.tensor("em", em, 2, _checks.FLOATS)
    if em.shape[1] < 1:
        raise ValueError(f"em must be [nslot, K] with K >= 1, got shape {tuple(em.shape)}")
    _checks.tensor("center", center, 1, "int")
    _checks.same("params", params, "em", em)
    if s is not None:
        _checks.tensor("s", s, 1, _checks.FLOATS)
        _checks.same("s", s, "em", em)
        if s.shape[0] != em.shape[0]:
            raise ValueError(f"s must be [nslot] with nslot = {em.shape[0]}, got shape "
                             f"{tuple(s.shape)}")
        em = torch.cat([em, s.unsqueeze(1)], dim=1)
    if not (isinstance(widths, (list, tuple)) and len(widths) >= 2 and widths[0] == 1):
        raise ValueError(f"widths must be [1, neuron...], got {widths!r}")
    if activation not in ACTIVATIONS.values():
        raise ValueError(f"activation must be one of the codes {sorted(set(ACTIVATIONS.values()))}"
                         f", got {activation!r}")
    impl = _OPS if runs_on(em.device) else reference
    return impl.se_a_embed_reduce(em, center.long(), params, list(widths), activation,
                                  bool(resnet_dt), ncenter, float(scale), s is not None)


def _will_run(ctx, i: int) -> bool:
    """Input i needs a gradient in the backward pass now running."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.nodes[i]
    return node is None or torch._C._will_engine_execute_node(node)


if _OPS is not None:
    # The derivative ops take the forward's trailing (widths, activation, resnet_dt, scale,
    # s_last) as ctx.net; each backward returns one gradient per input of its op (the
    # dispatcher may pass s_last=False as absent: a trailing None then goes unused).
    def _setup(ctx, inputs, output):
        em, center, params = inputs[:3]
        ctx.save_for_backward(em, center, params)
        ctx.net = (*inputs[3:6], *inputs[7:9])
        ctx.nodes = [em.grad_fn, None, params.grad_fn]

    def _reduce_bwd(ctx, gt):
        em, center, params = ctx.saved_tensors
        gem = _OPS.se_a_embed_reduce_grad_em(gt, em, center, params, *ctx.net) \
            if _will_run(ctx, 0) else None
        gp = _OPS.se_a_embed_reduce_grad_params(gt, em, center, params, *ctx.net) \
            if _will_run(ctx, 2) else None
        return gem, None, gp, None, None, None, None, None, None

    def _grad_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:4])
        ctx.net = tuple(inputs[4:])

    def _grad_em_bwd(ctx, gge):
        gt, em, center, params = ctx.saved_tensors
        g_gt, g_em, g_p = _OPS.se_a_embed_reduce_grad_em_grad(gge, gt, em, center, params,
                                                              *ctx.net)
        return g_gt, g_em, None, g_p, None, None, None, None, None

    def _grad_params_bwd(ctx, ggp):
        gt, em, center, params = ctx.saved_tensors
        widths, act, resnet_dt, scale, s_last = ctx.net
        with torch.enable_grad():
            gt_, em_, p_ = (x.detach().requires_grad_(True) for x in (gt, em, params))
            t = reference.se_a_embed_reduce(em_, center, p_, widths, act, resnet_dt,
                                            gt.shape[0], scale, s_last)
            gp = torch.autograd.grad(t, p_, gt_, create_graph=True)[0]
            g_gt, g_em, g_p = torch.autograd.grad(gp, (gt_, em_, p_), ggp, allow_unused=True)
        return g_gt, g_em, None, g_p, None, None, None, None, None

    def _grad_em_grad_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:5])
        ctx.net = tuple(inputs[5:])

    def _grad_em_grad_bwd(ctx, a, b, c):
        gge, gt, em, center, params = ctx.saved_tensors
        with torch.enable_grad():
            xs = [x.detach().requires_grad_(True) for x in (gge, gt, em, params)]
            outs = reference.se_a_embed_reduce_grad_em_grad(xs[0], xs[1], xs[2], center, xs[3],
                                                            *ctx.net)
            pairs = [(o, g) for o, g in zip(outs, (a, b, c)) if g is not None]
            grads = torch.autograd.grad([o for o, _ in pairs], xs, [g for _, g in pairs],
                                        allow_unused=True)
        return grads[0], grads[1], grads[2], None, grads[3], None, None, None, None, None

    torch.library.register_autograd("dpx::se_a_embed_reduce", _reduce_bwd, setup_context=_setup)
    torch.library.register_autograd("dpx::se_a_embed_reduce_grad_em", _grad_em_bwd,
                                    setup_context=_grad_setup)
    torch.library.register_autograd("dpx::se_a_embed_reduce_grad_params", _grad_params_bwd,
                                    setup_context=_grad_setup)
    torch.library.register_autograd("dpx::se_a_embed_reduce_grad_em_grad", _grad_em_grad_bwd,
                                    setup_context=_grad_em_grad_setup)

    @torch.library.register_fake("dpx::se_a_embed_reduce")
    def _(em, center, params, widths, activation, resnet_dt, ncenter, scale, s_last=False):
        return em.new_empty(ncenter, em.shape[1] - int(s_last), widths[-1])

    @torch.library.register_fake("dpx::se_a_embed_reduce_grad_em")
    def _(grad_t, em, center, params, widths, activation, resnet_dt, scale, s_last=False):
        return torch.empty_like(em)

    @torch.library.register_fake("dpx::se_a_embed_reduce_grad_params")
    def _(grad_t, em, center, params, widths, activation, resnet_dt, scale, s_last=False):
        return torch.empty_like(params)

    @torch.library.register_fake("dpx::se_a_embed_reduce_grad_em_grad")
    def _(grad_grad_em, grad_t, em, center, params, widths, activation, resnet_dt, scale,
          s_last=False):
        return torch.empty_like(grad_t), torch.empty_like(em), torch.empty_like(params)
