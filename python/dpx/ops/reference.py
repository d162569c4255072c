"""Pure-PyTorch twins of every dpx op.

They are the readable specification, the oracle of the op tests and the fallback where the
op library was not built. Each function has the exact semantics (argument order, shapes,
padding, tie-breaking) of the C++ op of the same name; autograd through these functions is
plain PyTorch autograd. Names follow DeePMD-kit: nf frames, nloc local atoms, nall extended
atoms, nnei = sum(sel) neighbor slots.
"""
from __future__ import annotations

import itertools
import math

import torch


# ----------------------------------------------------------------------------------------
# neighbor search
# ----------------------------------------------------------------------------------------
def face_distances(cell: torch.Tensor) -> torch.Tensor:
    """Distances between opposite faces of the cell whose rows are the cell vectors [3, 3]."""
    vol = torch.linalg.det(cell).abs()
    cross = torch.stack([
        torch.linalg.cross(cell[1], cell[2]),
        torch.linalg.cross(cell[2], cell[0]),
        torch.linalg.cross(cell[0], cell[1]),
    ])
    return vol / cross.norm(dim=-1)


def _wrap(coord: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional coordinates in [0, 1) and the integer offsets w with frac = f + w."""
    frac = coord @ torch.linalg.inv(cell)
    w = torch.floor(frac)
    f = frac - w
    # frac = -1e-18 gives f = 1.0 after rounding: fold it back into [0, 1)
    over = f >= 1.0
    f = torch.where(over, f - 1.0, f)
    w = torch.where(over, w + 1.0, w)
    return f, w


def _extend_frame(coord, atype, cell, rcut):
    """Extended system of one frame: local atoms (wrapped) first, then ghost images.

    A ghost (image shift s of atom i) is kept when its fractional coordinates lie within
    rcut/d_k of the cell along every axis k (d_k = face distance): every point within rcut
    of the cell passes, so no neighbor is lost; shifts are visited in lexicographic order.
    """
    nloc = coord.shape[0]
    mapping = torch.arange(nloc)
    if cell is None:
        return mapping, torch.zeros(nloc, 3, dtype=coord.dtype)
    f, w = _wrap(coord, cell)
    rc = rcut / face_distances(cell)
    nb = [int(math.ceil(x)) for x in rc.tolist()]
    maps, shifts = [mapping], [-w]
    real = atype >= 0
    for s in itertools.product(*[range(-n, n + 1) for n in nb]):
        if s == (0, 0, 0):
            continue
        sv = torch.tensor(s, dtype=coord.dtype)
        g = f + sv
        keep = real & ((g >= -rc) & (g <= 1.0 + rc)).all(dim=-1)
        idx = torch.nonzero(keep).flatten()
        maps.append(idx)
        shifts.append(sv - w[idx])
    return torch.cat(maps), torch.cat(shifts)


def _nlist_frame(ext, ext_atype, atype, nloc, rcut, sel):
    """DeePMD-kit's selection: the nearest sum(sel) within rcut (ties by extended index),
    then per type the first sel[t] of them, one section per type."""
    ntypes, nnei = len(sel), sum(sel)
    nlist = torch.full((nloc, nnei), -1, dtype=torch.long)
    counts = torch.zeros(nloc, ntypes, dtype=torch.long)
    d2 = ((ext[None, :, :] - ext[:nloc, None, :]) ** 2).sum(-1)
    ok = (d2 <= rcut * rcut) & (ext_atype[None, :] >= 0) & (atype[:, None] >= 0)
    ok[torch.arange(nloc), torch.arange(nloc)] = False
    min_d2 = d2[ok].min() if ok.any() else torch.tensor(math.inf, dtype=ext.dtype)
    sec = [0] + list(itertools.accumulate(sel))
    for i in range(nloc):
        cand = torch.nonzero(ok[i]).flatten()
        # stable sort by distance keeps ascending index among equal distances
        order = torch.sort(d2[i, cand], stable=True).indices
        cand = cand[order]
        for t in range(ntypes):
            counts[i, t] = (ext_atype[cand] == t).sum()
        cand = cand[:nnei]
        for t in range(ntypes):
            of_t = cand[ext_atype[cand] == t][: sel[t]]
            nlist[i, sec[t]: sec[t] + len(of_t)] = of_t
    return nlist, counts.max(dim=0).values if nloc else counts.sum(0), min_d2.sqrt()


def neighbor_list(coord, atype, box, rcut: float, sel: list[int]):
    """Twin of dpx::neighbor_list: brute force over all local x extended pairs.

    Returns (mapping, ext_atype, shift, nlist, nnei_max, min_dist) with the layout of the
    op; frames are padded to the largest nall with mapping 0, ext_atype -1, shift 0.
    """
    nf, nloc, _ = coord.shape
    frames = []
    for k in range(nf):
        cell = None if box is None else box[k].reshape(3, 3)
        mapping, shift = _extend_frame(coord[k], atype[k], cell, rcut)
        ext = coord[k][mapping] + (shift @ cell if cell is not None else 0.0)
        ext_atype = atype[k][mapping]
        frames.append((mapping, shift, ext_atype) + _nlist_frame(ext, ext_atype, atype[k], nloc, rcut, sel))
    nall = max(f[0].shape[0] for f in frames)
    mapping = torch.zeros(nf, nall, dtype=torch.long)
    ext_atype = torch.full((nf, nall), -1, dtype=torch.long)
    shift = torch.zeros(nf, nall, 3, dtype=coord.dtype)
    for k, (m, s, t, *_rest) in enumerate(frames):
        mapping[k, : len(m)], shift[k, : len(m)], ext_atype[k, : len(m)] = m, s, t
    nlist = torch.stack([f[3] for f in frames])
    nnei_max = torch.stack([f[4] for f in frames])
    min_dist = torch.stack([f[5] for f in frames]).to(coord.dtype)
    return mapping, ext_atype, shift, nlist, nnei_max, min_dist


def neighbor_stat(coord, atype, box, rcut: float, ntypes: int):
    """Twin of dpx::neighbor_stat: neighbor_list's (nnei_max, min_dist) for sel = ntypes
    zeros, the list itself thrown away."""
    return neighbor_list(coord, atype, box, rcut, [0] * ntypes)[4:]


def format_nlist(ext_coord, ext_atype, nlist, rcut: float, sel: list[int]):
    """Oracle of dpx.nlist.format_nlist, DeePMD-kit's way: sort the raw list [nf, nloc, width]
    by distance, keep the nearest sum(sel) within rcut, then per type the first sel[t] (one
    section per type, -1 padding). Always sorts, so it is slow and obviously right."""
    nf, nloc, width = nlist.shape
    nnei = sum(sel)
    idx = nlist.clamp(min=0)
    xj = torch.gather(ext_coord, 1, idx.reshape(nf, -1, 1).expand(-1, -1, 3))
    r = (xj.view(nf, nloc, width, 3) - ext_coord[:, :nloc, None, :]).norm(dim=-1)
    tj = torch.gather(ext_atype, 1, idx.reshape(nf, -1)).view(nf, nloc, width)
    valid = (nlist >= 0) & (r <= rcut) & (tj >= 0)
    r = torch.where(valid, r, torch.inf)
    order = torch.sort(r, dim=-1, stable=True).indices[..., :nnei]
    nl = torch.where(torch.gather(valid, 2, order), torch.gather(nlist, 2, order), -1)
    tj = torch.gather(tj, 2, order)
    sections = []
    for t, s in enumerate(sel):
        is_t = (tj == t) & (nl >= 0)
        # stable: entries of type t first, in distance order
        pick = torch.sort((~is_t).to(torch.int8), dim=-1, stable=True).indices[..., :s]
        sec = torch.where(torch.gather(is_t, 2, pick), torch.gather(nl, 2, pick), -1)
        if sec.shape[-1] < s:
            sec = torch.nn.functional.pad(sec, (0, s - sec.shape[-1]), value=-1)
        sections.append(sec)
    return torch.cat(sections, dim=-1)


# ----------------------------------------------------------------------------------------
# se_e2_a environment matrix
# ----------------------------------------------------------------------------------------
def smooth_switch(r: torch.Tensor, rcut_smth: float, rcut: float) -> torch.Tensor:
    """sw(r) = u^3 (-6u^2 + 15u - 10) + 1, u = (r - rs)/(rc - rs) clamped to [0, 1]: 1 below
    rcut_smth, 0 beyond rcut, C2 continuous."""
    u = (torch.clamp(r, rcut_smth, rcut) - rcut_smth) / (rcut - rcut_smth)
    return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0


def env_mat_se_a(ext_coord, nlist, atype, davg, dstd, rcut: float, rcut_smth: float,
                 protection: float = 0.0):
    """Twin of dpx::env_mat_se_a. ext_coord [nf, nall, 3], nlist [nf, nloc, nnei],
    atype [nf, nloc] (center types, >= 0), davg/dstd [ntypes, nnei, 4] -> [nf, nloc, nnei, 4].

    Row j of atom i: sw(r) (1/(r+p), x/(r+p)^2, y/(r+p)^2, z/(r+p)^2), minus davg and over
    dstd of the center's type; a padded slot (nlist = -1) has the raw row 0, so after
    normalization it is -davg/dstd (DeePMD-kit's convention).
    """
    nf, nloc, nnei = nlist.shape
    mask = nlist >= 0
    idx = torch.where(mask, nlist, 0)
    xj = torch.gather(ext_coord, 1, idx.reshape(nf, -1, 1).expand(-1, -1, 3)).reshape(nf, nloc, nnei, 3)
    d = xj - ext_coord[:, :nloc, None, :]
    # a dummy vector in padded slots keeps |d| away from 0 so no NaN enters the gradients
    dummy = torch.tensor([1.0, 0.0, 0.0], dtype=d.dtype, device=d.device)
    d = torch.where(mask[..., None], d, dummy)
    r = torch.linalg.norm(d, dim=-1, keepdim=True)
    rp = r + protection
    sw = smooth_switch(r, rcut_smth, rcut) * mask[..., None]
    raw = torch.cat([1.0 / rp, d / (rp * rp)], dim=-1) * sw
    return (raw - davg[atype]) / dstd[atype]


def env_mat_se_a_vjp(grad_em, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection=0.0):
    """Twin of dpx::env_mat_se_a_vjp: d<grad_em, em>/d ext_coord, by autograd of the twin."""
    x = ext_coord.detach().requires_grad_(True)
    davg = torch.zeros_like(dstd)
    with torch.enable_grad():
        em = env_mat_se_a(x, nlist, atype, davg, dstd, rcut, rcut_smth, protection)
        (g,) = torch.autograd.grad(em, x, grad_em)
    return g


def env_mat_se_a_jvp(tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection=0.0):
    """Twin of dpx::env_mat_se_a_jvp: (d em/d ext_coord) . tangent."""
    davg = torch.zeros_like(dstd)

    def f(x):
        return env_mat_se_a(x, nlist, atype, davg, dstd, rcut, rcut_smth, protection)

    return torch.func.jvp(f, (ext_coord,), (tangent,))[1]


def env_mat_se_a_hvp(grad_em, tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth,
                     protection=0.0):
    """Twin of dpx::env_mat_se_a_hvp: d/d ext_coord of <grad_em, jvp(tangent)>."""
    x = ext_coord.detach().requires_grad_(True)
    with torch.enable_grad():
        jv = env_mat_se_a_jvp(tangent, x, nlist, atype, dstd, rcut, rcut_smth, protection)
        (g,) = torch.autograd.grad(jv, x, grad_em)
    return g


# ----------------------------------------------------------------------------------------
# se_e2_a reductions
# ----------------------------------------------------------------------------------------
def se_a_reduce(em, g):
    """T[.., a, m] = (1/nnei) sum_j em[.., j, a] g[.., j, m]."""
    # matmul, not einsum: its backward is two plain batched matmuls (about 1.5x faster)
    return torch.matmul(em.transpose(-1, -2), g) / em.shape[-2]


def se_a_reduce_grad_em(grad_t, g):
    return torch.einsum("...am,...jm->...ja", grad_t, g) / g.shape[-2]


def se_a_reduce_grad_g(grad_t, em):
    return torch.einsum("...am,...ja->...jm", grad_t, em) / em.shape[-2]


def se_a_gram(a, b, axis_neuron: int):
    """D[.., m, n] = sum_a a[.., a, m] b[.., a, n] for n < axis_neuron."""
    return torch.einsum("...am,...an->...mn", a, b[..., :axis_neuron])


def se_a_gram_grad_a(grad_d, b):
    return torch.einsum("...mn,...an->...am", grad_d, b[..., : grad_d.shape[-1]])


def se_a_gram_grad_b(grad_d, a):
    gb = torch.einsum("...mn,...am->...an", grad_d, a)
    return torch.nn.functional.pad(gb, (0, a.shape[-1] - grad_d.shape[-1]))


# ----------------------------------------------------------------------------------------
# fused se_e2_a embedding + reduction
# ----------------------------------------------------------------------------------------
def _embed_activation(x: torch.Tensor, activation: int) -> torch.Tensor:
    """The activation of code `activation` (dpx.ops.se_a_embed.ACTIVATIONS)."""
    if activation == 1:
        return torch.tanh(x)
    if activation == 2:
        return torch.relu(x)
    if activation == 3:
        return torch.nn.functional.softplus(x)
    if activation == 4:
        return torch.sigmoid(x)
    if activation == 5:
        return torch.nn.functional.gelu(x, approximate="tanh")
    return x


def embed_net(s: torch.Tensor, params: torch.Tensor, widths: list[int], activation: int,
              resnet_dt: bool) -> torch.Tensor:
    """The embedding net packed in params (per layer: matrix [in, out], bias, idt when
    resnet_dt and out is in or 2 in) on s [n, 1] -> [n, widths[-1]]; DeePMD-kit's skip rule."""
    x = s
    off = 0
    for k in range(len(widths) - 1):
        num_in, num_out = widths[k], widths[k + 1]
        w = params[off:off + num_in * num_out].view(num_in, num_out)
        off += num_in * num_out
        b = params[off:off + num_out]
        off += num_out
        y = _embed_activation(x @ w + b, activation)
        skip = num_out == num_in or num_out == 2 * num_in
        if resnet_dt and skip:
            y = y * params[off:off + num_out]
            off += num_out
        if skip:
            y = y + (x if num_out == num_in else torch.cat([x, x], dim=-1))
        x = y
    return x


def embed_net_size(widths: list[int], resnet_dt: bool) -> int:
    """How many values embed_net reads from params for these widths."""
    return sum(i * o + o + (o if resnet_dt and o in (i, 2 * i) else 0)
               for i, o in zip(widths[:-1], widths[1:]))


def se_a_embed_reduce(em: torch.Tensor, center: torch.Tensor, params: torch.Tensor,
                      widths: list[int], activation: int, resnet_dt: bool, ncenter: int,
                      scale: float, s_last: bool = False) -> torch.Tensor:
    """T [ncenter, K, M]: T[c] = scale sum_{p: center[p] = c} em[p, :K] (x) G(s[p]), with
    s = em[:, 0] and K = em.shape[1]; or, s_last, s = em[:, K] and K = em.shape[1] - 1 (the
    net's input apart from the contracted columns)."""
    k = em.shape[1] - 1 if s_last else em.shape[1]
    g = embed_net(em[:, k:] if s_last else em[:, :1], params, widths, activation, resnet_dt)
    t = em.new_zeros(ncenter, k, widths[-1])
    return t.index_add(0, center, em[:, :k, None] * g[:, None, :]) * scale


def se_a_embed_reduce_grad_em(grad_t, em, center, params, widths: list[int], activation: int,
                              resnet_dt: bool, scale: float, s_last: bool = False):
    with torch.enable_grad():
        em = em.detach().requires_grad_(True)
        t = se_a_embed_reduce(em, center, params.detach(), widths, activation, resnet_dt,
                              grad_t.shape[0], scale, s_last)
        return torch.autograd.grad(t, em, grad_t)[0]


def se_a_embed_reduce_grad_params(grad_t, em, center, params, widths: list[int],
                                  activation: int, resnet_dt: bool, scale: float,
                                  s_last: bool = False):
    with torch.enable_grad():
        params = params.detach().requires_grad_(True)
        t = se_a_embed_reduce(em.detach(), center, params, widths, activation, resnet_dt,
                              grad_t.shape[0], scale, s_last)
        return torch.autograd.grad(t, params, grad_t)[0]


def se_a_embed_reduce_grad_em_grad(grad_grad_em, grad_t, em, center, params, widths: list[int],
                                   activation: int, resnet_dt: bool, scale: float,
                                   s_last: bool = False):
    """d/d(grad_t, em, params) of sum(grad_grad_em * se_a_embed_reduce_grad_em(...))."""
    with torch.enable_grad():
        gt, em, params = (x.detach().requires_grad_(True) for x in (grad_t, em, params))
        t = se_a_embed_reduce(em, center, params, widths, activation, resnet_dt,
                              gt.shape[0], scale, s_last)
        gem = torch.autograd.grad(t, em, gt, create_graph=True)[0]
        # with its graph: the backward of the fused op differentiates this once more
        return torch.autograd.grad(gem, (gt, em, params), grad_grad_em, create_graph=True)


# ----------------------------------------------------------------------------------------
# DeePMD-kit's tabulated embedding ops (deepmd::tabulate_fusion_*, `dp compress`)
# ----------------------------------------------------------------------------------------
# DeePMD-kit 3.2.0's schemas and numbers, differentiable to any order by autograd; what
# dpx.ops.deepmd registers under DeePMD-kit's names where its library is absent.
#
# A table holds, for each interval of the embedding input s, the six coefficients per output
# channel of a fifth-order polynomial in the offset from the interval's start:
# table [nintervals, M * 6], channel k's coefficients at 6k..6k+5. table_info = [lower, upper,
# max, stride0, stride1, check_frequency]: intervals of stride0 on [lower, upper), then of
# stride1 on [upper, max). Outside [lower, max) the value is extended linearly with the slope
# at the boundary (measured against DeePMD-kit's CPU kernels, tests/compress).
#
# tabulate_fusion_se_a and _se_atten contract the table's values with the environment
# matrix, out[i] = sum_j w_ij em[i, j]^T G(em_x[i, j]) -> [nloc, ncol, M], as DeePMD-kit's
# kernel (source/lib/src/tabulate.cc: tabulate_fusion_se_a_cpu) folds a sorted neighbor
# list's padding: the first row eligible for the fold counts as itself and every row after
# it (w = nnei - j there, 0 beyond, 1 before). A row is eligible when it repeats the last
# row's em_x and its em[1:4] is 0 (a padding row: a real neighbor's direction is never 0,
# so a neighbor tied with the last one, as in a symmetric shell that fills sel, is summed).
# The table's rows are counted in the table's precision, as the kernel's locate_xx does.


def _table_bounds(table_info: torch.Tensor, dtype: torch.dtype):
    """(lower, upper, max, stride0, stride1, first row of the stride1 part, last row, the
    last row's offset at max), counted as DeePMD-kit's kernel does (tabulate.cc: locate_xx,
    locate_high_tail_xx): in the table's precision, the last row the one holding
    nextafter(max, lower). float64 would count otherwise: 2 / 0.1f is 20 in float32 but
    19.99... in float64, which starts the stride1 part a row early; and the last row of a max
    off the stride1 grid is the one that holds it, not the one before."""
    lower, upper, top, stride0, stride1 = table_info[:5].detach().to("cpu", dtype).unbind()
    first = int((upper - lower) / stride0)
    last = first + int((torch.nextafter(top, lower) - upper) / stride1)
    end_offset = top - ((last - first) * stride1 + upper)
    return (*(float(v) for v in (lower, upper, top, stride0, stride1)), first, last,
            float(end_offset))


def _locate(x: torch.Tensor, bounds):
    """(row of the table, offset within the interval, linear extension beyond the table)."""
    lower, upper, top, stride0, stride1, first, last, end_offset = bounds
    in_first = x < upper
    idx = torch.where(in_first, torch.floor((x - lower) / stride0),
                      first + torch.floor((x - upper) / stride1))
    below, above = x < lower, x >= top
    idx = torch.where(below, 0.0, torch.where(above, float(last), idx)).detach()
    # the interval's start in the part x fell in (a float32 quotient may name the row first
    # from below upper; the kernel then still measures from the stride0 grid)
    start = torch.where(in_first, idx * stride0 + lower, (idx - first) * stride1 + upper)
    offset = torch.where(below, 0.0, torch.where(above, end_offset, x - start))
    beyond = torch.where(below, x - lower, torch.where(above, x - top, 0.0))
    return idx.long(), offset, beyond


def embedding_values(table: torch.Tensor, table_info: torch.Tensor, x: torch.Tensor,
                     width: int) -> torch.Tensor:
    """G(x) [..., width] of the tabulated embedding net at inputs x [...]."""
    idx, t, beyond = _locate(x, _table_bounds(table_info, table.dtype))
    a = table.reshape(table.shape[0], width, 6)[idx]  # [..., width, 6]
    t, beyond = t[..., None], beyond[..., None]
    value = a[..., 0] + (a[..., 1] + (a[..., 2] + (a[..., 3] + (a[..., 4] + a[..., 5] * t)
                                                      * t) * t) * t) * t
    slope = a[..., 1] + (2 * a[..., 2] + (3 * a[..., 3] + (4 * a[..., 4] + 5 * a[..., 5] * t)
                                          * t) * t) * t
    return value + slope * beyond


def _folded_contraction(em: torch.Tensor, g: torch.Tensor, x: torch.Tensor, is_sorted: bool):
    """sum_j w_j em[:, j]^T g[:, j] -> [nloc, ncol, M] of em [nloc, nnei, ncol],
    g [nloc, nnei, M] and x = em_x [nloc, nnei]: with is_sorted the first row eligible for the
    fold (see above) counts nnei - j times, the rows after it not at all; a center with no
    eligible row, or every center without is_sorted, sums every row."""
    nloc, nnei = x.shape
    if nnei > 0 and is_sorted:
        eligible = (x == x[:, -1:]) & (em[..., 1:4] == 0).all(dim=-1)
        first = eligible.to(torch.int64).argmax(dim=1, keepdim=True)
        repeat = torch.where(eligible.any(dim=1, keepdim=True), first, nnei)
        j = torch.arange(nnei, device=em.device)[None, :]
        weight = torch.where(j < repeat, 1, torch.where(j == repeat, nnei - repeat, 0))
        em = em * weight.to(em.dtype)[..., None]
    return torch.einsum("ijc,ijm->icm", em, g)


def tabulate_fusion_se_a(table: torch.Tensor, table_info: torch.Tensor, em_x: torch.Tensor,
                         em: torch.Tensor, last_layer_size: int) -> list[torch.Tensor]:
    """em_x = s [nloc * nnei, 1], em = R [nloc, nnei, 4] -> [out [nloc, 4, M]],
      out[i, a, m] = sum_j w_ij R[i, j, a] G_m(s_ij),
    always folded (DeePMD-kit's se_a op passes is_sorted = true: its compressed forward_lower
    sorts the list, and exclusions are uniform within one call). Jacobian:
      d out[i, a, m] / d R[i, j, a] = w_ij G_m(s_ij)
      d out[i, a, m] / d s_ij       = w_ij R[i, j, a] G_m'(s_ij)"""
    nloc, nnei = em.shape[0], em.shape[1]
    x = em_x.reshape(nloc, nnei)
    g = embedding_values(table, table_info, x, last_layer_size)  # [nloc, nnei, M]
    return [_folded_contraction(em.reshape(nloc, nnei, 4), g, x, True)]


def tabulate_fusion_se_atten(table: torch.Tensor, table_info: torch.Tensor,
                             em_x: torch.Tensor, em: torch.Tensor, two_embed: torch.Tensor,
                             last_layer_size: int, is_sorted: bool) -> list[torch.Tensor]:
    """DeePMD-kit's compressed se_atten (DPA-1, se_atten_v2) embedding contraction:
    em_x = s [nloc * nnei, 1], em = R [nloc, nnei, ncol] (ncol 4, or (lmax + 1)^2 = 9, 16,
    25 rows of DeePMD-kit's moment basis), two_embed = t [nloc * nnei, M] (the type-pair
    embedding, times sw when smooth) -> [out [nloc, ncol, M]],
      out[i, c, k] = sum_j w_ij R[i, j, c] G_k(s_ij) (1 + t[i, j, k]),
    w the fold when is_sorted (the first row whose s equals the last row's and whose
    R[1:4] = 0 counts nnei - j times, with its own s, R and t; the rows after it 0), else 1.
    Jacobian, the DeePMD-kit op's first derivatives:
      d out[i, c, k] / d R[i, j, c] = w_ij G_k(s_ij) (1 + t[i, j, k])
      d out[i, c, k] / d s_ij       = w_ij R[i, j, c] G_k'(s_ij) (1 + t[i, j, k])
      d out[i, c, k] / d t[i, j, k] = w_ij R[i, j, c] G_k(s_ij)
    G_k' the slope of the polynomial (of the boundary's outside the table). Its second
    derivatives differ: DeePMD-kit differentiates these only with respect to the cotangent,
    and returns 0 for the rest (through s, R, t); autograd's are the true ones."""
    nloc, nnei, ncol = em.shape
    if ncol not in (4, 9, 16, 25):
        raise ValueError(f"The environment basis dimension must be 4, 9, 16, or 25, got {ncol}")
    x = em_x.reshape(nloc, nnei)
    g = embedding_values(table, table_info, x, last_layer_size)  # [nloc, nnei, M]
    t = two_embed.reshape(nloc, nnei, last_layer_size)
    g = g * t + g  # DeePMD-kit's order of operations: var * t + var
    return [_folded_contraction(em, g, x, is_sorted)]


def tabulate_fusion_se_r(table: torch.Tensor, table_info: torch.Tensor, em: torch.Tensor,
                         last_layer_size: int) -> list[torch.Tensor]:
    """G(s) per neighbor [nloc, nnei, M] (se_e2_r contracts it itself)."""
    return [embedding_values(table, table_info, em, last_layer_size)]
