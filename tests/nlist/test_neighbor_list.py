"""dpx::neighbor_list: the C++ op against its twin (reference.neighbor_list) and against an
independent brute force written here.

The twin fixes the exact layout (ghost order, tie-breaking), so on generic inputs the op must
match it entry for entry. The brute force below does not know the ghost order: it lists each
center's neighbors as (local atom, integer image) pairs with their distance, from the
original coordinates, which is what any correct extended system must reproduce.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import dpx.ops
from dpx.ops import _library, nlist_generic, reference

needs_library = pytest.mark.skipif(
    not _library.LOADED, reason=f"dpx op library not built ({_library.REBUILD})")
DTYPES = (torch.float32, torch.float64)
OP = torch.ops.dpx.neighbor_list.default if _library.LOADED else None
DEVICES = ("cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device")))
_device = "cpu"


@pytest.fixture(autouse=True, params=DEVICES)
def device(request):
    """Every test runs per device; on CUDA, run_all also runs the op there and requires
    the CPU op's result exactly (same extended system, same list, same statistics)."""
    global _device
    _device, saved = request.param, _device
    yield request.param
    _device = saved


# ----------------------------------------------------------------------------------------
# independent brute force
# ----------------------------------------------------------------------------------------
def brute_force(coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None,
                rcut: float) -> list[dict]:
    """One frame: for each center i, {(j, image): distance} over every pair with distance
    <= rcut (in float64), image the integer lattice vector n of x_j + n @ H - x_i."""
    x = coord.double().numpy()
    types = atype.numpy()
    nloc = len(x)
    if box is None:
        images = np.zeros((1, 3), dtype=np.int64)
        h = np.zeros((3, 3))
        base = np.zeros((nloc, 3), dtype=np.int64)
        vec = x[None, :, None, :] - x[:, None, None, :]  # [i, j, image, 3]
    else:
        h = box.double().numpy().reshape(3, 3)
        cross = np.stack([np.cross(h[1], h[2]), np.cross(h[2], h[0]), np.cross(h[0], h[1])])
        face = abs(np.linalg.det(h)) / np.linalg.norm(cross, axis=1)
        # x_j + n H - x_i = (f_j - f_i + m) H with n = m + w_i - w_j, f = frac - w in [0, 1)
        k = [math.ceil(rcut / d) + 1 for d in face]
        images = np.array(list(itertools.product(*[range(-a, a + 1) for a in k])))
        frac = x @ np.linalg.inv(h)
        w = np.floor(frac)
        f = frac - w
        base = w.astype(np.int64)
        vec = ((f[None, :, None, :] - f[:, None, None, :]) + images[None, None]) @ h
    dist = np.linalg.norm(vec, axis=-1)
    out = []
    for i in range(nloc):
        pairs = {}
        if types[i] >= 0:
            for j, m in zip(*np.nonzero(dist[i] <= rcut * (1 + 1e-5))):
                n = images[m] + base[i] - base[j]
                if types[j] < 0 or (j == i and not n.any()):
                    continue
                pairs[(int(j), tuple(int(v) for v in n))] = float(dist[i, j, m])
        out.append(pairs)
    return out


def deepmd_rule(pairs: dict, types: np.ndarray, sel: list[int]) -> list[list]:
    """DeePMD-kit's kept neighbors, per type section in order: the nearest sum(sel) of all,
    then the first sel[t] of type t (generic inputs: no ties)."""
    kept = sorted(pairs, key=pairs.get)[: sum(sel)]
    return [[p for p in kept if types[p[0]] == t][: sel[t]] for t in range(len(sel))]


def dpx_sections(out, k: int, i: int, sel: list[int]) -> list[list]:
    """The neighbors of center i in frame k as (local atom, image) pairs, per type section."""
    mapping, _, shift, nlist = out[0][k], out[1][k], out[2][k], out[3][k]
    sec = [0, *itertools.accumulate(sel)]
    res = []
    for t in range(len(sel)):
        row = nlist[i, sec[t]: sec[t + 1]].tolist()
        filled = [e for e in row if e >= 0]
        assert row == filled + [-1] * (len(row) - len(filled)), "padding only at section end"
        res.append([(int(mapping[e]), tuple(int(round(v)) for v in (shift[e] - shift[i]).tolist()))
                    for e in filled])
    return res


def check_brute_force(out, coord, atype, box, rcut, sel, tol=1e-5):
    """Per frame and center: the kept neighbors are DeePMD-kit's (all of them when sel does
    not overflow), each section holds its type, nearest first; nnei_max and min_dist."""
    nf = coord.shape[0]
    for k in range(nf):
        types = atype[k].numpy()
        bf = brute_force(coord[k], atype[k], None if box is None else box[k], rcut)
        counts = np.zeros((coord.shape[1], len(sel)), dtype=np.int64)
        dmin = math.inf
        for i, pairs in enumerate(bf):
            # pairs within rounding of rcut may go either way in float32
            border = {p for p, d in pairs.items() if abs(d - rcut) <= tol * rcut}
            got = dpx_sections(out, k, i, sel)
            want = deepmd_rule(pairs, types, sel)
            n_type = [sum(types[j] == t for j, _ in pairs) for t in range(len(sel))]
            overflow = len(pairs) > sum(sel) or any(c > s for c, s in zip(n_type, sel))
            for t in range(len(sel)):
                assert all(types[j] == t for j, _ in got[t])
                if overflow:  # generic inputs: no ties, the kept list is unique
                    assert got[t] == want[t], (k, i, t)
                else:  # everything is kept; ties may come in any order
                    assert set(got[t]) - border == set(want[t]) - border, (k, i, t)
                    assert len(got[t]) == len(set(got[t]))
                dist = [pairs[p] for p in got[t]]
                assert all(b >= a - tol * rcut for a, b in zip(dist, dist[1:])), "nearest first"
            for j, _ in pairs:
                counts[i, types[j]] += 1
            dmin = min([dmin, *pairs.values()])
        if not any(abs(d - rcut) <= tol * rcut for pairs in bf for d in pairs.values()):
            assert out[4][k].tolist() == (counts.max(0) if len(bf) else counts.sum(0)).tolist()
        if math.isinf(dmin):
            assert math.isinf(float(out[5][k]))
        else:
            assert float(out[5][k]) == pytest.approx(dmin, rel=1e-5)


def check_extended(out, coord, atype, box):
    """Locals first and wrapped into the cell, ghosts are images of real atoms, padding."""
    mapping, ext_atype, shift = out[0], out[1], out[2]
    nf, nloc = atype.shape
    assert torch.equal(mapping[:, :nloc], torch.arange(nloc).expand(nf, nloc))
    assert torch.equal(ext_atype[:, :nloc], atype)
    for k in range(nf):
        real = ext_atype[k] >= 0
        assert (atype[k][mapping[k][real]] >= 0).all()
        pad = torch.nonzero(~real).flatten()
        pad = pad[pad >= nloc]
        assert (mapping[k][pad] == 0).all() and (shift[k][pad] == 0).all()
        assert torch.equal(shift[k], shift[k].round())
        if box is None:
            assert (shift[k] == 0).all()
        else:
            h = box[k].double().reshape(3, 3)
            local = coord[k].double() + shift[k][:nloc].double() @ h
            f = local @ torch.linalg.inv(h)
            assert (f > -1e-6).all() and (f < 1 + 1e-6).all()


def assert_same_as_reference(out, ref, dtype):
    for name, a, b in zip(("mapping", "ext_atype", "shift", "nlist", "nnei_max"), out, ref):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), name
    assert out[5].dtype == dtype
    rel = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out[5], ref[5], rtol=rel, atol=0)


def assert_same_on_cuda(out, coord, atype, box, rcut, sel):
    """The CUDA op returns the CPU op's outputs bit for bit (nlist.cu evaluates every
    deciding comparison in the CPU's expression order, without FMA contraction)."""
    on = [None if t is None else t.cuda() for t in (coord, atype, box)]
    got = OP(*on, rcut, sel)
    names = ("mapping", "ext_atype", "shift", "nlist", "nnei_max", "min_dist")
    for name, a, b in zip(names, got, out):
        assert a.is_cuda and a.dtype == b.dtype, name
        assert torch.equal(a.cpu(), b), name


def assert_same_generic(out, coord, atype, box, rcut, sel):
    """The batched PyTorch search (what a GPU runs by default) returns the op's outputs,
    on the device of the test."""
    on = [None if t is None else t.to(_device) for t in (coord, atype, box)]
    got = nlist_generic.neighbor_list(*on, rcut, sel)
    names = ("mapping", "ext_atype", "shift", "nlist", "nnei_max")
    for name, a, b in zip(names, got, out):
        assert a.device.type == _device and a.dtype == b.dtype, name
        assert torch.equal(a.cpu(), b), name
    rel = 1e-6 if coord.dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got[5].cpu(), out[5], rtol=rel, atol=0)


def assert_same_stat(out, coord, atype, box, rcut, ntypes):
    """dpx::neighbor_stat (the counting pass, CPU) gives the list's nnei_max and min_dist
    bit for bit: the same ghosts, bins and distance expression, without the sort."""
    nnei_max, min_dist = torch.ops.dpx.neighbor_stat(coord, atype, box, rcut, ntypes)
    assert torch.equal(nnei_max, out[4]) and min_dist.dtype == out[5].dtype
    assert torch.equal(min_dist, out[5])


def run_all(coord, atype, box, rcut, sel, ref=True, brute=True):
    out = OP(coord, atype, box, rcut, sel)
    assert_same_stat(out, coord, atype, box, rcut, len(sel))
    if _device == "cuda":
        assert_same_on_cuda(out, coord, atype, box, rcut, sel)
    assert_same_generic(out, coord, atype, box, rcut, sel)
    check_extended(out, coord, atype, box)
    if ref:
        assert_same_as_reference(out, reference.neighbor_list(coord, atype, box, rcut, sel),
                                 coord.dtype)
    if brute:
        check_brute_force(out, coord, atype, box, rcut, sel)
    return out


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------
def triclinic(gen, dtype, scale=8.0, tilt=0.3):
    """Rows = cell vectors: a diagonal of ~scale plus random off-diagonal tilt."""
    h = torch.diag(scale * (0.85 + 0.3 * torch.rand(3, generator=gen, dtype=torch.float64)))
    h = h + tilt * scale * (torch.rand(3, 3, generator=gen, dtype=torch.float64) - 0.5)
    return h.to(dtype)


def random_frames(seed, dtype, nf=2, nloc=30, ntypes=2, scale=8.0, spread=1.4):
    """Frames of nloc atoms in different triclinic cells; fractional coordinates in
    [-0.2, 1.2) so that wrapping is exercised."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.stack([triclinic(gen, torch.float64, scale * (1 + 0.1 * k)) for k in range(nf)])
    frac = torch.rand(nf, nloc, 3, generator=gen, dtype=torch.float64) * spread - (spread - 1) / 2
    coord = torch.bmm(frac, cells).to(dtype)
    atype = torch.randint(0, ntypes, (nf, nloc), generator=gen)
    return coord, atype, cells.reshape(nf, 9).to(dtype)


# ----------------------------------------------------------------------------------------
# tests against the twin and the brute force
# ----------------------------------------------------------------------------------------
@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_random_triclinic(seed, dtype):
    coord, atype, box = random_frames(seed, dtype)
    out = run_all(coord, atype, box, 4.0, [12, 24])
    assert out[0].shape[1] > coord.shape[1]  # there are ghosts


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
def test_thin_cell(dtype):
    """A cell thinner than rcut along one axis (several images deep) and than 2 rcut along
    another: ghosts of ghosts, and atoms that are their own neighbors."""
    gen = torch.Generator().manual_seed(7)
    h = torch.tensor([[9.0, 0.0, 0.0], [1.5, 5.5, 0.0], [0.7, -0.4, 2.3]], dtype=torch.float64)
    coord = (torch.rand(1, 12, 3, generator=gen, dtype=torch.float64) @ h).to(dtype)
    atype = torch.randint(0, 2, (1, 12), generator=gen)
    out = run_all(coord, atype, h.reshape(1, 9).to(dtype), 4.0, [60, 60])
    assert out[4].max() > 12  # images of the cell's atoms fill the list


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
def test_atoms_on_faces(dtype):
    """Fractional coordinates exactly 0 and 1, and -1e-17 (which rounds to f = 1 and must
    fold back to 0): wrapped into [0, 1) the same way as the twin."""
    a = 8.0  # a power of two: fractional coordinates are exact
    frac = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.25], [-1e-17, 0.5, 0.5],
                         [0.5, -1e-17, 1.0], [0.25, 0.75, 0.0], [1.0, 1.0, 1.0],
                         [0.5, 0.5, -1e-12], [0.3, 0.6, 0.9]], dtype=torch.float64)
    coord = (frac * a).to(dtype)[None]
    atype = torch.tensor([[0, 1, 0, 1, 1, 0, 1, 0]])
    box = (torch.eye(3, dtype=dtype) * a).reshape(1, 9)
    out = run_all(coord, atype, box, 3.5, [30, 30])
    # -1e-17 folds to f = 0 with w = 0: it stays at -8e-17, inside the cell up to rounding
    local = coord[0].double() + out[2][0, :8].double() * a
    assert (local > -1e-9).all() and (local < a).all()


@needs_library
def test_type_without_atoms():
    coord, atype, box = random_frames(3, torch.float64, ntypes=2)
    atype = atype * 2  # types 0 and 2; type 1 has a section but no atoms
    out = run_all(coord, atype, box, 4.0, [10, 5, 20])
    assert (out[3][..., 10:15] == -1).all()
    assert (out[4][:, 1] == 0).all()


def rank_rule_rows(ext, ext_atype, nloc, rcut, sel):
    """DeePMD-kit's list by the rule the CUDA search uses (csrc/kernels/cuda/nlist.cu): a
    candidate p goes to slot (number of candidates of its type before it) of its type's
    section iff fewer than nnei candidates overall and fewer than sel[t] of its type come
    before it, "before" meaning smaller (r^2, extended index). No sort."""
    nnei, sec = sum(sel), [0, *itertools.accumulate(sel)]
    rows = torch.full((nloc, nnei), -1, dtype=torch.long)
    d2 = ((ext[None, :, :] - ext[:nloc, None, :]) ** 2).sum(-1)
    for i in range(nloc):
        if ext_atype[i] < 0:   # a virtual center: a row of -1
            continue
        cand = [j for j in range(len(ext)) if j != i and ext_atype[j] >= 0
                and float(d2[i, j]) <= rcut * rcut]
        for p in cand:
            t = int(ext_atype[p])
            before = [q for q in cand if (d2[i, q], q) < (d2[i, p], p)]
            rank_t = sum(int(ext_atype[q]) == t for q in before)
            if len(before) < nnei and rank_t < sel[t]:
                rows[i, sec[t] + rank_t] = p
    return rows


@pytest.mark.parametrize("seed", range(3))
def test_rank_rule_equals_sorted_selection(seed):
    """The CUDA search's rank rule gives the twin's list, ties included (atoms on a lattice
    have many equal distances) and with overflowing sections."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(3.0, dtype=torch.float64)] * 3,
                                      indexing="ij"), -1).reshape(-1, 3)
    coord = torch.cat([grid * 1.5, 4.5 * torch.rand(6, 3, generator=gen, dtype=torch.float64)])
    atype = torch.randint(0, 2, (1, len(coord)), generator=gen)
    atype[0, -1] = -1
    box = (torch.eye(3, dtype=torch.float64) * 4.5).reshape(1, 9)
    for sel in ([6, 4], [30, 30], [5, 0]):
        mapping, ext_atype, shift, nlist, *_ = reference.neighbor_list(coord[None], atype, box,
                                                                       2.2, sel)
        ext = coord[mapping[0]] + shift[0] @ box[0].reshape(3, 3)
        rows = rank_rule_rows(ext, ext_atype[0], len(coord), 2.2, sel)
        assert torch.equal(rows, nlist[0]), sel


@needs_library
def test_type_without_slots():
    """sel[t] = 0: type t atoms are counted (nnei_max) but never listed."""
    coord, atype, box = random_frames(6, torch.float64, ntypes=2)
    out = run_all(coord, atype, box, 4.0, [15, 0])
    assert out[3].shape[-1] == 15 and (out[4][:, 1] > 0).all()


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
def test_open_boundaries(dtype):
    gen = torch.Generator().manual_seed(5)
    # a sparse, wide cloud: the cell list must not scale with the extent
    coord = torch.cat([torch.rand(1, 20, 3, generator=gen, dtype=dtype) * 6,
                       torch.rand(1, 5, 3, generator=gen, dtype=dtype) * 6 + 1e5], 1)
    atype = torch.randint(0, 2, (1, 25), generator=gen)
    out = run_all(coord, atype, None, 3.0, [10, 10])
    assert out[0].shape == (1, 25) and (out[2] == 0).all()


@needs_library
@pytest.mark.parametrize("periodic", [True, False])
def test_single_atom(periodic):
    coord = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    atype = torch.tensor([[0]])
    box = (torch.eye(3, dtype=torch.float64) * 2.5).reshape(1, 9) if periodic else None
    out = run_all(coord, atype, box, 3.0, [40])
    if periodic:  # its own images at 2.5 (6 of them) and 2.5 sqrt(2) > 3 (none)
        assert out[4].tolist() == [[6]] and float(out[5]) == 2.5
    else:
        assert (out[3] == -1).all() and out[4].tolist() == [[0]] and math.isinf(float(out[5]))


@needs_library
def test_frames_are_padded():
    """Frames of very different cells: nall is the largest; the others are padded with
    mapping 0, ext_atype -1, shift 0."""
    coord, atype, box = random_frames(11, torch.float64, nf=3, nloc=10)
    box[1] *= 0.5  # a smaller cell: many more ghosts
    coord[1] *= 0.5
    out = run_all(coord, atype, box, 3.0, [30, 60])
    nreal = (out[1] >= 0).sum(1)
    assert nreal[1] == out[0].shape[1] and (nreal[[0, 2]] < out[0].shape[1]).all()


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
def test_sel_overflow(dtype):
    """Fewer slots than neighbors: the nearest sum(sel) of all types, then the first sel[t]
    of each (DeePMD-kit's PyTorch rule, checked by deepmd_rule in the brute force)."""
    coord, atype, box = random_frames(2, dtype, nloc=40)
    out = run_all(coord, atype, box, 4.0, [4, 3])
    assert (out[4] > torch.tensor([4, 3])).all()  # it does overflow


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
def test_virtual_atoms(dtype):
    """Type -1: no ghosts, nobody's neighbor, a row of -1."""
    coord, atype, box = random_frames(4, dtype)
    atype[:, ::4] = -1
    out = run_all(coord, atype, box, 4.0, [20, 20])
    virtual = atype < 0
    assert (out[3][virtual] == -1).all()
    nloc = atype.shape[1]
    for k in range(2):
        ghosts = out[0][k, nloc:][out[1][k, nloc:] >= 0]
        assert not virtual[k][ghosts].any()
        nb = out[3][k][out[3][k] >= 0]
        assert not virtual[k][out[0][k][nb]].any()


@needs_library
def test_permutation():
    """Reordering the input atoms reorders the neighbor sets and nothing else."""
    coord, atype, box = random_frames(9, torch.float64, nf=1)
    perm = torch.randperm(coord.shape[1], generator=torch.Generator().manual_seed(0))
    sel = [20, 20]
    a = OP(coord, atype, box, 4.0, sel)
    b = OP(coord[:, perm], atype[:, perm], box, 4.0, sel)
    inv = torch.argsort(perm).tolist()
    for new, old in enumerate(perm.tolist()):
        want = [[(inv[j], n) for j, n in sec] for sec in dpx_sections(a, 0, old, sel)]
        assert dpx_sections(b, 0, new, sel) == want
    assert torch.equal(a[4], b[4]) and torch.equal(a[5], b[5])


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
def test_shell_at_rcut(dtype):
    """Frames of one center with a dense shell of atoms just inside rcut, six exactly at
    rcut (r^2 <= rcut^2 keeps them) and a shell just outside, the center at a different
    place in its bin in each frame: the bins searched reach the whole sphere and no farther
    atom is taken."""
    gen = torch.Generator().manual_seed(0)
    rcut, eps = 3.0, (1e-9 if dtype == torch.float64 else 1e-5)
    nf, n_in, n_out = 24, 500, 100

    def shell(n, radius):
        u = torch.randn(nf, n, 3, generator=gen, dtype=torch.float64)
        return radius * u / u.norm(dim=-1, keepdim=True)

    axes = (torch.cat([torch.eye(3), -torch.eye(3)]).double() * rcut).expand(nf, 6, 3)
    # multiples of 1/64: center + axes is exact in float32 too
    center = 10 + torch.randint(0, 320, (nf, 1, 3), generator=gen).double() / 64
    # an atom out of reach sets the corner of the bin grid, so the center's place in its
    # bin differs from frame to frame
    corner = -rcut - 1 - 3 * torch.rand(nf, 1, 3, generator=gen, dtype=torch.float64)
    pts = torch.cat([torch.zeros(nf, 1, 3, dtype=torch.float64), shell(n_in, rcut * (1 - eps)),
                     axes, shell(n_out, rcut * (1 + eps)), corner], 1)
    coord = (pts + center).to(dtype)
    atype = torch.zeros(nf, pts.shape[1], dtype=torch.long)
    inside = list(range(1, n_in + 7))
    for box in (None, (torch.eye(3, dtype=dtype) * 40).reshape(1, 9).expand(nf, 9)):
        out = OP(coord, atype, box, rcut, [n_in + 10])
        assert_same_stat(out, coord, atype, box, rcut, 1)
        if _device == "cuda":
            assert_same_on_cuda(out, coord, atype, box, rcut, [n_in + 10])
        for k in range(nf):
            row = out[3][k, 0]
            assert sorted(out[0][k][row[row >= 0]].tolist()) == inside, k


@needs_library
def test_larger_system_matches_twin():
    """Enough atoms for many bins, several threads' worth of centers."""
    coord, atype, box = random_frames(21, torch.float64, nf=1, nloc=300, scale=14.0)
    run_all(coord, atype, box, 4.0, [40, 40], brute=False)


@needs_library
@pytest.mark.parametrize("periodic", [True, False])
def test_neighbor_stat_many_frames(periodic):
    """Frames split over threads (each thread whole frames, its own buffers): every frame's
    counts and closest pair as the twin gives them, frame by frame; the public function
    (what the start-up scan calls) returns the same; and so does the list op, which also
    splits many frames by frame."""
    coord, atype, box = random_frames(5, torch.float64, nf=37, nloc=25)
    box = box if periodic else None
    got = torch.ops.dpx.neighbor_stat(coord, atype, box, 3.5, 2)
    want = reference.neighbor_stat(coord, atype, box, 3.5, 2)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=0)
    public = dpx.ops.neighbor_stat(coord, atype.int(), box, 3.5, 2)
    assert torch.equal(public[0], got[0]) and torch.equal(public[1], got[1])
    # the list itself: with this many frames each thread takes whole frames
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, coord.shape[0] // 2))
    try:
        out = OP(coord, atype, box, 3.5, [10, 14])
    finally:
        torch.set_num_threads(threads)
    assert_same_as_reference(out, reference.neighbor_list(coord, atype, box, 3.5, [10, 14]),
                             coord.dtype)


@needs_library
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("periodic", [True, False])
def test_neighbor_stat_coincident_and_dense(dtype, periodic):
    """The counting pass leaves the center itself out by arithmetic (it meets itself at
    r^2 = 0): two atoms at one place still give min_dist 0 and count each other, and so do
    two at one place in frames of three types, one of them absent, with enough atoms that
    each type's candidates fill several vectors and end in a part-filled one."""
    coord, atype, box = random_frames(9, dtype, nf=3, nloc=70, ntypes=3, scale=7.0)
    atype[atype == 1] = 0
    coord[:, 5] = coord[:, 17]
    atype[:, 5] = 2
    box = box if periodic else None
    out = OP(coord, atype, box, 3.0, [60, 60, 60])
    assert_same_stat(out, coord, atype, box, 3.0, 3)
    assert torch.all(out[5] == 0) and torch.all(out[4][:, 1] == 0)
    check_brute_force(out, coord, atype, box, 3.0, [60, 60, 60])


@needs_library
@pytest.mark.parametrize("periodic", [True, False])
def test_neighbor_stat_wide_frames(periodic):
    """Centers that span many bins: the counting pass takes rcut-wide blocks there (wider
    ones where they span few, as in every test above), and its numbers stay the list's."""
    coord, atype, box = random_frames(13, torch.float64, nf=2, nloc=700, ntypes=2, scale=24.0)
    run_all(coord, atype, box if periodic else None, 3.0, [40, 40], brute=False)


# ----------------------------------------------------------------------------------------
# the public function: differentiable extended coordinates
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("periodic", [True, False])
def test_public_ext_coord(periodic, device):
    coord, atype, box = (t.to(device) for t in random_frames(6, torch.float64, nf=1, nloc=16))
    box = box if periodic else None
    coord = coord.requires_grad_(True)
    if box is not None:
        box = box.requires_grad_(True)
    nl = dpx.ops.neighbor_list(coord, atype, box, 4.0, [20, 20])
    bf = brute_force(coord[0].detach().cpu(), atype[0].cpu(),
                     None if box is None else box[0].detach().cpu(), 4.0)
    h = box[0].reshape(3, 3) if box is not None else coord.new_zeros(3, 3)
    pairs = [(i, j, n) for i, p in enumerate(bf) for j, n in p]
    assert len(pairs) == int((nl.nlist >= 0).sum())
    # the pair vectors of the list, and the same vectors from the brute-force images
    idx = nl.nlist[0]
    centers = torch.arange(16, device=device)[:, None].expand_as(idx)[idx >= 0]
    got = nl.ext_coord[0][idx[idx >= 0]] - nl.ext_coord[0][centers]
    i, j, n = zip(*pairs)
    want = (coord[0][list(j)] - coord[0][list(i)]
            + torch.tensor(n, dtype=torch.float64, device=device) @ h)
    key_got = sorted(zip(centers.tolist(), got.detach().norm(dim=-1).tolist()))
    key_want = sorted(zip(i, want.detach().norm(dim=-1).tolist()))
    np.testing.assert_allclose(np.array(key_got), np.array(key_want), rtol=1e-12, atol=1e-12)
    # gradients of a pair potential reach coord and box, equal to the brute force's
    inputs = (coord,) if box is None else (coord, box)
    g_got = torch.autograd.grad((got.norm(dim=-1) ** -2).sum(), inputs)
    g_want = torch.autograd.grad((want.norm(dim=-1) ** -2).sum(), inputs)
    for a, b in zip(g_got, g_want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_public_int32_atype():
    """The wrapper takes any integer atype and the op gets int64."""
    coord, atype, box = random_frames(8, torch.float32, nloc=12)
    nl = dpx.ops.neighbor_list(coord, atype.int(), box, 3.0, [10, 10])
    ref = reference.neighbor_list(coord, atype, box, 3.0, [10, 10])
    assert torch.equal(nl.mapping, ref[0]) and torch.equal(nl.nlist, ref[3])
    assert nl.ext_coord.dtype == torch.float32


# ----------------------------------------------------------------------------------------
# bad input: clear errors naming the argument, through the public function and the op
# ----------------------------------------------------------------------------------------
def _good():
    coord, atype, box = random_frames(0, torch.float64, nf=2, nloc=6)
    return dict(coord=coord, atype=atype, box=box, rcut=3.0, sel=[10, 10])


BAD = {
    "coord int": ("coord", lambda d: d.update(coord=d["coord"].long())),
    "coord float16": ("coord", lambda d: d.update(coord=d["coord"].half())),
    "coord shape": ("coord", lambda d: d.update(coord=d["coord"][..., :2])),
    "coord 2d": ("coord", lambda d: d.update(coord=d["coord"][0])),
    "atype float": ("atype", lambda d: d.update(atype=d["atype"].double())),
    "atype shape": ("atype", lambda d: d.update(atype=d["atype"][:, :3])),
    "atype too large": ("sel", lambda d: d.update(atype=d["atype"] + 1)),
    "box dtype": ("box", lambda d: d.update(box=d["box"].float())),
    "box shape": ("box", lambda d: d.update(box=d["box"][:, :6])),
    "box frames": ("box", lambda d: d.update(box=d["box"][:1])),
    "box zero volume": ("box", lambda d: d.update(box=torch.zeros_like(d["box"]))),
    "box flat": ("box", lambda d: d["box"][1].copy_(torch.tensor(
        [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 5.0], dtype=torch.float64))),
    "rcut zero": ("rcut", lambda d: d.update(rcut=0.0)),
    "rcut negative": ("rcut", lambda d: d.update(rcut=-1.0)),
    "rcut nan": ("rcut", lambda d: d.update(rcut=float("nan"))),
    "sel empty": ("sel", lambda d: d.update(sel=[])),
    "sel negative": ("sel", lambda d: d.update(sel=[10, -1])),
    "sel too short": ("sel", lambda d: d.update(sel=[10])),
}
@pytest.mark.parametrize("case", BAD)
def test_bad_input_public(case):
    name, spoil = BAD[case]
    d = _good()
    spoil(d)
    with pytest.raises((TypeError, ValueError, RuntimeError), match=name):
        dpx.ops.neighbor_list(**d)


@needs_library
@pytest.mark.parametrize("case", BAD)
def test_bad_input_op(case):
    name, spoil = BAD[case]
    d = _good()
    spoil(d)
    with pytest.raises(RuntimeError, match=name):
        OP(d["coord"], d["atype"], d["box"], d["rcut"], d["sel"])


@needs_library
def test_bad_input_op_only():
    """What only the op checks: atype int32 (the wrapper casts), non-finite coordinates."""
    d = _good()
    with pytest.raises(RuntimeError, match="atype"):
        OP(d["coord"], d["atype"].int(), d["box"], 3.0, [10, 10])
    d["coord"][0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="coord"):
        OP(d["coord"], d["atype"], d["box"], 3.0, [10, 10])
    with pytest.raises(RuntimeError, match="box"):
        OP(d["coord"].nan_to_num(), d["atype"], d["box"] * float("inf"), 3.0, [10, 10])


@needs_library
def test_non_contiguous_inputs():
    coord, atype, box = random_frames(12, torch.float64, nloc=10)
    c = coord.transpose(0, 1).contiguous().transpose(0, 1)
    t = atype.t().contiguous().t()
    b = box.t().contiguous().t()
    assert not (c.is_contiguous() or t.is_contiguous() or b.is_contiguous())
    for x, y in zip(OP(c, t, b, 3.0, [10, 10]), OP(coord, atype, box, 3.0, [10, 10])):
        assert torch.equal(x, y)


@needs_library
def test_empty_inputs():
    coord = torch.zeros(2, 0, 3, dtype=torch.float64)
    atype = torch.zeros(2, 0, dtype=torch.long)
    box = (torch.eye(3, dtype=torch.float64) * 5).reshape(1, 9).repeat(2, 1)
    out = OP(coord, atype, box, 3.0, [4, 4])
    if _device == "cuda":
        assert_same_on_cuda(out, coord, atype, box, 3.0, [4, 4])
    for b in (box, None):
        assert_same_generic(OP(coord, atype, b, 3.0, [4, 4]), coord, atype, b, 3.0, [4, 4])
    assert out[0].shape == (2, 0) and out[3].shape == (2, 0, 8)
    assert out[4].tolist() == [[0, 0], [0, 0]] and math.isinf(float(out[5][0]))


# ----------------------------------------------------------------------------------------
# opcheck
# ----------------------------------------------------------------------------------------
@needs_library
@pytest.mark.parametrize("periodic", [True, False])
def test_opcheck(periodic):
    # nall depends on the data, so the fake kernel returns an unbacked size: the static AOT
    # test (test_aot_dispatch_static) cannot trace such an op by design; the dynamic one can.
    coord, atype, box = (t.to(_device) for t in random_frames(1, torch.float64, nf=2, nloc=8))
    torch.library.opcheck(OP, (coord, atype, box if periodic else None, 3.0, [8, 8]),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor", "test_aot_dispatch_dynamic"))
