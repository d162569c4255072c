"""`dpx compress` end to end on data the test makes: from a checkpoint and from a frozen file,
the compressed model's energies, forces and virials per atom equal the uncompressed model's
within the table's error (1e-10 here; the bound is in dpx.model.tabulate), `dpx test` and
`dpx show` read the file, and bad input is refused by name. Against DeePMD-kit's `dp --pt
compress`: tests/fidelity/test_compress_fidelity.py; in LAMMPS: tests/lammps."""
import json

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from dpx.compress.compress import _min_nbor_dist
from dpx.data import load_systems
from dpx.data.synthetic import make_dataset
from dpx.export.frozen import FrozenEnergyModel
from dpx.infer.evaluate import evaluate
from dpx.io import load_model
from tests.export.test_frozen import assert_close, lammps_case, make_model


@pytest.fixture(scope="module", params=["se_e2_a", "se_e2_r"])
def trained(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"compress_{request.param}")
    make_dataset(root / "data", nsystems=1, nframes=4, nvalid=2, seed=0, calculator="morse")
    desc = {"type": request.param, "sel": [16, 32], "rcut": 4.0, "rcut_smth": 0.5,
            "neuron": [4, 8, 16], "seed": 1}
    if request.param == "se_e2_a":
        desc.update(axis_neuron=4, type_one_side=False)
    cfg = {"model": {"type_map": ["O", "H"], "descriptor": desc,
                     "fitting_net": {"neuron": [8, 8], "seed": 1}},
           "learning_rate": {"start_lr": 1e-3, "decay_steps": 100},
           "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                    "limit_pref_f": 1},
           "training": {"training_data": {"systems": [str(root / "data" / "train")],
                                          "batch_size": 1},
                        "numb_steps": 4, "disp_freq": 2, "save_freq": 4, "seed": 1,
                        "save_ckpt": str(root / "model.ckpt"),
                        "disp_file": str(root / "lcurve.out")}}
    (root / "input.json").write_text(json.dumps(cfg))
    assert main(["train", str(root / "input.json"), "-o", str(root / "out.json")]) == 0
    return root


def test_compressed_equals_uncompressed(trained):
    root = trained
    ckpt = root / "model.ckpt-4.pt"
    assert main(["freeze", "-c", str(ckpt), "-o", str(root / "f.pth")]) == 0
    assert main(["compress", "-i", str(ckpt), "-o", str(root / "c.pth")]) == 0
    assert main(["compress", "-i", str(root / "f.pth"), "-o", str(root / "c2")]) == 0
    (sys,) = load_systems(str(root / "data" / "valid"), type_map=["O", "H"], sort_atoms=False)
    ref = evaluate(load_model(ckpt)[0], sys.coord, sys.atype, sys.box, atomic_virial=True)
    for name in ("c.pth", "c2.pth"):
        out = evaluate(load_model(root / name)[0], sys.coord, sys.atype, sys.box,
                       atomic_virial=True)
        for key in ref:
            assert np.abs(out[key] - ref[key]).max() <= 1e-10 * max(1, np.abs(ref[key]).max())
    assert main(["test", "-m", str(root / "c.pth"), "-s", str(root / "data" / "valid")]) == 0
    assert main(["show", str(root / "c.pth")]) == 0


def test_bad_input_is_named(trained, capsys):
    root = trained
    capsys.readouterr()
    assert main(["compress", "-i", str(root / "model.ckpt-4.pt"), "-s", "0"]) == 2
    assert "-s/--step must be > 0" in capsys.readouterr().err
    model, _ = load_model(root / "model.ckpt-4.pt")
    model.min_nbor_dist.fill_(-1.0)  # as in a model that did not record it
    with pytest.raises(ValueError, match="give the training input with -t"):
        _min_nbor_dist(model, None, "m.pt")
    found = _min_nbor_dist(model, str(root / "input.json"), "m.pt")
    assert found == pytest.approx(float(load_model(root / "model.ckpt-4.pt")[0].min_nbor_dist))


@pytest.mark.parametrize("sel", [(12, 24), (3, 5)])  # (3, 5): types overflow sel
@pytest.mark.parametrize("options", [{}, {"type_one_side": True}, {"exclude": [(0, 1)]},
                                     {"pair_exclude": [(0, 1)]}])
def test_compressed_forward_lower_on_raw_lists(sel, options):
    """LAMMPS' path: a compressed se_e2_a file on a raw list (rows shuffled, entries beyond
    rcut, -1 padded wider) equals the uncompressed model on DeePMD-kit's sorted list. The
    table + contraction op stops at the first row that repeats a section's last row
    (dpx.ops.reference has DeePMD-kit's rule), so this fails if any padding row of the
    typed list came before a filled one."""
    model = make_model(sel=sel, **options)
    nl, raw, typed, ref = lammps_case(model)
    centers = nl.ext_coord[0, :typed.shape[1], None, :]
    dist = (nl.ext_coord[0, typed[0].clamp(min=0)] - centers).norm(dim=-1)[typed[0] >= 0]
    frozen = FrozenEnergyModel.from_model(model, "{}")
    frozen.atomic_model.descriptor.enable_compression(float(dist.min()) * 0.99)
    out = torch.jit.script(frozen).forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping,
                                                 do_atomic_virial=True)
    for key in ("energy", "atom_energy", "extended_force", "virial", "extended_virial"):
        assert_close(out[key], ref[key], key)
