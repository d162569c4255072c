"""Every data error names the file (or setting) and says what was expected."""
from __future__ import annotations

import re

import numpy as np
import pytest

from dpx.data import check_labels, expand_systems, load_systems, read_system

ATYPE = [0, 1, 1]


def _set(tmp_path, name="s"):
    return tmp_path / name / "set.000"


def test_missing_type_raw(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    (tmp_path / "s" / "type.raw").unlink()
    with pytest.raises(FileNotFoundError, match=r"s/type\.raw is missing"):
        read_system(path)


def test_missing_coord(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    (_set(tmp_path) / "coord.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"set\.000/coord\.npy is missing"):
        read_system(path)


def test_missing_box_unless_nopbc(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    (_set(tmp_path) / "box.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"set\.000/box\.npy is missing.*nopbc"):
        read_system(path)
    (tmp_path / "s" / "nopbc").touch()
    assert read_system(path).box is None


def test_no_set_folder(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    _set(tmp_path).rename(tmp_path / "s" / "frames")
    with pytest.raises(FileNotFoundError, match=r"/s: no set\.\* folder"):
        read_system(path)


def test_force_with_wrong_columns(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    np.save(_set(tmp_path) / "force.npy", np.zeros((3, 8)))
    with pytest.raises(ValueError, match=r"set\.000/force\.npy: shape \(3, 8\), expected 3 "
                                         r"frames x 9 values"):
        read_system(path)


@pytest.mark.parametrize("name", ["coord.npy", "energy.npy"])
def test_empty_or_cut_npy_names_the_file(npy_system, tmp_path, name):
    path, _ = npy_system("s", ATYPE)
    (_set(tmp_path) / name).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"set\.000/{name}: cannot read as a \.npy array: "
                                         rf"the file is empty"):
        read_system(path)
    whole = np.lib.format.magic(1, 0) + b"\x76\x00{'descr': '<f8', 'fortran_order': False"
    (_set(tmp_path) / name).write_bytes(whole)
    with pytest.raises(ValueError, match=rf"set\.000/{name}: cannot read as a \.npy array"):
        read_system(path)


@pytest.mark.parametrize("given", [[], ["energy"]])
def test_a_label_the_loss_weights_must_be_in_some_set(npy_system, given):
    """DeePMD-kit's find_force rule: a set without force.npy adds no force term; a system
    with none anywhere is refused while the loss weights forces."""
    path, _ = npy_system("s", ATYPE, (2, 2), labels=given)
    systems = load_systems([path])
    weighted = {"force": "loss/start_pref_f and limit_pref_f"}
    with pytest.raises(ValueError, match=r"training/training_data/systems: system .*/s has no "
                                         r"force\.npy in any set, and loss/start_pref_f and "
                                         r"limit_pref_f weight it"):
        check_labels(systems, weighted, "training/training_data/systems")
    check_labels(systems, {}, "training/training_data/systems")  # prefactor 0: accepted


def test_a_label_in_some_sets_is_enough(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE, (2, 2))
    (tmp_path / "s" / "set.001" / "force.npy").unlink()
    check_labels(load_systems([path]), {"force": "f"}, "k")


def test_frame_count_disagreement_names_both_files(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    np.save(_set(tmp_path) / "energy.npy", np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"set\.000/energy\.npy has 2 frames but .*"
                                         r"set\.000/coord\.npy has 3"):
        read_system(path)


def test_type_raw_disagrees_with_coord(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    (tmp_path / "s" / "type.raw").write_text("0 1 1 1\n")
    with pytest.raises(ValueError, match=r"coord\.npy: shape \(3, 9\) does not hold 4 atoms"
                                         r".*type\.raw"):
        read_system(path)


@pytest.mark.parametrize("key", ["coord", "box", "energy", "force", "virial"])
def test_nan_or_inf_names_file_and_frame(npy_system, tmp_path, key):
    path, ref = npy_system("s", ATYPE, (4,))
    arr = ref[key].copy()
    arr[2, ...] = np.inf if key == "virial" else np.nan
    np.save(_set(tmp_path) / f"{key}.npy", arr)
    with pytest.raises(ValueError, match=rf"set\.000/{key}\.npy: NaN or inf in frame 2"):
        read_system(path)


def test_singular_box(npy_system, tmp_path):
    path, ref = npy_system("s", ATYPE, (2,))
    box = ref["box"].copy()
    box[1] = 0
    np.save(_set(tmp_path) / "box.npy", box)
    with pytest.raises(ValueError, match=r"box\.npy: frame 1 has a singular cell"):
        read_system(path)


def test_element_missing_from_model_type_map(npy_system):
    path, _ = npy_system("s", ATYPE, names=["O", "H"])
    with pytest.raises(ValueError, match=r"/s: element\(s\) \['H'\] of type_map\.raw are not "
                                         r"in the model type_map \['O', 'C'\]"):
        read_system(path, type_map=["O", "C"])


def test_type_index_beyond_type_map(npy_system):
    path, _ = npy_system("s", [0, 1, 2])
    with pytest.raises(ValueError, match=r"/s: type\.raw uses type 2 but the model type_map "
                                         r"has only 2"):
        read_system(path, type_map=["O", "H"])
    path, _ = npy_system("t", [0, 1, 2], names=["O", "H"])
    with pytest.raises(ValueError, match=r"type\.raw uses type 2 but type_map\.raw lists only 2"):
        read_system(path)


def test_bad_type_raw(npy_system, tmp_path):
    path, _ = npy_system("s", ATYPE)
    (tmp_path / "s" / "type.raw").write_text("O H H\n")
    with pytest.raises(ValueError, match=r"s/type\.raw: expected integer atom types"):
        read_system(path)


def test_discovery_errors(npy_system, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"training_data/systems: 'empty' .* contains no "
                                                r"system"):
        expand_systems(["empty"], base_dir=tmp_path, key="training_data/systems")
    with pytest.raises(FileNotFoundError, match=r"systems: 'nope' does not exist \(looked for "
                                                + re.escape(str(tmp_path / "nope"))):
        expand_systems("nope", base_dir=tmp_path)
    with pytest.raises(ValueError, match="no systems given"):
        load_systems([])


def test_hdf5_missing_group(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_group("a")
    with pytest.raises(FileNotFoundError, match=r"d\.h5: no group '/x'"):
        expand_systems(str(tmp_path / "d.h5#/x"))
    with pytest.raises(FileNotFoundError, match=r"d\.h5' .* contains no system"):
        expand_systems(str(tmp_path / "d.h5"))
