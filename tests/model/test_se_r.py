"""The se_e2_r descriptor against independent oracles: a per-slot brute force of its formula,
finite-difference forces, rotation / permutation invariance, smoothness at rcut, statistics
against sums taken by hand, the frozen (scripted, reference-backend) model, and finetune's
type remapping. DeePMD-kit's numbers: tests/fidelity/test_se_r_fidelity.py."""
import math

import pytest
import torch

from dpx.model.descriptor.base import EnvMatBlock
from dpx import ops
from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.export.frozen import FrozenEnergyModel
from dpx.model.energy import EnergyModel
from dpx.ops.reference import smooth_switch
from dpx.train import finetune as ft
from tests.model.test_physics import random_frame

RCUT, RCUT_SMTH, SEL = 4.0, 1.0, [12, 24]


def se_r_model(exclude=(), seed=3, type_map=("O", "H"), sel=SEL, precision="float64"):
    cfg = parse(ModelConfig, {
        "type_map": list(type_map),
        "descriptor": {"type": "se_e2_r", "sel": list(sel), "rcut": RCUT, "rcut_smth": RCUT_SMTH,
                       "neuron": [4, 8], "seed": seed, "precision": precision,
                       "exclude_types": [list(p) for p in exclude]},
        "fitting_net": {"neuron": [8, 8], "seed": seed, "precision": precision},
    }, "model")
    model = EnergyModel(cfg)
    g = torch.Generator().manual_seed(seed)
    d = model.atomic_model.descriptor
    with torch.no_grad():
        for t in range(len(type_map)):  # one value per type in every slot (as statistics do)
            d.mean[t] = 0.1 + 0.2 * torch.rand((), generator=g, dtype=torch.float64)
            d.stddev[t] = 0.4 + torch.rand((), generator=g, dtype=torch.float64)
        model.atomic_model.out_bias.copy_(torch.randn(1, len(type_map), 1, generator=g,
                                                      dtype=torch.float64))
    return model.eval()


def brute_descriptor(model, coord, atype, box):
    """D_i = (1/5)(1/nnei) sum_j G_{t_j}(s_ij), slot by slot: s = (sw(r)/r - davg)/dstd for a
    neighbor, -davg/dstd for padding, 0 for an excluded pair."""
    d = model.atomic_model.descriptor
    nl = ops.neighbor_list(coord, atype, box, RCUT, d.sel)
    ext = nl.ext_coord[0].detach()
    out = []
    for i in range(atype.shape[1]):
        ti = int(atype[0, i])
        total = torch.zeros(d.m1, dtype=torch.float64)
        for j in range(d.nnei):
            t = next(k for k in range(len(d.sel)) if d.sec[k] <= j < d.sec[k + 1])
            n = int(nl.nlist[0, i, j])
            davg, dstd = float(d.mean[ti, j, 0]), float(d.stddev[ti, j, 0])
            if n < 0:
                s = -davg / dstd
            elif d.excluded[ti][int(nl.ext_atype[0, n])]:
                s = 0.0
            else:
                r = (ext[n] - ext[i]).norm()
                s = (float(smooth_switch(r, RCUT_SMTH, RCUT) / r) - davg) / dstd
            total += d.filter_layers.networks[t](torch.tensor([[s]], dtype=torch.float64))[0]
        out.append(total / d.nnei / 5.0)
    return torch.stack(out)[None]


@pytest.mark.parametrize("exclude", [(), [(0, 1)]])
def test_descriptor_equals_brute_force(exclude):
    model = se_r_model(exclude)
    coord, atype, box = random_frame(natoms=12, box_len=6.0)
    nl = ops.neighbor_list(coord, atype, box, RCUT, SEL)
    d = model.atomic_model.descriptor
    got = d(nl.ext_coord, nl.ext_atype, nl.nlist, atype).detach()
    torch.testing.assert_close(got, brute_descriptor(model, coord, atype, box), rtol=1e-12,
                               atol=1e-14)
    assert d.get_dim_out() == 8 and got.shape == (1, 12, 8)


@pytest.mark.parametrize("periodic", [True, False])
def test_forces_and_virial_are_derivatives_of_the_energy(periodic):
    model = se_r_model()
    coord, atype, box = random_frame(natoms=10, periodic=periodic)
    out = {k: v.detach() for k, v in model(coord, atype, box).items()}
    h = 1e-5
    for i, c in [(0, 0), (4, 1), (9, 2)]:
        plus, minus = coord.clone(), coord.clone()
        plus[0, i, c] += h
        minus[0, i, c] -= h
        fd = -(model(plus, atype, box)["energy"] - model(minus, atype, box)["energy"]) / (2 * h)
        assert float(out["force"][0, i, c]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
    if periodic:  # virial = -dE/d(strain): scale the cell and the atoms with it
        def energy(eps):
            strain = torch.eye(3, dtype=torch.float64) + eps
            return model(coord @ strain, atype, (box.view(3, 3) @ strain).view(1, 9))["energy"]
        for a, b in [(0, 0), (1, 2), (2, 1)]:
            e = torch.zeros(3, 3, dtype=torch.float64)
            e[a, b] = h
            fd = -(energy(e) - energy(-e)) / (2 * h)
            assert float(out["virial"][0, 3 * a + b]) == pytest.approx(float(fd), rel=1e-6,
                                                                        abs=1e-8)


def test_rotation_and_permutation_invariance():
    model = se_r_model()
    coord, atype, _ = random_frame(natoms=10, periodic=False)
    ref = model(coord, atype, None)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1),
                                       dtype=torch.float64))
    rot = model(coord @ q.T, atype, None)
    assert float((rot["energy"] - ref["energy"]).abs().max()) < 1e-12
    torch.testing.assert_close(rot["force"], ref["force"] @ q.T, rtol=1e-10, atol=1e-12)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(2))
    swapped = model(coord[:, perm], atype[:, perm], None)
    assert float((swapped["energy"] - ref["energy"]).abs().max()) < 1e-12


def test_smooth_at_the_cutoff():
    """A neighbor crossing rcut changes the energy continuously (the switch and its slope
    vanish there)."""
    model = se_r_model()
    coord = torch.tensor([[[0.0, 0.0, 0.0], [RCUT - 1e-6, 0.0, 0.0]]], dtype=torch.float64)
    atype = torch.tensor([[0, 1]])
    inside = model(coord, atype, None)
    outside = model(coord + torch.tensor([0.0, 0.0, 0.0, 2e-6, 0, 0]).view(1, 2, 3), atype, None)
    assert abs(float(inside["energy"] - outside["energy"])) < 1e-10
    assert float(inside["force"].abs().max()) < 1e-8


def test_statistics_are_the_sums_of_the_radial_entries():
    model = se_r_model()
    d = model.atomic_model.descriptor
    frames = []
    for seed in range(3):
        coord, atype, box = random_frame(natoms=12, seed=seed)
        frames.append({"coord": coord, "atype": atype, "box": box})
    sums = d.compute_stats(frames)
    assert sorted(sums) == ["r_0", "r_1"]  # radial only
    # by hand: raw s = sw(r)/r of every slot (padding 0), pooled per center type
    values = {0: [], 1: []}
    for f in frames:
        nl = ops.neighbor_list(f["coord"], f["atype"], f["box"], RCUT, SEL)
        ext = nl.ext_coord[0]
        for i in range(12):
            for n in nl.nlist[0, i].tolist():
                r = (ext[n] - ext[i]).norm() if n >= 0 else None
                values[int(f["atype"][0, i])].append(
                    0.0 if r is None else float(smooth_switch(r, RCUT_SMTH, RCUT) / r))
    d.set_stats(sums)
    for t in (0, 1):
        v = torch.tensor(values[t], dtype=torch.float64)
        assert sums[f"r_{t}"].number == len(v)
        torch.testing.assert_close(d.mean[t], torch.full_like(d.mean[t], float(v.mean())))
        torch.testing.assert_close(d.stddev[t], torch.full_like(d.stddev[t],
                                                                float(v.std(unbiased=False))))


def test_statistics_do_not_depend_on_how_samples_are_chunked(monkeypatch):
    """Samples of one atom count go through together; one frame at a time gives the same
    sums (up to the order of additions)."""
    d = se_r_model().atomic_model.descriptor
    frames = [dict(zip(("coord", "atype", "box"), random_frame(natoms=12, seed=s)))
              for s in range(4)]
    frames.append(dict(zip(("coord", "atype", "box"), random_frame(natoms=9, seed=7))))
    together = d.compute_stats(frames)
    monkeypatch.setattr(EnvMatBlock, "STAT_CHUNK", 1)
    alone = d.compute_stats(frames)
    for k in together:
        assert together[k].number == alone[k].number
        assert together[k].sum == pytest.approx(alone[k].sum, rel=1e-12)
        assert together[k].squared_sum == pytest.approx(alone[k].squared_sum, rel=1e-12)


@pytest.mark.parametrize("exclude", [(), [(1, 1)]])
def test_frozen_model_equals_training_model(exclude, tmp_path):
    model = se_r_model(exclude)
    coord, atype, box = random_frame(natoms=20, box_len=6.0)
    frozen = torch.jit.script(FrozenEnergyModel.from_model(model, "{}"))
    torch.jit.save(frozen, str(tmp_path / "m.pth"))
    loaded = torch.jit.load(str(tmp_path / "m.pth"))
    ref = model(coord, atype, box, do_atomic_virial=True)
    out = loaded(coord, atype, box, do_atomic_virial=True)
    for key in ("energy", "atom_energy", "force", "virial", "atom_virial"):
        torch.testing.assert_close(out[key], ref[key].detach(), rtol=1e-10, atol=1e-12)
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert "atomic_model.descriptor.mean" in loaded.state_dict()  # DeePMD-kit's se_e2_r keys
    assert tuple(loaded.state_dict()["atomic_model.descriptor.mean"].shape) == (2, 36, 1)


def test_float32_model():
    ref_model = se_r_model(precision="float64")
    model = se_r_model(precision="float32")
    model.load_state_dict(ref_model.state_dict())  # the same weights, cast
    coord, atype, box = random_frame(natoms=12)
    ref = ref_model(coord, atype, box)
    out = model(coord, atype, box)
    assert out["force"].dtype == torch.float32
    assert abs(float(out["energy"] - ref["energy"])) < 1e-3 * max(1.0, abs(float(ref["energy"])))


def test_reordered_type_map_gives_the_same_model():
    old_map, new_map = ["O", "H", "C"], ["C", "O", "H"]
    src = se_r_model(exclude=[(0, 2)], type_map=old_map, sel=[6, 8, 4])
    dst = se_r_model(exclude=[(1, 0)], type_map=new_map, sel=[4, 6, 8], seed=9)
    ft.transfer(src, dst, [old_map.index(t) for t in new_map], random_fitting=False)
    names = ["O", "H", "H", "C", "O", "H", "C", "H"]
    g = torch.Generator().manual_seed(0)
    coord = torch.rand(1, len(names), 3, generator=g, dtype=torch.float64) * 5
    box = (torch.eye(3, dtype=torch.float64) * 5).reshape(1, 9)
    a = src(coord, torch.tensor([[old_map.index(n) for n in names]]), box)
    b = dst(coord, torch.tensor([[new_map.index(n) for n in names]]), box)
    for key in ("energy", "force", "virial", "atom_energy"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-12)


def test_input_errors_name_the_key():
    from dpx.config import ConfigError
    with pytest.raises(ConfigError, match="model/descriptor/axis_neuron: unknown key"):
        parse(ModelConfig, {"type_map": ["O"], "descriptor": {"type": "se_r", "axis_neuron": 4}},
              "model")
    assert math.isclose(parse(ModelConfig, {"type_map": ["O"], "descriptor": {"type": "se_r"}},
                              "model").descriptor.rcut, 6.0)
