"""Frame and atomic parameters (fitting_net/numb_fparam, numb_aparam) and the multi-task case
embedding (dim_case_embd): where they enter the fitting input (against a hand-built
concatenation, deepmd-compat §5.2), default_fparam, their statistics (against numpy), the
clear errors for inputs and data that do not fit, and the command-line path (train, test,
freeze, ASE calculator) on data the test makes."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from dpx.config import EnergyFittingConfig
from dpx.config.load import parse_input
from dpx.config.schema import ConfigError, parse
from dpx.data import check_parameters, load_systems
from dpx.data.synthetic import make_dataset
from dpx.infer.evaluate import evaluate, system_parameters
from dpx.io import load_model
from dpx.model.fitting.ener import EnergyFittingNet

DIM = 6
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "small_water"


def fitting(**keys) -> EnergyFittingNet:
    cfg = parse(EnergyFittingConfig, dict({"neuron": [5, 5], "seed": 2, "precision": "float64"},
                                          **keys), "model/fitting_net")
    net = EnergyFittingNet(cfg, 2, DIM)
    g = torch.Generator().manual_seed(4)
    for name in ("fparam", "aparam"):
        if getattr(net, f"{name}_avg") is not None:
            getattr(net, f"{name}_avg").copy_(torch.rand(getattr(net, f"numb_{name}"),
                                                         generator=g, dtype=torch.float64))
            getattr(net, f"{name}_inv_std").uniform_(0.5, 2.0, generator=g)
    net.bias_atom_e.copy_(torch.tensor([[0.3], [-0.2]]))
    return net


def inputs(nf=2, nloc=5, nfp=2, nap=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(nf, nloc, DIM, generator=g, dtype=torch.float64)
    atype = torch.tensor([[0, 1, 1, 0, 1]] * nf)[:, :nloc]
    fp = torch.rand(nf, nfp, generator=g, dtype=torch.float64)
    ap = torch.rand(nf, nloc, nap, generator=g, dtype=torch.float64)
    return d, atype, fp, ap


def by_hand(net, d, atype, fp, ap, vacuum=False):
    """e_i = NN_t(D_i (+) norm(fparam) (+) norm(aparam_i)) + bias_t, atom by atom."""
    nf, nloc = atype.shape
    out = torch.zeros(nf, nloc, 1, dtype=torch.float64)
    for f in range(nf):
        for i in range(nloc):
            t = int(atype[f, i])
            parts = [(fp[f] - net.fparam_avg) * net.fparam_inv_std,
                     (ap[f, i] - net.aparam_avg) * net.aparam_inv_std]
            if net.case_embd is not None:
                parts.append(net.case_embd)
            x = torch.cat([d[f, i]] + parts)[None]
            e = net.filter_layers.networks[t](x)
            if vacuum:
                e = e - net.filter_layers.networks[t](torch.cat([0 * d[f, i]] + parts)[None])
            out[f, i] = e[0] + net.bias_atom_e[t]
    return out


@pytest.mark.parametrize("atom_ener", [[], [None, -1.0]])
def test_parameters_follow_the_descriptor(atom_ener):
    net = fitting(numb_fparam=2, numb_aparam=3, atom_ener=atom_ener)
    d, atype, fp, ap = inputs()
    got = net(d, atype, fp, ap)
    want = by_hand(net, d, atype, fp, ap, vacuum=False)
    if atom_ener:  # type 1's net loses its output at zero descriptor (same parameters)
        vac = by_hand(net, d, atype, fp, ap, vacuum=True)
        want = torch.where(atype[..., None] == 1, vac, want)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    # the parameters matter: another fparam gives other energies
    assert not torch.allclose(net(d, atype, fp + 1.0, ap), got)


def test_case_embedding_follows_the_parameters():
    net = fitting(numb_fparam=2, numb_aparam=3, dim_case_embd=3, atom_ener=[-1.0])
    net.set_case_embd(2)
    assert net.case_embd.tolist() == [0.0, 0.0, 1.0]
    d, atype, fp, ap = inputs()
    # atom_ener [-1.0]: type 0 given, type 1 past the end of the list: both lose the vacuum
    want = by_hand(net, d, atype, fp, ap, vacuum=True)
    assert torch.allclose(net(d, atype, fp, ap), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="dim_case_embd 3 has no case 3"):
        net.set_case_embd(3)


def multi_task_input(fitting_a: dict, fitting_b: dict) -> dict:
    cfg = json.loads((EXAMPLE / "input_multi.json").read_text())
    cfg["model"]["model_dict"]["small"]["fitting_net"].update(fitting_a)
    cfg["model"]["model_dict"]["large"]["fitting_net"].update(fitting_b)
    return cfg


@pytest.mark.parametrize("a,b,match", [
    (2, 3, "large/fitting_net/dim_case_embd: is 3, branch 'small' has 2"),
    (1, 1, "small/fitting_net/dim_case_embd: is 1, fewer than the 2 branches"),
])
def test_case_embd_widths_are_checked(a, b, match):
    with pytest.raises(ConfigError, match=match):
        parse_input(multi_task_input({"dim_case_embd": a}, {"dim_case_embd": b}))


def test_new_multitask_run_sets_cases_by_sorted_key(tmp_path, monkeypatch):
    """Each branch's case is the one-hot vector of its key's place in sorted order (large 0,
    small 1); the branches then differ, though they share every fitting weight."""
    make_dataset(tmp_path / "data", nsystems=2, nframes=3, nvalid=1, seed=0, calculator="morse")
    cfg = multi_task_input({}, {})
    shared = dict(cfg["model"]["model_dict"]["small"]["fitting_net"], neuron=[8, 8],
                  dim_case_embd=2)
    cfg["model"]["shared_dict"]["fit"] = shared
    cfg["model"]["shared_dict"]["sea_descriptor"].update(neuron=[4, 8], axis_neuron=4)
    for branch in cfg["model"]["model_dict"].values():
        branch["fitting_net"] = "fit"
    cfg["training"].update(numb_steps=1, save_freq=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    assert main(["train", "input.json"]) == 0
    for key, index in (("large", 0), ("small", 1)):
        model, _ = load_model(tmp_path / "model.ckpt-1.pt", key)
        fit = model.atomic_model.fitting_net
        assert fit.case_embd.tolist() == [1.0 * (i == index) for i in range(2)], key
    # a restart keeps the checkpoint's cases
    cfg["training"]["numb_steps"] = 2
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    assert main(["train", "input.json", "--restart", "model.ckpt-1.pt"]) == 0
    model, _ = load_model(tmp_path / "model.ckpt-2.pt", "small")
    assert model.atomic_model.fitting_net.case_embd.tolist() == [0.0, 1.0]


def test_default_fparam_stands_in_for_a_missing_fparam():
    net = fitting(numb_fparam=2, default_fparam=[0.25, -1.5])
    d, atype, fp, _ = inputs()
    default = torch.tensor([0.25, -1.5], dtype=torch.float64).expand(2, 2)
    assert torch.equal(net(d, atype), net(d, atype, default))
    with pytest.raises(ValueError, match="numb_aparam 1"):
        fitting(numb_aparam=1)(d, atype)
    with pytest.raises(ValueError, match="numb_fparam 2"):
        fitting(numb_fparam=2)(d, atype)


def test_statistics_are_mean_and_protected_std():
    net = fitting(numb_fparam=2, numb_aparam=1)
    rng = np.random.default_rng(1)
    frames = [{"fparam": rng.normal(size=(3, 2)) * [1.0, 0.0] + [0.0, 7.0],
               "aparam": rng.normal(2.0, 3.0, size=(3, 4, 1)), "find_fparam": 1.0}
              for _ in range(3)]
    frames.append({"fparam": np.full((3, 2), 99.0), "find_fparam": 0.0,  # a set without it
                   "aparam": rng.normal(2.0, 3.0, size=(3, 4, 1))})
    sums = net.input_sums(lambda: frames)
    net.set_input_stats(sums, protection=1e-2)
    fp = np.concatenate([f["fparam"] for f in frames[:3]])
    ap = np.concatenate([f["aparam"].reshape(-1) for f in frames])
    assert np.allclose(net.fparam_avg.numpy(), fp.mean(0), atol=1e-12)
    # the constant component's std is floored at data_stat_protect
    assert np.allclose(net.fparam_inv_std.numpy(), [1 / fp[:, 0].std(), 1 / 1e-2], rtol=1e-10)
    assert np.allclose(net.aparam_avg.numpy(), [ap.mean()], atol=1e-12)
    assert np.allclose(net.aparam_inv_std.numpy(), [1 / ap.std()], rtol=1e-10)
    with pytest.raises(ValueError, match="no fparam"):
        net.input_sums(lambda: frames[3:])


@pytest.mark.parametrize("keys,match", [
    ({"numb_fparam": -1}, "numb_fparam"),
    ({"numb_fparam": 2, "default_fparam": [1.0]}, "default_fparam"),
    ({"default_fparam": [1.0]}, "numb_fparam is 0"),
    ({"dim_case_embd": -2}, "dim_case_embd"),
    ({"numb_aparam": 1, "use_aparam_as_mask": True}, "use_aparam_as_mask"),
])
def test_bad_parameter_keys_are_named(keys, match):
    with pytest.raises(ConfigError, match=match):
        parse(EnergyFittingConfig, keys, "model/fitting_net")


# ---------------------------------------------------------------- data and command line
@pytest.fixture(scope="module")
def param_data(tmp_path_factory):
    """Synthetic water with fparam.npy [nf, 2] and aparam.npy [nf, natoms] in every set."""
    root = tmp_path_factory.mktemp("params")
    make_dataset(root, nsystems=1, nframes=6, nvalid=2, seed=0, calculator="morse")
    rng = np.random.default_rng(3)
    for sys in [*(root / "train").iterdir(), *(root / "valid").iterdir()]:
        natoms = len((sys / "type.raw").read_text().split())
        for s in sys.glob("set.*"):
            nf = len(np.load(s / "energy.npy"))
            np.save(s / "fparam.npy", rng.normal(1.0, 0.5, size=(nf, 2)))
            np.save(s / "aparam.npy", rng.normal(0.0, 2.0, size=(nf, natoms)))
    return root


def test_check_parameters_names_the_system(param_data, tmp_path):
    (sys,) = load_systems(str(param_data / "valid"))
    check_parameters([sys], 2, 1, False, "k")
    check_parameters([sys], 0, 0, False, "k")  # parameters the model does not take: ignored
    with pytest.raises(ValueError, match="fparam.npy has 2 values per frame.*numb_fparam 3"):
        check_parameters([sys], 3, 0, False, "training/training_data/systems")
    bare = tmp_path / "bare"
    shutil.copytree(param_data / "valid" / sys.name.split("/")[-1], bare)
    for f in bare.glob("set.*/fparam.npy"):
        f.unlink()
    (bare_sys,) = load_systems(str(bare))
    with pytest.raises(ValueError, match="bare has no fparam.npy.*no default_fparam"):
        check_parameters([bare_sys], 2, 0, False, "training/training_data/systems")
    check_parameters([bare_sys], 2, 0, True, "k")  # default_fparam stands in


def _input(data, fitting_keys, out):
    cfg = {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": [16, 32], "rcut": 4.0,
                                 "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4,
                                 "seed": 1},
                  "fitting_net": dict({"neuron": [8, 8], "seed": 1}, **fitting_keys)},
        "learning_rate": {"start_lr": 1e-3, "decay_steps": 100},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(data / "train")], "batch_size": 1},
                     "validation_data": {"systems": [str(data / "valid")], "batch_size": 1},
                     "numb_steps": 2, "disp_freq": 1, "save_freq": 2, "seed": 1,
                     "save_ckpt": str(out / "model.ckpt"), "disp_file": str(out / "lcurve.out"),
                     "stat_file": str(out / "stat.hdf5")},
    }
    path = out / "input.json"
    path.write_text(json.dumps(cfg))
    return path


def test_train_test_freeze_calculator_with_parameters(param_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    inp = _input(param_data, {"numb_fparam": 2, "numb_aparam": 1}, tmp_path)
    assert main(["train", str(inp), "-o", str(tmp_path / "out.json")]) == 0
    ckpt = tmp_path / "model.ckpt-2.pt"
    model, _ = load_model(ckpt)
    fit = model.atomic_model.fitting_net
    (train_sys,) = load_systems(str(param_data / "train"), type_map=model.type_map)
    fp = train_sys.labels["fparam"]
    assert np.allclose(fit.fparam_avg.numpy(), fp.mean(0), atol=1e-12)
    assert np.allclose(fit.fparam_inv_std.numpy(), 1 / fp.std(0), rtol=1e-10)
    # a second run reads the statistics from the stat file: the same values
    (tmp_path / "second").mkdir()
    cfg = json.loads(inp.read_text())
    cfg["training"].update(save_ckpt=str(tmp_path / "second" / "model.ckpt"), numb_steps=0,
                           disp_file=str(tmp_path / "second" / "lcurve.out"))
    second = tmp_path / "second" / "input.json"
    second.write_text(json.dumps(cfg))
    assert main(["train", str(second)]) == 0
    again, _ = load_model(tmp_path / "second" / "model.ckpt-0.pt")
    assert torch.equal(again.atomic_model.fitting_net.aparam_inv_std, fit.aparam_inv_std)

    (sys,) = load_systems(str(param_data / "valid"), type_map=model.type_map, sort_atoms=False)
    params = system_parameters(model, sys, "valid")
    eager = evaluate(model, sys.coord, sys.atype, sys.box, atomic_virial=True, **params)
    assert main(["freeze", "-c", str(ckpt), "-o", str(tmp_path / "f.pth")]) == 0
    frozen, _ = load_model(tmp_path / "f.pth")
    assert (frozen.get_dim_fparam(), frozen.get_dim_aparam()) == (2, 1)
    assert not frozen.has_default_fparam()
    scripted = evaluate(frozen, sys.coord, sys.atype, sys.box, atomic_virial=True, **params)
    for key in eager:
        assert np.allclose(scripted[key], eager[key], rtol=1e-10, atol=1e-10), key
    moved = evaluate(model, sys.coord, sys.atype, sys.box,
                     fparam=params["fparam"] + 1.0, aparam=params["aparam"])
    assert np.abs(moved["energy"] - eager["energy"]).max() > 1e-6

    assert main(["test", "-m", str(tmp_path / "f.pth"), "-s", str(param_data / "valid"),
                 "-d", str(tmp_path / "detail")]) == 0
    predicted = np.loadtxt(tmp_path / "detail.e.out", ndmin=2)[:, 1]
    assert np.allclose(predicted, eager["energy"], rtol=1e-10)

    ase = pytest.importorskip("ase")
    from dpx.calculator import DPX
    atoms = ase.Atoms(numbers=[8 if t == 0 else 1 for t in sys.atype],
                      positions=sys.coord[0].reshape(-1, 3), cell=sys.box[0].reshape(3, 3),
                      pbc=True)
    atoms.calc = DPX(str(tmp_path / "f.pth"))
    with pytest.raises(ValueError, match=r'atoms.info\["fparam"\]'):
        atoms.get_potential_energy()
    atoms.info.update(fparam=params["fparam"][0], aparam=params["aparam"][0])
    assert atoms.get_potential_energy() == pytest.approx(eager["energy"][0], rel=1e-10)


def test_unused_aparam_does_not_stop_a_model_without_parameters(param_data, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    inp = _input(param_data, {}, tmp_path)
    assert main(["train", str(inp)]) == 0
    assert main(["test", "-m", str(tmp_path / "model.ckpt-2.pt"), "-s",
                 str(param_data / "valid")]) == 0


def test_missing_parameters_stop_training_with_the_system_named(param_data, tmp_path,
                                                                 monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    inp = _input(param_data, {"numb_fparam": 3}, tmp_path)
    assert main(["train", str(inp)]) != 0
    err = capsys.readouterr().err
    assert "training/training_data/systems" in err and "numb_fparam 3" in err
