"""The ASE calculator: forces and stress against finite differences of its own energy, a
short NVE run that conserves energy, and clear errors for what it cannot evaluate."""
import numpy as np
import pytest
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from dpx.calculator import DPX
from dpx.cli.main import main
from dpx.data import load_systems
from tests.train.conftest import dataset, small_input, write  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def model(dataset, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("calc")
    cfg = small_input(dataset, steps=3)
    cfg["training"]["save_ckpt"] = str(run / "model.ckpt")
    cfg["training"]["disp_file"] = str(run / "lcurve.out")
    assert main(["train", str(write(run / "in.json", cfg)), "-o", str(run / "out.json")]) == 0
    return run / "model.ckpt-3.pt"


def water(dataset) -> Atoms:  # noqa: F811
    (sys,) = load_systems(str(dataset / "valid"), type_map=["O", "H"], sort_atoms=False)
    symbols = [["O", "H"][t] for t in sys.atype]
    return Atoms(symbols, positions=sys.coord[0].reshape(-1, 3),
                 cell=sys.box[0].reshape(3, 3), pbc=True)


def test_forces_and_stress_are_derivatives_of_the_energy(model, dataset):  # noqa: F811
    atoms = water(dataset)
    atoms.calc = DPX(str(model))
    forces = atoms.get_forces()
    h = 1e-5
    for i, d in [(0, 0), (1, 2), (5, 1)]:
        e = []
        for s in (h, -h):
            atoms.positions[i, d] += s
            e.append(atoms.get_potential_energy())
            atoms.positions[i, d] -= s
        assert forces[i, d] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-6)
    numerical = atoms.calc.calculate_numerical_stress(atoms, d=1e-6)
    np.testing.assert_allclose(atoms.get_stress(), numerical, atol=1e-7)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy())


def test_nve_conserves_energy(model, dataset):  # noqa: F811
    atoms = water(dataset)
    atoms.calc = DPX(str(model))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    total = []
    dyn.attach(lambda: total.append(atoms.get_total_energy()), interval=1)
    dyn.run(40)
    drift = np.ptp(total) / len(atoms)
    # velocity Verlet with dt 0.25 fs: the shadow-Hamiltonian error is O(dt^2), far below this
    assert drift < 5e-6, drift  # measured 5e-7 eV/atom


def test_errors_name_the_problem(model, dataset):  # noqa: F811
    calc = DPX(str(model))
    with pytest.raises(ValueError, match=r"\['C'\] are not in the model's type_map"):
        calc.get_potential_energy(Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.2]]))
    atoms = water(dataset)
    atoms.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic in all three"):
        calc.get_potential_energy(atoms)
