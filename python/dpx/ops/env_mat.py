"""se_e2_a environment matrix with an autograd chain that goes as deep as training needs.

em = env_mat(x) with x the extended coordinates. Writing J = d em/d x and H_a = d^2 em_a/d x^2:
  env_mat_se_a_vjp(g, x)    = J^T g                    (forces: the first backward)
  env_mat_se_a_jvp(t, x)    = J t                      (backward of vjp in g: force losses)
  env_mat_se_a_hvp(g, t, x) = sum_a g_a H_a t          (backward of vjp / jvp in x)
Per slot, with d = x_j - x_i, r = |d|, rho = r + p, g0 = sw/rho, g1 = sw/rho^2, the raw row is
(g0, g1 d_x, g1 d_y, g1 d_z) and
  d g0/d d_c  = g0' d_c / r
  d (g1 d_k)/d d_c = g1' d_c d_k / r + g1 delta_kc,
all divided by dstd[t_i, j, a]; each slot's result goes to x_j with + and to x_i with -.
Padded slots (nlist = -1) are constants. hvp is the last order: differentiating it raises.

With coords_second_order=False the first backward (forces) is computed from ext_coord taken
as a constant, so forces carry no graph back to the coordinates: a force loss differentiated
by the weights never needs d(force)/d(coord), and autograd then skips the hvp term. Training
passes False; the weight gradients are the same (tests/ops/test_force_loss.py).
"""
from __future__ import annotations

import torch

from dpx.ops import _checks, _library, paths, reference

_OPS = torch.ops.dpx if _library.LOADED else None


def _check(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth, protection):
    _checks.tensor("ext_coord", ext_coord, 3, _checks.FLOATS, last=3)
    _checks.tensor("nlist", nlist, 3, (torch.int64,))
    _checks.tensor("atype", atype, 2, "int")
    nf, nloc, nnei = nlist.shape
    if ext_coord.shape[0] != nf or ext_coord.shape[1] < nloc:
        raise ValueError(f"ext_coord must be [nf, nall >= nloc, 3] with nf = {nf}, nloc = {nloc}; "
                         f"got {tuple(ext_coord.shape)}")
    if tuple(atype.shape) != (nf, nloc):
        raise ValueError(f"atype must be [nf, nloc] = {(nf, nloc)}, got {tuple(atype.shape)}")
    for name, t in (("davg", davg), ("dstd", dstd)):
        _checks.tensor(name, t, 3, last=4)
        _checks.same(name, t, "ext_coord", ext_coord)
        if t.shape[1] != nnei:
            raise ValueError(f"{name} must be [ntypes, nnei = {nnei}, 4], got {tuple(t.shape)}")
    for name, t in (("nlist", nlist), ("atype", atype)):
        _checks.same(name, t, "ext_coord", ext_coord, dtype=False)
    # values are checked on CPU only: on a GPU, reading them is a device synchronization per
    # call on the training path; the CUDA kernels write NaN for a bad type instead
    if atype.numel() and atype.device.type == "cpu" and (
            int(atype.min()) < 0 or int(atype.max()) >= davg.shape[0]):
        raise ValueError(f"atype values must lie in [0, ntypes = {davg.shape[0]}); map virtual "
                         f"atoms to type 0 (their nlist rows are -1), got "
                         f"[{int(atype.min())}, {int(atype.max())}]")
    _checks.cutoffs(rcut, rcut_smth)
    if not (protection >= 0):
        raise ValueError(f"protection must be >= 0, got {protection!r}")


def env_mat_se_a(ext_coord: torch.Tensor, nlist: torch.Tensor, atype: torch.Tensor,
                 davg: torch.Tensor, dstd: torch.Tensor, rcut: float, rcut_smth: float,
                 protection: float = 0.0, coords_second_order: bool = True) -> torch.Tensor:
    """Normalized se_e2_a environment matrix [nf, nloc, nnei, 4] (deepmd-compat §3.2).

    Differentiable in ext_coord to second order (forces, then force losses; see the module
    docstring for coords_second_order); davg and dstd are statistics, not trained, and get
    no gradient.
    """
    _check(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth, protection)
    args = (nlist, atype.long(), davg, dstd, float(rcut), float(rcut_smth), float(protection))
    # the kernel where ops/paths.py runs it on this device, else the twin (plain autograd)
    if paths.kernel(ext_coord.device, "env_mat"):
        return _OPS.env_mat_se_a(ext_coord, *args, bool(coords_second_order))
    return reference.env_mat_se_a(ext_coord, *args)


if _OPS is not None:
    def _save(ctx, inputs, output):
        ctx.save_for_backward(*[t for t in inputs if isinstance(t, torch.Tensor)])
        ctx.cut = inputs[-3:]

    def _em_fwd_setup(ctx, inputs, output):
        ext_coord, nlist, atype, _davg, dstd, *cut, second_order = inputs
        ctx.save_for_backward(ext_coord, nlist, atype, dstd)
        ctx.cut, ctx.second_order = cut, second_order

    def _em_bwd(ctx, grad_em):
        x, nlist, atype, dstd = ctx.saved_tensors
        if not ctx.second_order:
            x = x.detach()
        g = _OPS.env_mat_se_a_vjp(grad_em, x, nlist, atype, dstd, *ctx.cut)
        return g, None, None, None, None, None, None, None, None

    def _vjp_bwd(ctx, gg):
        grad_em, x, nlist, atype, dstd = ctx.saved_tensors
        d_grad = d_x = None
        if ctx.needs_input_grad[0]:
            d_grad = _OPS.env_mat_se_a_jvp(gg, x, nlist, atype, dstd, *ctx.cut)
        if ctx.needs_input_grad[1]:
            d_x = _OPS.env_mat_se_a_hvp(grad_em, gg, x, nlist, atype, dstd, *ctx.cut)
        return d_grad, d_x, None, None, None, None, None, None

    def _jvp_bwd(ctx, g):
        tangent, x, nlist, atype, dstd = ctx.saved_tensors
        d_t = d_x = None
        if ctx.needs_input_grad[0]:
            d_t = _OPS.env_mat_se_a_vjp(g, x, nlist, atype, dstd, *ctx.cut)
        if ctx.needs_input_grad[1]:
            d_x = _OPS.env_mat_se_a_hvp(g, tangent, x, nlist, atype, dstd, *ctx.cut)
        return d_t, d_x, None, None, None, None, None, None

    def _hvp_bwd(ctx, *grads):
        raise NotImplementedError(
            "dpx::env_mat_se_a supports derivatives up to second order (forces and force "
            "losses); a third derivative of the environment matrix is not implemented")

    torch.library.register_autograd("dpx::env_mat_se_a", _em_bwd, setup_context=_em_fwd_setup)
    torch.library.register_autograd("dpx::env_mat_se_a_vjp", _vjp_bwd, setup_context=_save)
    torch.library.register_autograd("dpx::env_mat_se_a_jvp", _jvp_bwd, setup_context=_save)
    torch.library.register_autograd("dpx::env_mat_se_a_hvp", _hvp_bwd, setup_context=_save)

    @torch.library.register_fake("dpx::env_mat_se_a")
    def _(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth, protection,
          coords_second_order=True):
        return ext_coord.new_empty(*nlist.shape, 4)

    @torch.library.register_fake("dpx::env_mat_se_a_vjp")
    def _(grad_em, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection):
        return torch.empty_like(ext_coord)

    @torch.library.register_fake("dpx::env_mat_se_a_jvp")
    def _(tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection):
        return ext_coord.new_empty(*nlist.shape, 4)

    @torch.library.register_fake("dpx::env_mat_se_a_hvp")
    def _(grad_em, tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection):
        return torch.empty_like(ext_coord)
