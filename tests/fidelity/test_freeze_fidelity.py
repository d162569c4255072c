"""`dpx freeze` against DeePMD-kit 3.2.0: DeePMD-kit's tools load the dpx-frozen file and give
the numbers of DeePMD-kit's own freeze of the same checkpoint."""
import numpy as np
import pytest
import torch

from dpx import ops
from dpx.cli.main import main
from tests.export.test_frozen import raw_nlist
from tests.fidelity.conftest import RUNNER, deepmd_eval, dp, oracle
from tests.fidelity.test_deepmd_fidelity import dp_single, dpx_single  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
TOL = 1e-10


@pytest.fixture(scope="module")
def frozen_pair(dpx_single):  # noqa: F811 (the imported fixture)
    """(dpx-frozen .pth, DeePMD-frozen .pth) of one dpx checkpoint."""
    run = dpx_single.parent
    assert main(["freeze", "-c", str(dpx_single), "-o", str(run / "dpx_frozen.pth")]) == 0
    dp("--pt", "freeze", "-c", dpx_single, "-o", run / "dp_frozen.pth", cwd=run)
    return run / "dpx_frozen.pth", run / "dp_frozen.pth"


def assert_same(a: np.ndarray, b: np.ndarray, key: str, tol: float = TOL):
    scale = max(np.abs(b).max(), 1.0)
    assert np.abs(a - b).max() <= tol * scale, (key, np.abs(a - b).max(), scale)


@pytest.mark.parametrize("nlist_backend", ["vesin", "native"])
@pytest.mark.parametrize("system", ["sys_a", "sys_b"])
def test_deeppot_loads_dpx_frozen_model(frozen_pair, toy_data, system, nlist_backend):
    """Both of DeepPot's paths: with vesin (a stock install's default) it builds the list and
    calls forward_common_lower; natively it calls forward."""
    ours, theirs = (deepmd_eval(p, toy_data / system, nlist_backend=nlist_backend)
                    for p in frozen_pair)
    for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):  # per atom
        assert_same(ours[key], theirs[key], key)


def test_deepmd_ase_calculator_on_dpx_frozen_model(frozen_pair, toy_data):
    """DeePMD-kit's ASE calculator on dpx's frozen file equals dpx's calculator on it and
    DeePMD-kit's calculator on its own freeze."""
    pytest.importorskip("ase")
    from ase import Atoms

    from dpx.calculator import DPX
    ours, theirs = (deepmd_eval(p, toy_data / "sys_b", evaluator="ase") for p in frozen_pair)
    for key in ("energy", "force", "stress"):
        assert_same(ours[key], theirs[key], key)
    system = toy_data / "sys_b"
    coord = np.load(system / "set.000" / "coord.npy")[0].reshape(-1, 3)
    box = np.load(system / "set.000" / "box.npy")[0].reshape(3, 3)
    names = (system / "type_map.raw").read_text().split()
    atype = np.loadtxt(system / "type.raw", dtype=int)
    atoms = Atoms([names[t] for t in atype], positions=coord, cell=box, pbc=True)
    atoms.calc = DPX(str(frozen_pair[0]))
    assert_same(np.array(atoms.get_potential_energy()), ours["energy"][0], "energy")
    assert_same(atoms.get_forces(), ours["force"][0], "force")
    assert_same(atoms.get_stress(), ours["stress"][0], "stress")


def test_dpx_reads_deepmd_frozen_and_compressed(frozen_pair, toy_data, tmp_path, capsys):
    """DeePMD-kit's frozen file names its op library's ops: dpx loads it without them and
    gives DeepPot's numbers; its compressed file (`dp --pt compress`) runs on dpx's PyTorch
    tabulate ops and gives DeepPot's numbers on DeePMD-kit's C++ ops (per atom, 1e-10), within
    the table's error of the uncompressed model."""
    from dpx.data import load_systems
    from dpx.infer.evaluate import evaluate
    from dpx.io import load_model
    theirs = frozen_pair[1]
    model, _ = load_model(theirs)
    (system,) = load_systems(str(toy_data / "sys_b"), type_map=model.type_map, sort_atoms=False)
    ours = evaluate(model, system.coord, system.atype, system.box, atomic_virial=True)
    ref = deepmd_eval(theirs, toy_data / "sys_b")
    for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):
        assert_same(ours[key], ref[key], key)
    compressed = tmp_path / "compressed.pth"
    dp("--pt", "compress", "-i", theirs, "-o", compressed, cwd=tmp_path)
    tabulated, _ = load_model(compressed)
    ours_c = evaluate(tabulated, system.coord, system.atype, system.box, atomic_virial=True)
    for backend in ("auto", "native"):
        ref_c = deepmd_eval(compressed, toy_data / "sys_b", nlist_backend=backend)
        for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):
            assert_same(ours_c[key], ref_c[key], key)
    # the table (stride 0.01, fifth order) is exact to far below the model's error
    assert np.abs(ours_c["energy"] - ours["energy"]).max() < 1e-6
    assert np.abs(ours_c["force"] - ours["force"]).max() < 1e-6
    assert main(["test", "-m", str(compressed), "-s", str(toy_data / "sys_b")]) == 0
    assert main(["show", str(compressed)]) == 0


def test_dp_test_equals_dpx_test(frozen_pair, toy_data, tmp_path):
    model = frozen_pair[0]
    dp("--pt", "test", "-m", model, "-s", toy_data / "sys_b", "-d", tmp_path / "dp", cwd=tmp_path)
    assert main(["test", "-m", str(model), "-s", str(toy_data / "sys_b"),
                 "-d", str(tmp_path / "dpx")]) == 0
    for suffix in (".e.out", ".f.out", ".v.out"):
        ours, theirs = (np.loadtxt(tmp_path / f"{p}{suffix}") for p in ("dpx", "dp"))
        assert_same(ours, theirs, suffix, tol=1e-8)


def test_forward_lower_and_atomic_virial_equal_deepmd(frozen_pair, toy_data):
    """LAMMPS' call: a raw, shuffled list within rcut + skin, per-atom virial requested."""
    ours, theirs = (torch.jit.load(str(p)) for p in frozen_pair)
    coord = torch.tensor(np.load(toy_data / "sys_b" / "set.000" / "coord.npy")[:1]).view(1, -1, 3)
    box = torch.tensor(np.load(toy_data / "sys_b" / "set.000" / "box.npy")[:1])
    atype = torch.tensor(np.loadtxt(toy_data / "sys_b" / "type.raw", dtype=np.int64))[None]
    rcut = ours.get_rcut()
    nl = ops.neighbor_list(coord, atype, box, rcut + 2.0, [500, 500])
    raw = raw_nlist(nl.ext_coord, nl.ext_atype, atype.shape[1], rcut + 2.0)
    args = (nl.ext_coord.detach(), nl.ext_atype, raw, nl.mapping)
    a = ours.forward_lower(*args, do_atomic_virial=True)
    b = theirs.forward_lower(*args, do_atomic_virial=True)
    for key in ("energy", "atom_energy", "extended_force", "virial", "extended_virial", "mask"):
        assert_same(a[key].detach().numpy(), b[key].detach().numpy(), key)


def test_freezes_deepmd_checkpoint(dp_single, toy_data, tmp_path):  # noqa: F811 (fixture)
    assert main(["freeze", "-c", str(dp_single), "-o", str(tmp_path / "f.pth")]) == 0
    ours = deepmd_eval(tmp_path / "f.pth", toy_data / "sys_b")
    theirs = deepmd_eval(dp_single, toy_data / "sys_b")
    for key in ("energy", "force", "virial", "atom_energy"):
        assert_same(ours[key], theirs[key], key)


def test_runner_sees_same_interface(frozen_pair):
    """The methods DeePMD-kit's DeepEval and DeepPotPT call answer like DeePMD-kit's model."""
    code = ("import sys, torch, deepmd.pt  # its op library: its frozen file names the ops\n"
            "a, b = (torch.jit.load(p) for p in sys.argv[1:3])\n"
            "for name in ['get_rcut', 'get_type_map', 'get_ntypes', 'get_dim_fparam',\n"
            "             'get_dim_aparam', 'is_aparam_nall', 'has_message_passing', 'get_sel',\n"
            "             'get_nnei', 'get_nsel', 'model_output_type', 'get_min_nbor_dist',\n"
            "             'get_observed_type_list', 'get_sel_type', 'has_default_fparam',\n"
            "             'get_dim_chg_spin', 'has_chg_spin_ebd', 'has_default_chg_spin']:\n"
            "    x, y = getattr(a, name)(), getattr(b, name)()\n"
            "    assert x == y, (name, x, y)\n"
            "assert set(a.state_dict()) == set(b.state_dict())\n")
    oracle("-c", code, *frozen_pair)
    assert RUNNER.exists()
