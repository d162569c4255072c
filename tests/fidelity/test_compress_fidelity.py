"""`dpx compress` against DeePMD-kit 3.2.0's `dp --pt compress` of the same checkpoint
(se_e2_a with type_one_side true and false, exclude_types, resnet_dt; se_e2_r): the two
compressed models give the same energies, forces and virials per atom (1e-10, float64: the
same tables), DeePMD-kit's DeepPot runs dpx's compressed file on its own C++ ops
(tabulate_fusion_se_a, _se_r), and both are within the table's error of the uncompressed
model."""
import copy

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from tests.fidelity.conftest import deepmd_eval, dp, single_input, write_json
from tests.fidelity.test_deepmd_fidelity import assert_same, dpx_eval

pytestmark = pytest.mark.slow
SE_R = {"type": "se_e2_r", "sel": [20, 40], "rcut_smth": 0.5, "rcut": 4.0, "neuron": [4, 8],
        "resnet_dt": False, "seed": 1}


@pytest.fixture(scope="module",
                params=["type_one_side", "two_side", "exclude_types", "resnet_dt", "se_e2_r"])
def trained(request, tmp_path_factory, toy_data):
    run = tmp_path_factory.mktemp(f"compress_{request.param}")
    cfg = single_input(toy_data)
    descriptor = cfg["model"]["descriptor"]
    if request.param == "two_side":
        descriptor["type_one_side"] = False
    elif request.param == "exclude_types":  # the O-H nets excluded: their slots add nothing
        descriptor.update(type_one_side=False, exclude_types=[[0, 1]])
    elif request.param == "resnet_dt":      # neuron 4-8-16: both skips doubled, with idt
        descriptor["resnet_dt"] = True
    elif request.param == "se_e2_r":
        cfg["model"]["descriptor"] = copy.deepcopy(SE_R)
    cfg["training"].update(save_ckpt=str(run / "model.ckpt"), disp_file=str(run / "lcurve.out"))
    assert main(["train", str(write_json(run / "input.json", cfg)),
                 "-o", str(run / "out.json")]) == 0
    return run


def test_compressed_equals_deepmd(trained, toy_data, request):
    run, system = trained, toy_data / "sys_b"
    ckpt = run / "model.ckpt-3.pt"
    assert main(["compress", "-i", str(ckpt), "-o", str(run / "dpx_c.pth")]) == 0
    dp("--pt", "freeze", "-c", ckpt, "-o", run / "dp_f.pth", cwd=run)
    dp("--pt", "compress", "-i", run / "dp_f.pth", "-o", run / "dp_c.pth", cwd=run)
    ours = dpx_eval(run / "dpx_c.pth", system)
    theirs = deepmd_eval(run / "dp_c.pth", system)
    assert_same(deepmd_eval(run / "dpx_c.pth", system), ours)  # DeePMD-kit's op on our tables
    if request.node.callspec.params["trained"] == "resnet_dt":
        # DeePMD-kit 3.2.0's own compression of a resnet_dt embedding net is not its model
        # (0.5 eV off in energy on these frames, 0.4 eV/A in force, measured 2026-12-02);
        # dpx's compressed file is, also run by DeePMD-kit. If this starts to fail, DeePMD-kit
        # fixed it: compare its tables as below for this case too.
        uncompressed = deepmd_eval(run / "dp_f.pth", system)
        assert np.abs(theirs["force"] - uncompressed["force"]).max() > 1e-3
        assert np.abs(ours["force"] - uncompressed["force"]).max() < 1e-8
        assert np.abs(ours["energy"] - uncompressed["energy"]).max() < 1e-8
        return
    assert_same(ours, theirs)
    # the same tables: ranges exactly; coefficients a_c as their terms a_c h^c at the end of
    # an interval of width h (a5 is divided by h^5 = 1e-10, so it keeps fewer of its bits
    # than the value it adds up to)
    from dpx.io import load_model
    ours_sd = load_model(run / "dpx_c.pth")[0].module.state_dict()
    theirs_sd = load_model(run / "dp_c.pth")[0].module.state_dict()
    tables = [k for k in ours_sd if k.endswith(".table")]
    assert tables
    for key in tables:
        k = key.split(".")[-2]
        prefix = key.rsplit(".filter_layers.", 1)[0]
        info = theirs_sd[f"{prefix}.compress_info.{k}"]
        assert ours_sd[key.replace(".table", ".info")].tolist() == info.tolist(), key
        lower, upper, _, stride0, stride1 = info.tolist()[:5]
        ours_t, theirs_t = ours_sd[key], theirs_sd[f"{prefix}.compress_data.{k}"]
        h = torch.full((ours_t.shape[0], 1), stride1, dtype=torch.float64)
        h[:int((upper - lower) / stride0)] = stride0
        powers = h ** (torch.arange(ours_t.shape[1]) % 6)
        np.testing.assert_allclose((ours_t * powers).numpy(), (theirs_t * powers).numpy(),
                                   rtol=0, atol=1e-12, err_msg=key)
    uncompressed = dpx_eval(ckpt, system)
    # tables of stride 0.01 / 0.1 (fifth order): far below any model error
    assert np.abs(ours["energy"] - uncompressed["energy"]).max() < 1e-8
    assert np.abs(ours["force"] - uncompressed["force"]).max() < 1e-8


def shell_system(path):
    """One frame, O only: a center whose 20 O neighbors fill sel [20, 40] exactly, the last
    six (+-2.5 A on the axes) at one distance, to the last bit. A real neighbor then repeats
    the last slot's s; DeePMD-kit's fold waits for a slot with R[1:4] = 0 (padding)."""
    sites = [np.zeros(3)]
    sites += [1.2 * np.array(c) for c in np.ndindex(2, 2, 2)]
    sites[1:] = [2 * c - 1.2 for c in sites[1:]]  # the cube's corners, +-1.2
    for r in (1.8, 2.5):
        for axis in range(3):
            for sign in (1.0, -1.0):
                sites.append(np.eye(3)[axis] * sign * r)
    coord = np.array(sites) + 10.0
    (path / "set.000").mkdir(parents=True)
    (path / "type.raw").write_text("0\n" * len(coord))
    (path / "type_map.raw").write_text("O\nH\n")
    np.save(path / "set.000" / "coord.npy", coord.reshape(1, -1))
    np.save(path / "set.000" / "box.npy", (20.0 * np.eye(3)).reshape(1, -1))
    np.save(path / "set.000" / "energy.npy", np.zeros(1))
    np.save(path / "set.000" / "force.npy", np.zeros((1, coord.size)))
    return path


def test_a_shell_that_fills_sel_as_deepmd(trained, request, tmp_path):
    """dpx's compressed se_e2_a (its own kernel) gives DeePMD-kit's numbers (its op, on the
    same file) and the uncompressed model's where a real neighbor ties the last slot."""
    if request.node.callspec.params["trained"] not in ("type_one_side", "two_side"):
        pytest.skip("one se_e2_a per side is enough")
    ckpt, system = trained / "model.ckpt-3.pt", shell_system(tmp_path / "shell")
    assert main(["compress", "-i", str(ckpt), "-o", str(tmp_path / "c.pth")]) == 0
    ours = dpx_eval(tmp_path / "c.pth", system)
    assert_same(ours, deepmd_eval(tmp_path / "c.pth", system))
    uncompressed = dpx_eval(ckpt, system)
    assert np.abs(ours["force"] - uncompressed["force"]).max() < 1e-8
