"""dpx's PyTorch versions of DeePMD-kit's tabulate ops (dpx.ops.reference). se_a and se_r
against a scalar loop written from DeePMD-kit 3.2.0's CPU kernel semantics (measured against
that kernel: intervals of stride0 then stride1, linear extension with the boundary slope
outside [lower, max), the rows from the first padding row that repeats the last row's input
counted as that row times their number); se_a (the twin and dpx's kernel) and se_atten against
DeePMD-kit's compiled ops themselves (deepmd::tabulate_fusion_se_a, _se_atten, run in the
oracle venv): values, first derivatives and the derivative of those along the cotangent; all
by gradcheck / gradgradcheck. Whole files:
tests/fidelity/test_compress_fidelity.py (`dp compress` against `dpx compress`)."""
import math
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dpx import ops
from dpx.ops import tabulate as compiled_ops
from dpx.ops.deepmd import unsupported_compression
from dpx.ops.reference import (
    tabulate_fusion_se_a,
    tabulate_fusion_se_atten,
    tabulate_fusion_se_r,
)

INFO = torch.tensor([-1.0, 1.0, 2.0, 0.1, 0.2, -1.0], dtype=torch.float64)
NINT, M = 25, 3  # (1 - -1) / 0.1 + (2 - 1) / 0.2 intervals


def loop_value(table, x):
    lower, upper, top, s0, s1 = [float(v) for v in INFO[:5]]
    first = int((upper - lower) / s0)
    last = first + int((top - upper) / s1) - 1

    def poly(a, t, d=0):
        c = [float(v) for v in a]
        if d == 0:
            return sum(c[k] * t ** k for k in range(6))
        return sum(k * c[k] * t ** (k - 1) for k in range(1, 6))
    out = []
    for k in range(M):
        if x < lower:
            a = table[0, 6 * k:6 * k + 6]
            out.append(poly(a, 0.0) + poly(a, 0.0, 1) * (x - lower))
        elif x < top:
            idx = int((x - lower) / s0) if x < upper else first + int((x - upper) / s1)
            start = idx * s0 + lower if x < upper else (idx - first) * s1 + upper
            out.append(poly(table[idx, 6 * k:6 * k + 6], x - start))
        else:
            a, t = table[last, 6 * k:6 * k + 6], top - ((last - first) * s1 + upper)
            out.append(poly(a, t) + poly(a, t, 1) * (x - top))
    return torch.tensor(out, dtype=torch.float64)


def loop_se_a(table, em_x, em):
    nloc, nnei = em.shape[:2]
    x = em_x.reshape(nloc, nnei)
    out = torch.zeros(nloc, 4, M, dtype=torch.float64)
    for i in range(nloc):
        for j in range(nnei):
            repeat = float(x[i, j]) == float(x[i, -1]) and not em[i, j, 1:].any()
            w = nnei - j if repeat else 1
            out[i] += w * em[i, j][:, None] * loop_value(table, float(x[i, j]))[None, :]
            if repeat:
                break
    return out


def inputs(seed=0, padded=True):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(NINT, M * 6, generator=g, dtype=torch.float64)
    em = 1.5 * torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    pad = torch.tensor([0.3, 0.0, 0.0, 0.0], dtype=torch.float64)
    if padded:
        em[:, 5:] = pad  # a sorted list's padding
        em[1, 2:] = pad
    em[2, 0, 0] = -3.0  # below the table
    em[2, 1, 0] = 2.7   # above it
    return table, em[:, :, :1].reshape(-1, 1).clone(), em


def test_se_a_equals_the_kernel_loop():
    table, em_x, em = inputs()
    (out,) = tabulate_fusion_se_a(table, INFO, em_x, em, M)
    assert torch.allclose(out, loop_se_a(table, em_x, em), rtol=1e-13, atol=1e-13)


def test_se_r_equals_the_kernel_loop():
    table, em_x, _ = inputs()
    s = em_x.reshape(3, 7)
    (out,) = tabulate_fusion_se_r(table, INFO, s, M)
    want = torch.stack([torch.stack([loop_value(table, float(v)) for v in row]) for row in s])
    assert torch.allclose(out, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("op", ["se_a", "se_r"])
def test_derivatives(op):
    # no padding: perturbing one of several tied rows would move the repeat rule's cut
    table, em_x, em = inputs(1, padded=False)
    if op == "se_a":
        def f(x, e):
            return tabulate_fusion_se_a(table, INFO, x, e, M)[0]
        args = (em_x.requires_grad_(), em.requires_grad_())
    else:
        def f(x):
            return tabulate_fusion_se_r(table, INFO, x, M)[0]
        args = (em_x.reshape(3, 7).clone().requires_grad_(),)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


# ---- se_atten against DeePMD-kit's op ---------------------------------------------------
ORACLE = Path(os.environ.get("DPX_DEEPMD_PYTHON",
                             Path(__file__).resolve().parents[2] / ".venv-lammps/bin/python"))
# INFO; a table_info as `dp compress` writes them (lower, upper, 5 upper, 0.01, 0.1): 400 + 120
# rows; one whose max is off the stride1 grid: 20 + 6 rows, beyond max the 26th (DeePMD-kit's
# last row holds nextafter(max, lower))
INFOS = {"small": INFO.tolist(), "dp": [-1.0, 3.0, 15.0, 0.01, 0.1, -1.0],
         "offgrid": [-1.0, 1.0, 2.1, 0.1, 0.2, -1.0]}
GRADS = ("em_x", "em", "two_embed")
# run by the oracle venv's python: for each case of the npz argv[1], DeePMD-kit's op's value
# (tabulate_fusion_se_atten where the case has a two_embed, _se_a where it has an em_x, else
# _se_r), its derivatives along dy and the derivative of those along v_* with respect to dy
ORACLE_SCRIPT = """
import sys
import numpy as np
import torch
import deepmd.pt.cxx_op  # noqa: F401, DeePMD-kit's op library
src, res = np.load(sys.argv[1]), {}
for case in sorted({k.split(".")[0] for k in src.files}):
    a = {k.split(".")[1]: torch.from_numpy(src[k]) for k in src.files if k.startswith(case + ".")}
    names = [k for k in ("em_x", "em", "two_embed") if k in a]
    args = [a[k].clone().requires_grad_() for k in names]
    dy = a["dy"].clone().requires_grad_()
    if "two_embed" in a:
        out = torch.ops.deepmd.tabulate_fusion_se_atten(a["table"], a["info"], *args,
                                                        int(a["m"]), bool(a["is_sorted"]))[0]
    elif "em_x" in a:
        out = torch.ops.deepmd.tabulate_fusion_se_a(a["table"], a["info"], *args, int(a["m"]))[0]
    else:
        out = torch.ops.deepmd.tabulate_fusion_se_r(a["table"], a["info"], *args, int(a["m"]))[0]
    grads = torch.autograd.grad(out, args, dy, create_graph=True)
    ddy = torch.autograd.grad(sum((g * a["v_" + k]).sum() for g, k in zip(grads, names)), dy)[0]
    for k, v in zip(("out", *names, "ddy"), (out, *grads, ddy)):
        res[case + "." + k] = v.detach().numpy()
np.savez(sys.argv[2], **res)
"""


def atten_inputs(dtype, info, ncol, seed=0, padded=True):
    """table, info, em_x [nloc * nnei, 1], em [nloc, nnei, ncol], two_embed
    [nloc * nnei, M], dy [nloc, ncol, M] and a v_* like each differentiated input. s spans
    [lower - 1.5, max + 1.5): below, inside and beyond the table. Padding (s = -0.6, R[1:] = 0,
    its own two_embed per slot): rows 0, 1 at the end; row 3 after a real neighbor with the
    padding's s; row 4 throughout; row 5 only at slot 4, its last slot real (DeePMD-kit folds
    from slot 4 all the same). Row 2: lower, upper, max, the last s below max, no padding."""
    lower, upper, top = info[:3]
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)
    nrow = int((upper - lower) / info[3]) + math.ceil((top - upper) / info[4] - 1e-9)
    nloc, nnei = 6, 9
    em = randn(nloc, nnei, ncol)
    em[..., 0] = torch.rand(nloc, nnei, generator=g, dtype=torch.float64) * (
        top - lower + 3.0) + lower - 1.5
    if padded:
        pad = torch.zeros(ncol, dtype=torch.float64)
        pad[0] = -0.6
        em[0, 6:], em[1, 2:], em[3, 6:], em[4], em[5, 4] = pad, pad, pad, pad, pad
        em[3, 3, 0] = em[5, 8, 0] = -0.6  # the padding's s, R[1:4] not 0
        if ncol > 4:  # DeePMD-kit's fold looks at R[1:4] only
            em[0, 6:, 4:] = 0.5
    em = em.to(dtype)
    em[2, :4, 0] = torch.tensor([lower, upper, top, 0.0], dtype=dtype)
    em[2, 3, 0] = torch.nextafter(em[2, 2, 0], em[2, 0, 0])
    table = randn(nrow, 6 * M).to(dtype)
    tensors = {"table": table, "info": torch.tensor(info, dtype=dtype),
               "em_x": em[..., :1].reshape(-1, 1).clone(), "em": em,
               "two_embed": randn(nloc * nnei, M).to(dtype), "dy": randn(nloc, ncol, M).to(dtype)}
    for k in GRADS:
        tensors["v_" + k] = randn(*tensors[k].shape).to(dtype)
    return tensors


def derivatives(op, a, names=GRADS):
    """op(*a[names])'s value, derivatives along dy and derivative of those along v_* with
    respect to dy."""
    args = [a[k].clone().requires_grad_() for k in names]
    dy = a["dy"].clone().requires_grad_()
    out = op(*args)
    grads = torch.autograd.grad(out, args, dy, create_graph=True)
    ddy = torch.autograd.grad(sum((d * a["v_" + k]).sum() for d, k in zip(grads, names)), dy)[0]
    return dict(zip(("out", *names, "ddy"), (v.detach() for v in (out, *grads, ddy))))


def atten_twin(a, is_sorted):
    return derivatives(lambda *args: tabulate_fusion_se_atten(a["table"], a["info"], *args, M,
                                                              is_sorted)[0], a)


def se_a_inputs(dtype, info):
    """atten_inputs' rows without two_embed: among them a real neighbor with the padding's
    s before the padding (row 3), the padding only at slot 4 of a row whose last neighbor is
    real (row 5), and the table's boundaries (row 2)."""
    a = atten_inputs(dtype, info, 4)
    return {k: v for k, v in a.items() if not k.endswith("two_embed")}


def se_r_inputs(dtype, info):
    """se_a_inputs' s as se_r's em [nloc, nnei]: inside, below and beyond the table and on
    its boundaries."""
    a = se_a_inputs(dtype, info)
    g = torch.Generator().manual_seed(1)
    em = a["em"][..., 0].clone()
    return {"table": a["table"], "info": a["info"], "em": em,
            "dy": torch.randn(*em.shape, M, generator=g, dtype=torch.float64).to(dtype),
            "v_em": torch.randn(em.shape, generator=g, dtype=torch.float64).to(dtype)}


ATTEN_CASES = {f"{dtype}_{info}_{ncol}_{is_sorted}": (dtype, info, ncol, is_sorted)
               for dtype in ("float64", "float32") for info in INFOS for ncol in (4, 9)
               for is_sorted in (True, False)
               if info != "offgrid" or (ncol, is_sorted) == (4, True)}
SE_A_CASES = {f"se-a_{dtype}_{info}": (dtype, info)
              for dtype in ("float64", "float32") for info in INFOS}
SE_R_CASES = {f"se-r_{dtype}_{info}": (dtype, info)
              for dtype in ("float64", "float32") for info in INFOS}


@pytest.fixture(scope="module")
def deepmd_ops(tmp_path_factory):
    """{case: {out, [em_x,] em, [two_embed,] ddy}} of DeePMD-kit's ops, one oracle run."""
    if not ORACLE.exists():
        pytest.skip(f"DeePMD-kit oracle venv not found at {ORACLE} "
                    f"(tests/oracle/install_lammps.sh makes it)")
    work = tmp_path_factory.mktemp("tabulate")
    arrays = {}
    for case, (dtype, info, ncol, is_sorted) in ATTEN_CASES.items():
        a = atten_inputs(getattr(torch, dtype), INFOS[info], ncol)
        arrays.update({f"{case}.{k}": v.numpy() for k, v in a.items()})
        arrays[f"{case}.m"], arrays[f"{case}.is_sorted"] = np.array(M), np.array(is_sorted)
    for cases, make in ((SE_A_CASES, se_a_inputs), (SE_R_CASES, se_r_inputs)):
        for case, (dtype, info) in cases.items():
            a = make(getattr(torch, dtype), INFOS[info])
            arrays.update({f"{case}.{k}": v.numpy() for k, v in a.items()})
            arrays[f"{case}.m"] = np.array(M)
    np.savez(work / "in.npz", **arrays)
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([str(ORACLE), "-c", ORACLE_SCRIPT, str(work / "in.npz"),
                          str(work / "out.npz")], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    out = np.load(work / "out.npz")
    return {case: {k.split(".")[1]: torch.from_numpy(out[k]) for k in out.files
                   if k.startswith(case + ".")}
            for case in (*ATTEN_CASES, *SE_A_CASES, *SE_R_CASES)}


def assert_as_deepmd(ours: dict, theirs: dict, dtype: str):
    rtol = 1e-10 if dtype == "float64" else 2e-6
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
        err = float((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max())
        assert err < rtol, (k, err)


@pytest.mark.parametrize("case", ATTEN_CASES)
def test_se_atten_equals_deepmd(case, deepmd_ops):
    dtype, info, ncol, is_sorted = ATTEN_CASES[case]
    a = atten_inputs(getattr(torch, dtype), INFOS[info], ncol)
    theirs = deepmd_ops[case]
    assert_as_deepmd(atten_twin(a, is_sorted), theirs, dtype)
    if is_sorted:  # the fold took place: the padding rows after the first have no derivative
        assert float(theirs["em_x"].reshape(6, 9)[0, 7:].abs().max()) == 0.0


@pytest.mark.parametrize("compiled", [False, True], ids=["twin", "kernel"])
@pytest.mark.parametrize("case", SE_A_CASES)
def test_se_a_equals_deepmd(case, compiled, deepmd_ops):
    """The twin and dpx's kernel (its second order through the twin): the fold from the
    first slot that repeats the last slot's s with R[1:4] = 0, and the table's rows counted
    in the table's precision."""
    dtype, info = SE_A_CASES[case]
    if compiled and not ops.LOADED:
        pytest.skip("dpx op library not built")
    op = compiled_ops.tabulate_fusion_se_a if compiled else tabulate_fusion_se_a
    a = se_a_inputs(getattr(torch, dtype), INFOS[info])
    ours = derivatives(lambda x, em: op(a["table"], a["info"], x, em, M)[0], a, GRADS[:2])
    assert_as_deepmd(ours, deepmd_ops[case], dtype)


@pytest.mark.parametrize("case", SE_R_CASES)
def test_se_r_equals_deepmd(case, deepmd_ops):
    """The rows as DeePMD-kit counts them (se_r's twin shares se_a's locate)."""
    dtype, info = SE_R_CASES[case]
    a = se_r_inputs(getattr(torch, dtype), INFOS[info])
    ours = derivatives(lambda em: tabulate_fusion_se_r(a["table"], a["info"], em, M)[0], a,
                       ("em",))
    assert_as_deepmd(ours, deepmd_ops[case], dtype)


def test_se_atten_fold():
    """is_sorted folds the padding: the first padding row's two_embed stands for the rest."""
    a = atten_inputs(torch.float64, INFO.tolist(), 4)
    later = a["two_embed"].clone()
    later[7] += 1.0  # row 0's second padding slot
    args = (a["table"], a["info"], a["em_x"], a["em"])
    for is_sorted, changed in ((True, False), (False, True)):
        out = tabulate_fusion_se_atten(*args, a["two_embed"], M, is_sorted)[0]
        moved = tabulate_fusion_se_atten(*args, later, M, is_sorted)[0]
        assert bool((out[0] != moved[0]).any()) == changed
    with pytest.raises(ValueError, match="must be 4, 9, 16, or 25, got 5"):
        tabulate_fusion_se_atten(*args[:3], torch.zeros(6, 9, 5, dtype=torch.float64),
                                 a["two_embed"], M, True)


@pytest.mark.parametrize("padded", [False, True])
def test_se_atten_derivatives(padded):
    # padded: two_embed only (perturbing s or R[1:4] of a padding row would undo the fold)
    a = atten_inputs(torch.float64, INFO.tolist(), 4, seed=1, padded=padded)
    table, info = a["table"], a["info"]
    em_x = a["em_x"].reshape(6, 9)
    em_x[2, :4] = em_x[2, 4]  # not row 2's boundary values: s on an interval's edge
    a["em"][2, :4, 0] = em_x[2, 4]
    em_x = em_x.reshape(-1, 1)
    if padded:
        def f(t):
            return tabulate_fusion_se_atten(table, info, em_x, a["em"], t, M, True)[0]
        args = (a["two_embed"].requires_grad_(),)
    else:
        def f(x, e, t):
            return tabulate_fusion_se_atten(table, info, x, e, t, M, True)[0]
        args = (em_x.requires_grad_(), a["em"].requires_grad_(),
                a["two_embed"].requires_grad_())
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_compressed_descriptors_dpx_cannot_evaluate_are_named():
    def part(name, *children, **flags):  # a module named as DeePMD-kit's class
        m = type(name, (nn.Module,), {})()
        for k, child in enumerate(children):
            m.add_module(f"part{k}", child)
        m.__dict__.update(flags)
        return m

    def model(descriptor):
        return SimpleNamespace(atomic_model=SimpleNamespace(descriptor=descriptor))
    supported = [part("DescrptSeA", part("DescrptBlockSeA", compress=True), compress=True),
                 part("DescrptSeR", compress=True),
                 part("DescrptDPA1", part("DescrptBlockSeAtten", geo_compress=True),
                      geo_compress=True, tebd_compress=True),
                 part("DescrptSeAttenV2", part("DescrptBlockSeAtten", geo_compress=True),
                      geo_compress=True),
                 part("DescrptDPA1", part("DescrptBlockSeAtten"), tebd_compress=True),
                 part("DescrptSeT", compress=False),
                 part("DescrptHybrid", part("DescrptSeA", compress=True), part("DescrptSeT"))]
    for descriptor in supported:
        assert unsupported_compression(model(descriptor)) is None, descriptor
    assert unsupported_compression(model(part("DescrptSeT", compress=True))) == "descrptset"
    dpa2 = part("DescrptDPA2", part("DescrptBlockSeAtten", geo_compress=True),
                part("DescrptBlockSeTTebd", compress=True), compress=True)
    assert unsupported_compression(model(dpa2)) == "descrptdpa2"
    hybrid = part("DescrptHybrid", part("DescrptSeA", compress=True),
                  part("DescrptSeTTebd", compress=True))
    assert unsupported_compression(model(hybrid)) == "descrpthybrid"
