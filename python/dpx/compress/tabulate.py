"""DeePMD-kit's tabulated embedding ops in PyTorch: deepmd::tabulate_fusion_se_a and
deepmd::tabulate_fusion_se_r with DeePMD-kit 3.2.0's schemas and numbers, differentiable to
any order by autograd (they are written in differentiable torch ops).

A table holds, for each interval of the embedding input s, the six coefficients per output
channel of a fifth-order polynomial in the offset from the interval's start:
table [nintervals, M * 6], channel k's coefficients at 6k..6k+5. table_info = [lower, upper,
max, stride0, stride1, check_frequency]: intervals of stride0 on [lower, upper), then of
stride1 on [upper, max). Outside [lower, max) the value is extended linearly with the slope
at the boundary (measured against DeePMD-kit's CPU kernels, tests/compress).

tabulate_fusion_se_a contracts the table's values with the environment matrix,
out[i] = sum_j em[i, j]^T G(em_x[i, j]) -> [nloc, 4, M]; as DeePMD-kit's kernel, the rows
from the first that repeats the last row's em_x onwards (the padding of a sorted neighbor
list) count as that row times their number."""
from __future__ import annotations

import torch


def _locate(x: torch.Tensor, info: list[float]):
    """(row of the table, offset within the interval, linear extension beyond the table)."""
    lower, upper, top, stride0, stride1 = info[:5]
    first = int((upper - lower) / stride0)
    last = first + int((top - upper) / stride1) - 1
    in_first = x < upper
    idx = torch.where(in_first, torch.floor((x - lower) / stride0),
                      first + torch.floor((x - upper) / stride1))
    below, above = x < lower, x >= top
    idx = torch.where(below, 0.0, torch.where(above, float(last), idx)).detach()
    start = torch.where(idx < first, idx * stride0 + lower, (idx - first) * stride1 + upper)
    end_offset = top - ((last - first) * stride1 + upper)
    offset = torch.where(below, 0.0, torch.where(above, end_offset, x - start))
    beyond = torch.where(below, x - lower, torch.where(above, x - top, 0.0))
    return idx.long(), offset, beyond


def embedding_values(table: torch.Tensor, table_info: torch.Tensor, x: torch.Tensor,
                     width: int) -> torch.Tensor:
    """G(x) [..., width] of the tabulated embedding net at inputs x [...]."""
    idx, t, beyond = _locate(x, [float(v) for v in table_info.tolist()])
    a = table.reshape(table.shape[0], width, 6)[idx]  # [..., width, 6]
    t, beyond = t[..., None], beyond[..., None]
    value = a[..., 0] + (a[..., 1] + (a[..., 2] + (a[..., 3] + (a[..., 4] + a[..., 5] * t)
                                                      * t) * t) * t) * t
    slope = a[..., 1] + (2 * a[..., 2] + (3 * a[..., 3] + (4 * a[..., 4] + 5 * a[..., 5] * t)
                                          * t) * t) * t
    return value + slope * beyond


def tabulate_fusion_se_a(table: torch.Tensor, table_info: torch.Tensor, em_x: torch.Tensor,
                         em: torch.Tensor, last_layer_size: int) -> list[torch.Tensor]:
    nloc, nnei = em.shape[0], em.shape[1]
    x = em_x.reshape(nloc, nnei)
    g = embedding_values(table, table_info, x, last_layer_size)  # [nloc, nnei, M]
    # DeePMD-kit's early stop: the first row equal to the last row's input stands for all
    # rows from it to the end
    repeat = (x == x[:, -1:]).to(torch.int64).argmax(dim=1, keepdim=True)
    j = torch.arange(nnei, device=em.device)[None, :]
    weight = torch.where(j < repeat, 1, torch.where(j == repeat, nnei - repeat, 0)).to(em.dtype)
    out = torch.einsum("ijc,ijm->icm", em.reshape(nloc, nnei, 4) * weight[..., None], g)
    return [out]


def tabulate_fusion_se_r(table: torch.Tensor, table_info: torch.Tensor, em: torch.Tensor,
                         last_layer_size: int) -> list[torch.Tensor]:
    """G(s) per neighbor [nloc, nnei, M] (se_e2_r contracts it itself)."""
    return [embedding_values(table, table_info, em, last_layer_size)]


IMPLEMENTED = {"tabulate_fusion_se_a": tabulate_fusion_se_a,
               "tabulate_fusion_se_r": tabulate_fusion_se_r}
