"""The frozen (TorchScript) model against the eager dpx EnergyModel it was built from. They
share every module; what differs is what the test checks: the backend (the frozen file runs
the pure-PyTorch twins, training dpx's ops), the export-only speed-ups (sort-free list
formatting against the sorting oracle, narrowed slot columns, blocks of centers), and the
TorchScript compilation. Also: raw neighbor lists (shuffled, wider, entries beyond rcut,
overflowing sel), exclusions, per-atom virials against finite differences, finite-difference
forces, and a save/load round trip."""
import pytest
import torch

from dpx import ops
from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.export.frozen import FrozenEnergyModel
from dpx.model.energy import EnergyModel
from dpx.nlist import all_within
from dpx.ops import reference
from tests.model.test_physics import random_frame

TOL = 1e-10


def make_model(sel=(12, 24), pair_exclude=(), exclude=(), atom_exclude=(),
               type_one_side=False, seed=3, precision="float64") -> EnergyModel:
    cfg = parse(ModelConfig, {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": list(sel), "rcut": 4.0, "rcut_smth": 1.0,
                       "neuron": [4, 8], "axis_neuron": 3, "type_one_side": type_one_side,
                       "seed": seed, "exclude_types": [list(p) for p in exclude],
                       "precision": precision},
        "fitting_net": {"neuron": [8, 8], "seed": seed, "precision": precision},
        "pair_exclude_types": [list(p) for p in pair_exclude],
        "atom_exclude_types": list(atom_exclude),
    }, "model")
    model = EnergyModel(cfg)
    sea = model.atomic_model.descriptor.sea
    # one value per type in every slot, as the statistics make them
    sea.mean.zero_()
    sea.mean[:, :, 0] = torch.tensor([0.3, 0.2])[:, None]
    sea.stddev.copy_(torch.tensor([[0.4, 0.7, 0.7, 0.7], [0.5, 0.6, 0.6, 0.6]])[:, None, :]
                     .expand_as(sea.stddev))
    sea.plan()  # statistics written by hand: choose the strategy again
    model.atomic_model.out_bias.copy_(torch.tensor([[[-2.0], [-1.0]]]))
    return model.eval()


def frozen(model: EnergyModel) -> torch.jit.ScriptModule:
    return torch.jit.script(FrozenEnergyModel.from_model(model, "{}"))


def assert_close(a, b, key=""):
    scale = max(float(b.detach().abs().max()), 1.0)
    diff = float((a.detach() - b.detach()).abs().max())
    assert diff <= TOL * scale, (key, diff, scale)


def raw_nlist(ext_coord, ext_atype, nloc, cutoff, seed=0, extra_pad=3):
    """LAMMPS-like: every atom within `cutoff` (> rcut), rows shuffled, -1 padded wider."""
    nl = all_within(ext_coord, ext_atype, nloc, cutoff)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for row in nl[0]:
        filled = row[row >= 0]
        filled = filled[torch.randperm(len(filled), generator=g)]
        pad = torch.full((nl.shape[-1] - len(filled) + extra_pad,), -1, dtype=torch.long)
        rows.append(torch.cat([filled, pad]))
    return torch.stack(rows)[None]


def lammps_case(model: EnergyModel):
    """On a random frame: (neighbor list, its LAMMPS-like raw list, the typed list of
    DeePMD-kit's always-sorting selection, the eager model's lower on that typed list)."""
    coord, atype, box = random_frame(natoms=20, box_len=6.0)
    nl = ops.neighbor_list(coord, atype, box, model.rcut + 1.5, [200, 200])
    raw = raw_nlist(nl.ext_coord, nl.ext_atype, atype.shape[1], model.rcut + 1.5)
    typed = reference.format_nlist(nl.ext_coord, nl.ext_atype, raw, model.rcut, model.sel)
    return nl, raw, typed, model.lower(nl.ext_coord, nl.ext_atype, typed, True, False)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("options", [{}, {"type_one_side": True}, {"sel": (3, 5)},
                                     {"pair_exclude": [(0, 1)]}, {"exclude": [(1, 1)]},
                                     {"atom_exclude": [1]}])
def test_forward_equals_eager(periodic, options):
    model = make_model(**options)
    coord, atype, box = random_frame(natoms=20, box_len=6.0, periodic=periodic)
    ref = model(coord, atype, box, do_atomic_virial=True)
    out = frozen(model)(coord, atype, box, do_atomic_virial=True)
    for key in ("energy", "atom_energy", "force", "virial", "atom_virial", "mask"):
        assert_close(out[key], ref[key], key)  # per atom, not only the sums
    assert_close(out["atom_virial"].sum(dim=1), ref["virial"], "atom_virial")


@pytest.mark.parametrize("sel", [(12, 24), (3, 5)])  # (3, 5): types overflow sel
@pytest.mark.parametrize("options", [{}, {"pair_exclude": [(0, 1)]}])
def test_forward_lower_formats_raw_nlist(sel, options):
    model = make_model(sel=sel, **options)
    nl, raw, _, ref = lammps_case(model)
    out = frozen(model).forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping,
                                      do_atomic_virial=True)
    for key in ("energy", "atom_energy", "extended_force", "virial", "extended_virial", "mask"):
        assert_close(out[key], ref[key], key)
    eager = model.forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping)
    assert_close(eager["extended_force"], ref["extended_force"])


@pytest.mark.parametrize("options", [{}, {"pair_exclude": [(0, 1)]}, {"atom_exclude": [1]},
                                     {"type_one_side": True}])
def test_blocks_of_centers_equal_one_pass(options):
    """A box larger than chunk_atoms is evaluated a block of centers at a time (7 here, so
    blocks end mid-type and the last one is short)."""
    model = make_model(**options)
    coord, atype, box = random_frame(natoms=20, box_len=6.0)
    nl = ops.neighbor_list(coord, atype, box, model.rcut + 1.5, [200, 200])
    raw = raw_nlist(nl.ext_coord, nl.ext_atype, atype.shape[1], model.rcut + 1.5)
    ref = model.forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping)
    blocked = frozen(model)
    blocked.chunk_atoms = 7
    out = blocked.forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping)
    for key in ("energy", "atom_energy", "extended_force", "virial", "mask"):
        assert_close(out[key], ref[key], key)
    out = blocked(coord, atype, box)
    ref = model(coord, atype, box)
    for key in ("energy", "atom_energy", "force", "virial"):
        assert_close(out[key], ref[key], key)


def test_forward_lower_narrow_list_is_padded():
    model = make_model()
    coord, atype, box = random_frame(natoms=8, box_len=9.0)
    nl = ops.neighbor_list(coord, atype, box, model.rcut, model.sel)
    narrow = nl.nlist[..., :].clone()
    keep = int((narrow >= 0).sum(-1).max())
    narrow = torch.sort(narrow, dim=-1, descending=True).values[..., :keep]
    ref = model.forward_lower(nl.ext_coord, nl.ext_atype, nl.nlist, nl.mapping)
    out = frozen(model).forward_lower(nl.ext_coord, nl.ext_atype, narrow)
    assert_close(out["energy"], ref["energy"])
    assert_close(out["extended_force"], ref["extended_force"])


def test_forces_are_minus_energy_gradient():
    m = frozen(make_model())
    coord, atype, box = random_frame(natoms=12, box_len=6.0)
    force = m(coord, atype, box)["force"]
    eps = 1e-5
    for i, c in [(0, 0), (5, 1), (11, 2)]:
        plus, minus = coord.clone(), coord.clone()
        plus[0, i, c] += eps
        minus[0, i, c] -= eps
        fd = -(m(plus, atype, box)["energy"] - m(minus, atype, box)["energy"]) / (2 * eps)
        assert float(force[0, i, c]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


def test_float32_input_gives_float32_outputs():
    m = frozen(make_model())
    coord, atype, box = random_frame(natoms=10)
    out = m(coord.float(), atype, box.float())
    ref = m(coord, atype, box)
    assert out["energy"].dtype == torch.float64 and out["force"].dtype == torch.float32
    assert float((out["force"] - ref["force"]).abs().max()) < 1e-4


def test_float32_model():
    model = make_model(precision="float32")
    coord, atype, box = random_frame(natoms=12)
    ref = model(coord, atype, box)
    out = frozen(model)(coord, atype, box)
    assert float((out["energy"] - ref["energy"]).abs().max()) < 1e-4
    assert float((out["force"] - ref["force"]).abs().max()) < 1e-4


def test_save_load_round_trip(tmp_path):
    model = make_model()
    m = frozen(model)
    torch.jit.save(m, str(tmp_path / "m.pth"), _extra_files={"data_modifier.pth": b""})
    extra = {"data_modifier.pth": ""}
    loaded = torch.jit.load(str(tmp_path / "m.pth"), _extra_files=extra)
    assert extra["data_modifier.pth"] in ("", b"")
    coord, atype, box = random_frame(natoms=10)
    a, b = m(coord, atype, box), loaded(coord, atype, box)
    for key in a:
        assert_close(a[key], b[key], key)  # scatter-adds may sum in another order
    # DeePMD-kit's frozen EnergyModel keys: the training model's, no wrapper prefix
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert loaded.get_type_map() == ["O", "H"] and loaded.get_rcut() == 4.0
    assert loaded.get_sel() == [12, 24] and loaded.get_nnei() == 36
    assert loaded.model_output_type() == ["energy", "mask"]
    assert not loaded.has_message_passing() and loaded.get_min_nbor_dist() is None
    assert loaded.get_sel_type() == [0, 1]
    assert frozen(make_model(atom_exclude=[1])).get_sel_type() == [0]


def test_slot_dependent_statistics_take_the_dense_path():
    """davg/dstd that differ between the slots of a type (no statistics make them, a foreign
    checkpoint might): every slot goes through its net, in training and in the frozen file."""
    model = make_model()
    model.atomic_model.descriptor.sea.mean[0, 3, 0] = 1.0
    assert not model.atomic_model.descriptor.sea.slot_constant_stats()
    model.atomic_model.descriptor.plan()
    assert model.atomic_model.descriptor.sea.strategy == "dense"
    coord, atype, box = random_frame(natoms=20, box_len=6.0)
    ref = model(coord, atype, box)
    out = frozen(model)(coord, atype, box)
    for key in ("energy", "atom_energy", "force", "virial"):
        assert_close(out[key], ref[key], key)


def atomic_virial_by_finite_differences(model, coord, atype, h=1e-5):
    """W[k] = -sum_l (d e_l / d r_k) (x) (r_k - r_l), open boundaries: the pair term of center
    l and neighbor k assigned to k (DeePMD-kit's convention), from central differences of the
    atomic energies. Independent of the model's autograd virial and its correction term."""
    n = coord.shape[1]
    jac = torch.zeros(n, 3, n, dtype=torch.float64)  # d e_l / d r_ka -> jac[k, a, l]
    for k in range(n):
        for a in range(3):
            plus, minus = coord.clone(), coord.clone()
            plus[0, k, a] += h
            minus[0, k, a] -= h
            ep = model(plus, atype, None)["atom_energy"].detach()[0, :, 0]
            em = model(minus, atype, None)["atom_energy"].detach()[0, :, 0]
            jac[k, a] = (ep - em) / (2 * h)
    rel = coord[0][:, None, :] - coord[0][None, :, :]  # [k, l, b] = r_k - r_l
    return -torch.einsum("kal,klb->kab", jac, rel).reshape(1, n, 9)


@pytest.mark.parametrize("options", [{}, {"type_one_side": True}, {"exclude": [(1, 1)]}])
def test_atomic_virial_per_atom(options):
    """Per-atom virials of the training model and of the frozen file, atom by atom, against
    finite differences of the atomic energies."""
    model = make_model(**options)
    coord, atype, _ = random_frame(natoms=10, box_len=5.0, periodic=False)
    fd = atomic_virial_by_finite_differences(model, coord, atype)
    train = model(coord, atype, None, do_atomic_virial=True)["atom_virial"].detach()
    froz = frozen(model)(coord, atype, None, do_atomic_virial=True)["atom_virial"]
    assert float(fd.abs().max()) > 1e-3
    torch.testing.assert_close(train, fd, rtol=1e-6, atol=1e-8)
    assert_close(froz, train, "atom_virial")
