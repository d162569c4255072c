"""Reading DeePMD npy/HDF5 systems: shapes, remapping, atom sorting, discovery."""
from __future__ import annotations

import numpy as np
import pytest

from dpx.data import expand_systems, load_systems, read_system

ATYPE = [1, 0, 1, 0, 1]  # file order; sorted by type: atoms 1, 3, 0, 2, 4


def test_shapes_and_values_in_file_order(npy_system):
    path, ref = npy_system("s", ATYPE, (3, 2))
    s = read_system(path, sort_atoms=False)
    assert (s.nframes, s.natoms, s.set_nframes) == (5, 5, [3, 2])
    assert s.coord.dtype == np.float64 and s.coord.shape == (5, 5, 3)
    np.testing.assert_array_equal(s.coord.reshape(5, -1), ref["coord"])
    np.testing.assert_array_equal(s.box, ref["box"])
    np.testing.assert_array_equal(s.labels["energy"], ref["energy"][:, None])
    np.testing.assert_array_equal(s.labels["force"].reshape(5, -1), ref["force"])
    np.testing.assert_array_equal(s.labels["virial"], ref["virial"])
    np.testing.assert_array_equal(s.atype, ATYPE)
    assert s.find["energy"].all() and not s.find["atom_ener"].any()


def test_sets_sorted_lexicographically(npy_system, tmp_path):
    path, ref = npy_system("s", ATYPE, (2, 3))
    (tmp_path / "s" / "set.000").rename(tmp_path / "s" / "set.b")
    (tmp_path / "s" / "set.001").rename(tmp_path / "s" / "set.a")
    s = read_system(path, sort_atoms=False)
    np.testing.assert_array_equal(s.coord.reshape(5, -1), np.concatenate(
        [ref["coord"][2:], ref["coord"][:2]]))
    assert s.set_nframes == [3, 2]


def test_sort_atoms_reorders_every_atomic_array(npy_system):
    path, ref = npy_system("s", ATYPE, (4,), labels=("energy", "force", "atom_ener", "atom_pref"))
    s = read_system(path, sort_atoms=True)
    order = [1, 3, 0, 2, 4]
    np.testing.assert_array_equal(s.atype, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(s.idx_map, order)
    np.testing.assert_array_equal(s.coord, ref["coord"].reshape(4, 5, 3)[:, order])
    np.testing.assert_array_equal(s.labels["force"], ref["force"].reshape(4, 5, 3)[:, order])
    np.testing.assert_array_equal(s.labels["atom_ener"], ref["atom_ener"][:, order])
    # atom_pref is repeated per force component: a0 a0 a0 a1 a1 a1 ...
    np.testing.assert_array_equal(s.labels["atom_pref"],
                                  np.repeat(ref["atom_pref"][:, order], 3, axis=1))
    np.testing.assert_array_equal(s.labels["energy"][:, 0], ref["energy"])


def test_remap_through_type_map_raw(npy_system):
    path, _ = npy_system("s", [0, 1, 1, 2], names=["H", "O", "C"])
    s = read_system(path, type_map=["C", "O", "H"], sort_atoms=False)
    np.testing.assert_array_equal(s.atype, [2, 1, 1, 0])
    assert s.type_map == ["C", "O", "H"]
    assert read_system(path, sort_atoms=False).type_map == ["H", "O", "C"]


def test_no_type_map_raw_keeps_integers(npy_system):
    path, _ = npy_system("s", [1, 0, 1])
    s = read_system(path, type_map=["O", "H"], sort_atoms=False)
    np.testing.assert_array_equal(s.atype, [1, 0, 1])


def test_missing_optional_labels_default_and_find(npy_system):
    path, _ = npy_system("s", ATYPE, (2,), labels=("energy",))
    s = read_system(path)
    assert s.find["energy"].all()
    for key in ("force", "virial", "atom_ener", "atom_pref"):
        assert not s.find[key].any()
    assert not s.labels["force"].any()
    assert (s.labels["atom_pref"] == 1.0).all()  # deepmd default for atom_pref
    assert "fparam" not in s.labels  # width unknown without the file


def test_label_present_in_one_set_only(npy_system, tmp_path):
    path, ref = npy_system("s", ATYPE, (2, 3))
    (tmp_path / "s" / "set.001" / "virial.npy").unlink()
    s = read_system(path, sort_atoms=False)
    np.testing.assert_array_equal(s.find["virial"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(s.labels["virial"][:2], ref["virial"][:2])
    assert not s.labels["virial"][2:].any()


def test_atomic_ener_name_and_energy_2d_and_1d_coord(npy_system, tmp_path):
    path, ref = npy_system("s", ATYPE, (1,), labels=("energy", "atomic_ener"), energy_2d=True)
    np.save(tmp_path / "s" / "set.000" / "coord.npy", ref["coord"][0])  # 1-D = one frame
    s = read_system(path, sort_atoms=False)
    np.testing.assert_array_equal(s.labels["atom_ener"], ref["atomic_ener"])
    assert s.find["atom_ener"].all() and s.labels["energy"].shape == (1, 1)


def test_fparam_aparam_width_from_file(npy_system):
    path, ref = npy_system("s", ATYPE, (3,), labels=("energy", "fparam", "aparam"))
    s = read_system(path)
    assert s.labels["fparam"].shape == (3, 2)
    np.testing.assert_array_equal(s.labels["aparam"],
                                  ref["aparam"].reshape(3, 5, 2)[:, [1, 3, 0, 2, 4]])


def test_nopbc(npy_system):
    path, _ = npy_system("s", ATYPE, nopbc=True)
    s = read_system(path)
    assert s.nopbc and s.box is None


def test_hdf5_group_and_bare_file(npy_system, tmp_path):
    h5py = pytest.importorskip("h5py")
    _, ref = npy_system("s", [0, 1, 1], (2, 1), names=["O", "H"])
    h5 = tmp_path / "d.h5"
    with h5py.File(h5, "w") as f:
        for sub in ("a/w1", "b"):
            g = f.create_group(sub)
            g.create_dataset("type.raw", data=np.array([0, 1, 1]))
            g.create_dataset("type_map.raw", data=np.array(["O", "H"], dtype="S"))
            for iset, rows in enumerate((slice(0, 2), slice(2, 3))):
                for key in ("coord", "box", "energy", "force"):
                    g.create_dataset(f"set.{iset:03d}/{key}.npy", data=ref[key][rows])
    assert expand_systems(str(h5)) == [f"{h5}#/a/w1", f"{h5}#/b"]
    assert expand_systems(f"{h5}#/a") == [f"{h5}#/a/w1"]
    assert len(load_systems(str(h5), threads=2)) == 2
    (s,) = load_systems("d.h5#/b", base_dir=tmp_path, type_map=["H", "O"], sort_atoms=False)
    np.testing.assert_array_equal(s.atype, [1, 0, 0])
    np.testing.assert_array_equal(s.coord.reshape(3, -1), ref["coord"])
    np.testing.assert_array_equal(s.labels["energy"][:, 0], ref["energy"])
    assert not s.find["virial"].any() and s.set_nframes == [2, 1]


def test_discovery_from_parent_folder_relative_to_base_dir(npy_system, tmp_path):
    for name in ("data/b/sys2", "data/a/sys1", "data/a/sys1/nested", "data/c"):
        npy_system(name, [0, 1])
    (tmp_path / "data" / "empty").mkdir()
    found = expand_systems(["data"], base_dir=tmp_path)
    assert found == [str(tmp_path / p) for p in
                     ("data/a/sys1", "data/a/sys1/nested", "data/b/sys2", "data/c")]
    assert expand_systems(str(tmp_path / "data/c")) == [str(tmp_path / "data/c")]
    systems = load_systems(["data/c", "data/b"], base_dir=tmp_path, threads=2)
    assert [s.name for s in systems] == [str(tmp_path / "data/c"), str(tmp_path / "data/b/sys2")]
