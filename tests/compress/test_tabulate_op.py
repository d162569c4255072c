"""dpx's compiled deepmd::tabulate_fusion_se_a stand-in (dpx::tabulate_se_a and its
derivative) against its pure-PyTorch twin (dpx.ops.reference): values and derivatives on
rows inside, below and beyond the table, sorted padding (the early stop) and unsorted rows,
float64 and float32; gradcheck and gradgradcheck (the second order goes through the twin),
opcheck, and bad arguments named. Both are checked against DeePMD-kit's own op in
tests/compress/test_tabulate.py, and whole compressed files in tests/fidelity."""
import pytest
import torch

from dpx import ops
from dpx.model.network import EmbeddingNet
from dpx.model.tabulate import tabulate
from dpx.ops import reference as twin
from dpx.ops import tabulate as compiled

pytestmark = pytest.mark.skipif(not ops.LOADED, reason="dpx op library not built")
M = 8


def table_of(dtype):
    net = EmbeddingNet(1, [4, M], "tanh", False, dtype, seed=1)
    return tabulate(net, -1.0, 3.0, 0.05, 2.0, -1, dtype)


def rows(dtype, nloc=5, nnei=9, seed=0):
    """em_x [nloc * nnei, 1], em [nloc, nnei, 4]: inputs inside [lower, max), below and
    beyond it; rows 0-2 end in padding (row 2 is all padding), the others do not."""
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(nloc, nnei, 4, generator=g, dtype=dtype)
    em[..., 0] = torch.rand(nloc, nnei, generator=g, dtype=dtype) * 9.0 - 2.0  # [-2, 7)
    pad = torch.tensor([-0.7, 0.0, 0.0, 0.0], dtype=dtype)
    em[0, 6:], em[1, 3:], em[2, :] = pad, pad, pad
    return em[..., :1].reshape(-1, 1).clone(), em


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equals_twin(dtype):
    table, info = table_of(dtype)
    em_x, em = rows(dtype)
    em_x.requires_grad_(True)
    em.requires_grad_(True)
    ours = compiled.tabulate_fusion_se_a(table, info, em_x, em, M)[0]
    ref = twin.tabulate_fusion_se_a(table, info, em_x, em, M)[0]
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
    dy = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, (em_x, em), dy)
    g_ref = torch.autograd.grad(ref, (em_x, em), dy)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_gradcheck_and_second_order():
    """On rows without padding: a finite step of a padding row's input moves the early stop,
    which no derivative describes (DeePMD-kit's kernel and the twin alike)."""
    table, info = table_of(torch.float64)
    em_x, em = rows(torch.float64, nloc=5, nnei=5)
    em = em[3:].clone().requires_grad_(True)
    em_x = em_x[15:].clone().requires_grad_(True)

    def f(x, e):
        return compiled.tabulate_fusion_se_a(table, info, x, e, M)[0]
    assert torch.autograd.gradcheck(f, (em_x, em))
    assert torch.autograd.gradgradcheck(f, (em_x, em))


def test_opcheck():
    table, info = table_of(torch.float64)
    em_x, em = rows(torch.float64)
    torch.library.opcheck(torch.ops.dpx.tabulate_se_a, (table, info, em_x, em, M),
                          test_utils=("test_schema", "test_faketensor"))
    dy = torch.randn(em.shape[0], 4, M, dtype=torch.float64)
    torch.library.opcheck(torch.ops.dpx.tabulate_se_a_grad, (dy, table, info, em_x, em),
                          test_utils=("test_schema", "test_faketensor"))


def test_bad_arguments_are_named():
    table, info = table_of(torch.float64)
    em_x, em = rows(torch.float64)
    op = torch.ops.dpx.tabulate_se_a
    with pytest.raises(RuntimeError, match="table must be"):
        op(table, info, em_x, em, M + 1)
    with pytest.raises(RuntimeError, match="em_x must hold one value per slot"):
        op(table, info, em_x[:-1], em, M)
    with pytest.raises(RuntimeError, match="em_x must be Double"):
        op(table, info, em_x.float(), em, M)
    with pytest.raises(RuntimeError, match="the table has"):
        op(table[:-1], info, em_x, em, M)
    with pytest.raises(RuntimeError, match="table_info needs"):
        op(table, info.flip(0), em_x, em, M)
