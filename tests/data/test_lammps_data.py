"""LAMMPS data files from DeePMD systems (dpx.data.lammps); LAMMPS itself runs in tests/lammps."""
import numpy as np
import pytest

from dpx.data.lammps import lammps_data_text, write_lammps_data
from dpx.data.synthetic import write_system


def _atoms(text: str) -> np.ndarray:
    body = text.split("Atoms # atomic\n\n")[1]
    return np.array([line.split() for line in body.strip().splitlines()], float)


def test_replicated_box_keeps_ids_types_and_exact_coordinates():
    coord = np.array([[0.1, 0.2, 0.3], [1.0 / 3.0, 2.5, 2.9]])
    cell = np.diag([3.0, 4.0, 5.0])
    text = lammps_data_text(coord, cell, [1, 0], ["O", "H"], replicate=(2, 1, 3))
    rows = _atoms(text)
    assert "12 atoms" in text and "2 atom types" in text
    assert "0 6 xlo xhi" in text and "0 4 ylo yhi" in text and "0 15 zlo zhi" in text
    assert "xy xz yz" not in text
    assert "1 15.999 # O" in text and "2 1.008 # H" in text
    np.testing.assert_array_equal(rows[:, 0], np.arange(1, 13))
    np.testing.assert_array_equal(rows[:, 1], np.tile([2, 1], 6))  # LAMMPS type = model type + 1
    # image (ix, iy, iz) in C order: id - 1 = image * natoms + i
    shifts = np.array([[ix, 0, iz] for ix in range(2) for iz in range(3)]) @ cell
    np.testing.assert_array_equal(rows[:, 2:], (shifts[:, None] + coord).reshape(-1, 3))


def test_triclinic_cell_in_lammps_form_and_rejected_otherwise():
    cell = np.array([[4.0, 0, 0], [0.5, 4.0, 0], [0.25, -0.5, 4.0]])
    text = lammps_data_text(np.zeros((1, 3)), cell, [0], ["O"], replicate=(2, 2, 1))
    assert "1 0.25 -0.5 xy xz yz" in text  # b doubled: xy = 2 * 0.5
    with pytest.raises(ValueError, match="not in LAMMPS's form"):
        lammps_data_text(np.zeros((1, 3)), cell.T, [0], ["O"])
    with pytest.raises(ValueError, match=r"no mass for element\(s\) \['Xx'\]"):
        lammps_data_text(np.zeros((1, 3)), cell, [0], ["Xx"])


def test_system_types_follow_the_model_type_map(tmp_path):
    arrays = {"coord": np.arange(9.0).reshape(1, 9) / 10, "box": (np.eye(3) * 5).reshape(1, 9)}
    write_system(tmp_path / "sys", np.array([0, 1, 1]), ["O", "H"], arrays)
    text = write_lammps_data(tmp_path / "x.lmp", tmp_path / "sys", ["H", "O"]).read_text()
    np.testing.assert_array_equal(_atoms(text)[:, 1], [2, 1, 1])
    assert "1 1.008 # H" in text
    with pytest.raises(ValueError, match="frame 3 out of range"):
        write_lammps_data(tmp_path / "y.lmp", tmp_path / "sys", ["O", "H"], frame=3)
