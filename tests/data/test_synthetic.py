"""The bundled example data: labels against finite differences, and a loadable data set."""
from __future__ import annotations

import numpy as np
import pytest

from dpx.data import load_systems, synthetic


def _calculators():
    try:
        import ase  # noqa: F401
        return ["morse", "emt"]
    except ImportError:
        return ["morse"]


@pytest.mark.parametrize("calculator", _calculators())
@pytest.mark.parametrize("pbc, tilt", [(True, 0.0), (True, 0.1), (False, 0.0)])
def test_forces_and_virial_match_finite_differences(calculator, pbc, tilt):
    _, label = synthetic.labeler(calculator)
    atype, coord, cell = synthetic.water_frame(8, np.random.default_rng(1), tilt=tilt)
    f_err, w_err = synthetic.finite_difference_error(label, coord, cell, atype, pbc=pbc)
    assert f_err < 1e-5 and w_err < 1e-5


def test_virial_sign_is_deepmd():
    """W_ab = -sum_k dE/dr_ka r_kb: for a compressed pair (repulsive) W is positive."""
    atype = np.array([0, 0])
    coord = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]])  # O-O well inside r0 = 2.9
    _, force, virial = synthetic.morse_labels(coord, np.eye(3) * 20, atype, pbc=False)
    assert force[1, 0] > 0 and force[0, 0] < 0  # pushed apart
    assert virial[0, 0] > 0 and np.isclose(virial[0, 0], force[1, 0] * 1.5)
    np.testing.assert_allclose(virial, np.einsum("ka,kb->ab", force, coord), atol=1e-12)


def test_no_overlapping_atoms():
    atype, coord, cell = synthetic.water_frame(16, np.random.default_rng(2))
    d = (coord[:, None] - coord[None]) @ np.linalg.inv(cell)
    r = np.linalg.norm((d - np.round(d)) @ cell, axis=-1) + np.eye(len(coord)) * 9
    assert r.min() > 0.8 and atype.tolist() == [0, 1, 1] * 16


def test_make_dataset_loads(tmp_path):
    made = synthetic.make_dataset(tmp_path, nsystems=2, nframes=4, nvalid=2, calculator="morse",
                                  nsets=2, seed=3)
    train = load_systems("train", base_dir=tmp_path, type_map=["O", "H"])
    assert [s.natoms for s in train] == [24, 36] and [s.nframes for s in train] == [4, 4]
    assert train[0].set_nframes == [2, 2] and train[0].atype[:8].tolist() == [0] * 8
    assert all(s.find[k].all() for s in train for k in ("energy", "force", "virial"))
    (valid,) = load_systems(made["valid"], type_map=["O", "H"])
    assert valid.nframes == 2 and not valid.nopbc
    assert (tmp_path / "generator.json").exists()
    # the file labels agree with the calculator on the stored (unsorted) atoms
    (raw,) = load_systems(made["train"][0], type_map=["O", "H"], sort_atoms=False)
    energy, force, virial = synthetic.morse_labels(raw.coord[1], raw.box[1].reshape(3, 3),
                                                   raw.atype)
    np.testing.assert_allclose(raw.labels["energy"][1, 0], energy)
    np.testing.assert_allclose(raw.labels["force"][1], force)
    np.testing.assert_allclose(raw.labels["virial"][1], virial.reshape(9))
