"""Physics of the energy model against independent oracles: finite differences for forces
and the virial, invariance under rotation / translation / permutation, smoothness at rcut."""
import math

import pytest
import torch

from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.model.energy import EnergyModel


def small_model(type_one_side=False, exclude=(), precision="float64", seed=3):
    cfg = parse(ModelConfig, {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [12, 24], "rcut": 4.0, "rcut_smth": 1.0,
                       "neuron": [4, 8], "axis_neuron": 3, "type_one_side": type_one_side,
                       "seed": seed, "exclude_types": [list(p) for p in exclude],
                       "precision": precision},
        "fitting_net": {"neuron": [8, 8], "seed": seed, "precision": precision},
    }, "model")
    model = EnergyModel(cfg)
    g = torch.Generator().manual_seed(seed)
    sea = model.atomic_model.descriptor.sea
    sea.mean.copy_(0.1 * torch.rand(sea.mean.shape, generator=g))
    sea.mean[..., 1:] = 0.0
    sea.stddev.copy_(0.5 + torch.rand(sea.stddev.shape, generator=g))
    # one std for x, y, z (as the statistics make it), or rotations would change the energy
    sea.stddev[..., 2:] = sea.stddev[..., 1:2]
    sea.plan()  # statistics written by hand: choose the strategy again
    model.atomic_model.out_bias.copy_(torch.tensor([[[-2.0], [-1.0]]]))
    return model.eval()


def random_frame(natoms=10, box_len=6.0, seed=0, periodic=True):
    g = torch.Generator().manual_seed(seed)
    # a jittered grid keeps atoms apart
    n = math.ceil(natoms ** (1 / 3))
    grid = torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coord = (grid[:natoms].double() + 0.3 * torch.rand(natoms, 3, generator=g, dtype=torch.float64)) \
        * (box_len / n)
    atype = torch.tensor([i % 2 for i in range(natoms)])
    box = torch.eye(3, dtype=torch.float64).reshape(1, 9) * box_len
    box[0, 3] = 0.7  # a triclinic tilt
    return coord[None], atype[None], (box if periodic else None)


@pytest.mark.parametrize("type_one_side", [False, True])
@pytest.mark.parametrize("periodic", [True, False])
def test_force_is_minus_energy_gradient(type_one_side, periodic):
    model = small_model(type_one_side)
    coord, atype, box = random_frame(periodic=periodic)
    out = {k: v.detach() for k, v in model(coord, atype, box).items()}
    eps = 1e-5
    for i, c in [(0, 0), (3, 1), (7, 2)]:
        plus, minus = coord.clone(), coord.clone()
        plus[0, i, c] += eps
        minus[0, i, c] -= eps
        fd = -(model(plus, atype, box)["energy"] - model(minus, atype, box)["energy"]) / (2 * eps)
        assert float(out["force"][0, i, c]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


def test_virial_is_minus_strain_derivative():
    """virial = -dE/d(eps) at eps = 0 for the homogeneous deformation r -> r (1 + eps)."""
    model = small_model()
    coord, atype, box = random_frame()
    out = model(coord, atype, box)
    h = 1e-5
    assert torch.allclose(out["virial"].reshape(3, 3), out["virial"].reshape(3, 3).T, atol=1e-12)
    for a, b in [(0, 0), (0, 1), (2, 1), (1, 2)]:
        def energy(e):
            strain = torch.eye(3, dtype=torch.float64)
            strain[a, b] += e
            return float(model(coord @ strain, atype, (box.reshape(3, 3) @ strain).reshape(1, 9))["energy"])
        # r -> r S with S_ab = 1 + e moves r_b by e r_a: -dE/de = -sum dE/dr_b r_a = virial_ba
        fd = -(energy(h) - energy(-h)) / (2 * h)
        assert float(out["virial"][0, 3 * b + a]) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_invariance_rotation_translation_permutation():
    model = small_model()
    coord, atype, _ = random_frame(periodic=False)
    out = model(coord, atype, None)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(5)))
    rot = model(coord @ q + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atype, None)
    assert torch.allclose(rot["energy"], out["energy"], rtol=1e-12)
    assert torch.allclose(rot["force"], out["force"] @ q, atol=1e-10)
    cb, ab, box = random_frame()
    pbc = model(cb, ab, box)
    rot = model(cb @ q, ab, (box.reshape(3, 3) @ q).reshape(1, 9))
    assert torch.allclose(rot["energy"], pbc["energy"], rtol=1e-12)
    perm = torch.randperm(coord.shape[1], generator=torch.Generator().manual_seed(1))
    p = model(coord[:, perm], atype[:, perm], None)
    assert torch.allclose(p["energy"], out["energy"], rtol=1e-12)
    assert torch.allclose(p["force"], out["force"][:, perm], atol=1e-10)


def test_periodic_image_invariance():
    """Moving an atom by a lattice vector changes nothing."""
    model = small_model()
    coord, atype, box = random_frame()
    out = model(coord, atype, box)
    shifted = coord.clone()
    shifted[0, 2] += box.reshape(3, 3)[1] - 2 * box.reshape(3, 3)[0]
    s = model(shifted, atype, box)
    assert torch.allclose(s["energy"], out["energy"], rtol=1e-12)
    assert torch.allclose(s["force"], out["force"], atol=1e-10)


def test_smooth_when_a_neighbor_crosses_rcut():
    model = small_model()
    rcut = model.rcut
    # atom 1 stays out of atom 2's range, so only the pair (0, 2) sits at the cut-off
    coord = torch.tensor([[[0.0, 0.0, 0.0], [-1.0, 0.2, 0.0], [rcut, 0.0, 0.0]]], dtype=torch.float64)
    atype = torch.tensor([[0, 1, 1]])
    energies, forces = [], []
    for d in (-1e-4, -1e-7, 1e-7, 1e-4):
        c = coord.clone()
        c[0, 2, 0] = rcut + d
        o = model(c, atype, None)
        energies.append(float(o["energy"]))
        forces.append(o["force"])
    assert abs(energies[1] - energies[2]) < 1e-12
    assert abs(energies[0] - energies[3]) < 1e-8
    assert torch.allclose(forces[1], forces[2], atol=1e-12)


def test_float32_precision_close_to_float64():
    m64, m32 = small_model(), small_model(precision="float32")
    m32.load_state_dict(m64.state_dict())  # same weights, cast to float32
    coord, atype, box = random_frame()
    e64 = m64(coord, atype, box)
    e32 = m32(coord, atype, box)
    assert e32["energy"].dtype == torch.float64  # energies are reduced in float64
    assert torch.allclose(e32["energy"], e64["energy"], rtol=1e-5)
    assert torch.allclose(e32["force"].double(), e64["force"], atol=1e-4)
