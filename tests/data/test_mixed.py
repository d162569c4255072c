"""deepmd/npy/mixed systems (set.*/real_atom_types.npy): each frame's own types, read as one
System per composition. Before, every atom was read as type 0 from the placeholder type.raw."""
import numpy as np
import pytest

from dpx.data import load_systems, read_system, read_systems
from tests.data.conftest import write_npy_system


def write_mixed(path, real_types, seed=0):
    """A mixed-type system: type.raw all 0 (placeholder), type_map.raw O H, one set whose
    real_atom_types.npy holds `real_types` [nf, natoms]."""
    real = np.asarray(real_types)
    arrays = write_npy_system(path, np.zeros(real.shape[1], dtype=int), (len(real),),
                              names=["O", "H"], seed=seed)
    np.save(path / "set.000" / "real_atom_types.npy", real)
    return arrays


def test_frames_keep_their_own_types(tmp_path):
    real = [[0, 1, 1, 0], [1, 1, 1, 0], [0, 1, 1, 0], [1, 1, 1, 1]]
    arrays = write_mixed(tmp_path / "mixed", real)
    systems = read_systems(str(tmp_path / "mixed"), type_map=["O", "H"], sort_atoms=False)
    assert [s.name.rsplit("[", 1)[1] for s in systems] == ["O2H2]", "O1H3]", "H4]"]
    assert [s.nframes for s in systems] == [2, 1, 1]
    np.testing.assert_array_equal(systems[0].atype, [0, 1, 1, 0])
    np.testing.assert_array_equal(systems[1].atype, [1, 1, 1, 0])
    coord = arrays["coord"].reshape(4, 4, 3)
    np.testing.assert_array_equal(systems[0].coord, coord[[0, 2]])
    np.testing.assert_array_equal(systems[2].labels["energy"][:, 0], arrays["energy"][[3]])
    # sorted for training: each composition's atoms by type, labels following them
    (first, *_) = load_systems([str(tmp_path / "mixed")], type_map=["H", "O"])
    np.testing.assert_array_equal(first.atype, [0, 0, 1, 1])  # H H O O in the model's map
    np.testing.assert_array_equal(first.coord, coord[[0, 2]][:, [1, 2, 0, 3]])


def test_mixed_errors(tmp_path):
    write_mixed(tmp_path / "m", [[0, 1], [1, -1]])
    with pytest.raises(ValueError, match="virtual atoms"):
        read_systems(str(tmp_path / "m"))
    write_mixed(tmp_path / "two", [[0, 1], [1, 1]])
    with pytest.raises(ValueError, match="2 compositions; read_systems"):
        read_system(str(tmp_path / "two"))
    (tmp_path / "two" / "type_map.raw").unlink()
    with pytest.raises(FileNotFoundError, match="type_map.raw is missing: a mixed-type"):
        read_systems(str(tmp_path / "two"))
