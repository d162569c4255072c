"""Other formats through dpdata (optional dependency)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from dpx.data import load_systems


def _write_extxyz(path):
    """Two formulas (H2O frames and OH frames), periodic, with energy, forces and stress."""
    ase = pytest.importorskip("ase")
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    rng = np.random.default_rng(0)
    frames = []
    for symbols in ("OHH", "OHH", "OH"):
        atoms = ase.Atoms(symbols, positions=rng.uniform(0, 4, (len(symbols), 3)),
                          cell=np.eye(3) * 5, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()),
                                           forces=rng.normal(size=(len(symbols), 3)),
                                           stress=rng.normal(size=6))
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return frames


def test_extxyz_via_dpdata(tmp_path):
    pytest.importorskip("dpdata")
    frames = _write_extxyz(tmp_path / "frames.xyz")
    systems = load_systems("frames.xyz", base_dir=tmp_path, fmt="extxyz",
                           type_map=["H", "O"], sort_atoms=False)
    by_natoms = {s.natoms: s for s in systems}
    assert sorted(by_natoms) == [2, 3] and by_natoms[3].nframes == 2
    water = by_natoms[3]
    ref = frames[0]
    # sort_atoms=False keeps the file's atom order
    assert [["H", "O"][t] for t in water.atype] == ref.get_chemical_symbols()
    np.testing.assert_allclose(water.coord[0], ref.positions)
    np.testing.assert_allclose(water.box[0], ref.cell.array.reshape(9))
    np.testing.assert_allclose(water.labels["energy"][0, 0], ref.get_potential_energy())
    np.testing.assert_allclose(water.labels["force"][0], ref.get_forces())
    virial = -ref.get_stress(voigt=False) * ref.get_volume()
    np.testing.assert_allclose(water.labels["virial"][0], virial.reshape(9), atol=1e-8)
    assert water.find["virial"].all() and not water.find["atom_ener"].any()


def test_deepmd_raw_via_dpdata(npy_system, tmp_path):
    dpdata = pytest.importorskip("dpdata")
    path, _ = npy_system("npy", [1, 0, 0], (3,), names=["O", "H"])
    dpdata.LabeledSystem(path, fmt="deepmd/npy").to("deepmd/raw", str(tmp_path / "raw"))
    (raw,) = load_systems("raw", base_dir=tmp_path, fmt="deepmd/raw", type_map=["O", "H"])
    (npy,) = load_systems("npy", base_dir=tmp_path, type_map=["O", "H"])
    np.testing.assert_allclose(raw.coord, npy.coord)
    np.testing.assert_allclose(raw.labels["force"], npy.labels["force"])
    np.testing.assert_array_equal(raw.atype, npy.atype)


def test_missing_dpdata_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "OUTCAR").write_text("")
    monkeypatch.setitem(sys.modules, "dpdata", None)
    with pytest.raises(ImportError, match=r"read through dpdata: pip install dpdata"):
        load_systems("OUTCAR", base_dir=tmp_path, fmt="vasp/outcar")


def test_unreadable_file_names_path_and_format(tmp_path):
    pytest.importorskip("dpdata")
    (tmp_path / "OUTCAR").write_text("not an outcar\n")
    with pytest.raises(ValueError, match=r"OUTCAR: dpdata could not read it as format "
                                         r"'vasp/outcar'"):
        load_systems("OUTCAR", base_dir=tmp_path, fmt="vasp/outcar")
    with pytest.raises(FileNotFoundError, match=r"systems: 'nope.xyz' does not exist"):
        load_systems("nope.xyz", base_dir=tmp_path, fmt="extxyz")
