"""DPA-1 (dpa1 / se_atten, se_atten_v2) against DeePMD-kit 3.2.0 on the same weights and data
(1e-10 relative, float64), on three elements (O, H, C): checkpoints both ways over variants of
the descriptor, statistics from 0-step runs, a descriptor shared by two branches that see
different elements (share level 0 and 1), dpx's frozen file under DeePMD-kit's DeepPot, and
DeePMD-kit's own DPA-1 example. DeePMD-kit's runs of a fixture happen in one oracle process
(OracleBatch)."""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dpx.cli.main import main
from dpx.io import load_model
from tests.fidelity.conftest import (
    OracleBatch,
    checkpoint_tensors,
    multi_input,
    single_input,
    write_json,
)
from tests.fidelity.test_deepmd_fidelity import TOL, assert_same, dpx_eval, statistics_of_both
from tests.fidelity.test_se_r_fidelity import dpx_train

pytestmark = pytest.mark.slow

TYPE_MAP = ["O", "H", "C"]
DPA1 = {"type": "dpa1", "sel": 30, "rcut_smth": 0.5, "rcut": 4.0, "neuron": [4, 8],
        "axis_neuron": 4, "tebd_dim": 3, "attn": 8, "attn_layer": 2, "seed": 1}
VARIANTS = {
    # concat, two attention layers, tebd_dim == ntypes (the type embedding's residual adds
    # the one-hot), davg not zero (padding rows enter the sums), a type pair excluded
    "concat": {"set_davg_zero": False, "exclude_types": [[0, 2]]},
    # strip with the smooth type embedding (padding keys in every softmax), one side, the
    # embedding's bias, a temperature
    "strip_smooth": {"tebd_input_mode": "strip", "smooth_type_embedding": True,
                     "type_one_side": True, "use_tebd_bias": True, "temperature": 0.7,
                     "tebd_dim": 4, "attn": 16},
    # se_atten_v2 (strip, smooth, davg not zero by default) without attention layers,
    # tebd_dim == 2 ntypes (the residual adds [one-hot, one-hot])
    "v2_no_attention": {"type": "se_atten_v2", "attn_layer": 0, "tebd_dim": 6,
                        "exclude_types": [[1, 1]]},
    # concat, smooth, one side, one attention layer, sel below the neighbor count
    "concat_smooth_short_sel": {"smooth_type_embedding": True, "type_one_side": True,
                                "attn_layer": 1, "sel": 12, "set_davg_zero": False},
}
SYSTEMS = ("sys_a", "sys_c")  # O and H; all three elements
FROZEN = ("concat", "strip_smooth")
# strip mode: the type embedding compressed (with attention), the radial net too (without)
COMPRESSED = ("strip_smooth", "v2_no_attention")
# DeePMD-kit's examples/water/se_atten/input_torch.json, its model section
EXAMPLE_MODEL = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "dpa1", "sel": 120, "rcut_smth": 0.5, "rcut": 6.0,
                   "neuron": [25, 50, 100], "tebd_dim": 8, "axis_neuron": 16,
                   "type_one_side": True, "attn": 128, "attn_layer": 2, "attn_dotr": True,
                   "attn_mask": False, "activation_function": "tanh", "scaling_factor": 1.0,
                   "normalize": True, "temperature": 1.0, "seed": 1},
    "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1},
}


def away_from_cutoff(system: Path, rcut: float, out: Path, margin: float = 1e-3) -> Path:
    """A copy of `system` with only its frames in which no distance between two atoms
    (periodic images included) lies within `margin` of rcut. There DPA-1 without the smooth
    type embedding is ill-conditioned: its angular gate divides the env-matrix row of a
    neighbor by max(|R[1:4]|, 1e-12), so within about 2e-4 A of rcut it scales with sw, which
    the rounding of 1 + u^3 (-6u^2 + 15u - 10) at u -> 1 dominates: DeePMD-kit's own two
    neighbor lists differ there by up to 3e-6 in forces (tests/oracle/NOTES.md §15)."""
    sets = sorted(system.glob("set.*"))
    coord = np.concatenate([np.load(s / "coord.npy") for s in sets])
    box = np.concatenate([np.load(s / "box.npy") for s in sets]).reshape(-1, 3, 3)
    keep = []
    for x, cell in zip(coord.reshape(len(coord), -1, 3), box):
        faces = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]],
                                                                   cell[[2, 0, 1]]), axis=1)
        reach = [np.arange(-k, k + 1) for k in np.ceil((rcut + margin) / faces).astype(int)]
        shifts = np.stack(np.meshgrid(*reach, indexing="ij"), -1).reshape(-1, 3) @ cell
        r = np.linalg.norm(x[None, :, None] + shifts - x[:, None, None], axis=-1)
        keep.append(np.abs(r - rcut).min() > margin)
    assert any(keep), system
    out.mkdir(parents=True)
    for f in system.glob("*.raw"):
        (out / f.name).write_bytes(f.read_bytes())
    (out / "set.000").mkdir()
    for f in sets[0].glob("*.npy"):
        arrays = np.concatenate([np.load(s / f.name) for s in sets])
        np.save(out / "set.000" / f.name, arrays[np.array(keep)])
    return out


@pytest.fixture(scope="module")
def eval_data3(tmp_path_factory, toy_data3) -> Path:
    """The three-element systems, frames clear of rcut (away_from_cutoff)."""
    out = tmp_path_factory.mktemp("eval_toy3")
    for system in ("sys_a", "sys_b", "sys_c"):
        away_from_cutoff(toy_data3 / system, DPA1["rcut"], out / system)
    return out


def dpa1_single(data, **descriptor) -> dict:
    """The toy input on the three-element systems with a DPA-1 descriptor."""
    cfg = single_input(data)
    cfg["model"]["type_map"] = list(TYPE_MAP)
    cfg["model"]["descriptor"] = dict(DPA1, **descriptor)
    t = cfg["training"]
    t["training_data"]["systems"] = [str(data / s) for s in ("sys_a", "sys_b", "sys_c")]
    t["validation_data"]["systems"] = [str(data / "sys_c")]
    return cfg


def dpa1_multi(data, level: int) -> dict:
    """Branch oh on sys_a (O, H), branch hc on sys_b (H, C), drawn 0.7 / 0.3, one DPA-1
    shared at `level` (0: everything; 1: the type embedding only)."""
    cfg = multi_input(data)
    model, t = cfg["model"], cfg["training"]
    fit = model["model_dict"]["water_1"]["fitting_net"]
    loss = cfg["loss_dict"]["water_1"]
    model["shared_dict"] = {"type_map_all": list(TYPE_MAP),
                            "dpa1": dict(DPA1, set_davg_zero=False)}
    ref = "dpa1" if level == 0 else f"dpa1:{level}"
    branches = {"oh": "sys_a", "hc": "sys_b"}
    model["model_dict"] = {
        head: {"type_map": "type_map_all", "descriptor": ref,
               "fitting_net": dict(fit, seed=seed), "data_stat_nbatch": 20}
        for seed, head in enumerate(branches, 1)}
    cfg["loss_dict"] = {head: dict(loss) for head in branches}
    t["model_prob"] = {"oh": 0.7, "hc": 0.3}
    t["data_dict"] = {head: {"training_data": {"systems": [str(data / system)],
                                               "batch_size": 1}}
                      for head, system in branches.items()}
    return cfg


def _dp_and_dpx(cfg: dict, run, batch: OracleBatch) -> dict:
    """{"dp": ..., "dpx": ...}: the 3-step checkpoints of both (DeePMD-kit's queued)."""
    (run / "dp").mkdir(parents=True)
    batch.dp("--pt", "train", write_json(run / "dp" / "input.json", cfg), cwd=run / "dp")
    dpx_train(cfg, run)
    return {"dp": run / "dp" / "model.ckpt-3.pt", "dpx": run / "model.ckpt-3.pt"}


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory, toy_data3, eval_data3):
    """Per variant: both checkpoints, DeepPot's numbers on each per system, and for FROZEN
    variants dpx's frozen file in DeepPot (vesin's and DeePMD-kit's own neighbor list) and
    DeePMD-kit's freeze of the dpx checkpoint in DeepPot; one restart by DeePMD-kit."""
    root = tmp_path_factory.mktemp("dpa1_single")
    batch = OracleBatch(root)
    runs = {}
    for name, descriptor in VARIANTS.items():
        run = root / name
        runs[name] = r = _dp_and_dpx(dpa1_single(toy_data3, **descriptor), run, batch)
        r["folder"] = run
        r["theirs"] = {(who, system): batch.eval(r[who], eval_data3 / system)
                       for who in ("dp", "dpx") for system in SYSTEMS}
        if name in FROZEN or name in COMPRESSED:
            assert main(["freeze", "-c", str(r["dpx"]), "-o", str(run / "dpx.pth")]) == 0
            batch.dp("--pt", "freeze", "-c", r["dpx"], "-o", run / "dp.pth", cwd=run)
        if name in COMPRESSED:  # both compress dpx's checkpoint; DeepPot runs both files
            assert main(["compress", "-i", str(r["dpx"]), "-o", str(run / "dpx_c.pth")]) == 0
            batch.dp("--pt", "compress", "-i", run / "dp.pth", "-o", run / "dp_c.pth", cwd=run)
            r["compressed"] = {c: batch.eval(run / f"{c}.pth", eval_data3 / "sys_c")
                               for c in ("dpx_c", "dp_c")}
        if name in FROZEN:
            r["frozen"] = {kind: batch.eval(run / f"{frozen}.pth", eval_data3 / "sys_c",
                                            nlist_backend=backend)
                           for kind, frozen, backend in (("dpx_vesin", "dpx", "auto"),
                                                         ("dpx_native", "dpx", "native"),
                                                         ("dp", "dp", "auto"))}
    cfg = dpa1_single(toy_data3, **VARIANTS["concat"])
    cfg["training"]["numb_steps"] = 4
    restart = root / "restart"
    restart.mkdir()
    batch.dp("--pt", "train", write_json(restart / "input.json", cfg), "--restart",
             runs["concat"]["dpx"], "--skip-neighbor-stat", cwd=restart)
    runs["restart"] = restart / "model.ckpt-4.pt"
    batch.run()
    return runs


def _theirs(run: dict, who: str, system: str) -> dict:
    return dict(np.load(run["theirs"][who, system]))


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_dpx_evaluates_deepmd_dpa1_checkpoint(single_runs, eval_data3, variant, system):
    run = single_runs[variant]
    assert_same(dpx_eval(run["dp"], eval_data3 / system), _theirs(run, "dp", system))


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_deepmd_evaluates_dpx_dpa1_checkpoint(single_runs, eval_data3, variant, system):
    run = single_runs[variant]
    model, _ = load_model(run["dpx"])
    expected = "DescrptSeAttenV2" if variant.startswith("v2") else "DescrptDPA1"
    assert type(model.atomic_model.descriptor).__name__ == expected
    assert_same(dpx_eval(run["dpx"], eval_data3 / system), _theirs(run, "dpx", system))


@pytest.mark.parametrize("variant", FROZEN)
def test_deepmd_loads_dpx_frozen_dpa1(single_runs, eval_data3, variant):
    """dpx freeze's file in DeepPot, on vesin's neighbor list and on DeePMD-kit's own,
    equals DeepPot on the checkpoint and dpx; DeePMD-kit's own freeze of the checkpoint
    too."""
    run = single_runs[variant]
    ours = dpx_eval(run["dpx"], eval_data3 / "sys_c")
    for npz in (run["theirs"]["dpx", "sys_c"], *run["frozen"].values()):
        assert_same(ours, dict(np.load(npz)))


@pytest.mark.parametrize("variant", FROZEN)
def test_dpx_evaluates_deepmd_frozen_dpa1(single_runs, eval_data3, variant):
    """DeePMD-kit's frozen DPA-1 file (its freeze of dpx's checkpoint) run by dpx equals
    DeepPot on it."""
    run = single_runs[variant]
    assert_same(dpx_eval(run["folder"] / "dp.pth", eval_data3 / "sys_c"),
                dict(np.load(run["frozen"]["dp"])))


@pytest.mark.parametrize("variant", COMPRESSED)
def test_compressed_dpa1_equals_deepmd(single_runs, eval_data3, variant):
    """dpx compress and dp --pt compress of one checkpoint: both files give the same numbers
    under DeepPot (dpx's on DeePMD-kit's tabulate_fusion_se_atten), dpx runs both as
    DeepPot does (DeePMD-kit's file on dpx's twin of the op), and with attention layers
    only the type embedding is compressed: the uncompressed model's numbers."""
    run, system = single_runs[variant], eval_data3 / "sys_c"
    folder = run["folder"]
    ours, theirs = ({k: dict(np.load(v)) for k, v in run["compressed"].items()}[c]
                    for c in ("dpx_c", "dp_c"))
    assert_same(ours, theirs)
    assert_same(dpx_eval(folder / "dpx_c.pth", system), ours)
    assert_same(dpx_eval(folder / "dp_c.pth", system), theirs)
    uncompressed = dpx_eval(run["dpx"], system)
    if variant == "strip_smooth":
        assert_same(ours, uncompressed)
    else:  # tables of stride 0.01 / 0.1, fifth order
        assert np.abs(ours["force"] - uncompressed["force"]).max() < 1e-8


def test_deepmd_restarts_dpx_dpa1_checkpoint(single_runs):
    """dp --pt train --restart of dpx's 3-step checkpoint runs the fourth step."""
    ckpt = torch.load(single_runs["restart"], map_location="cpu", weights_only=False)
    # model.ckpt-N.pt holds the 0-based index of its last step, N - 1
    assert ckpt["model"]["_extra_state"]["train_infos"]["step"] == 3


def _stats(model) -> dict:
    block = model.atomic_model.descriptor.se_atten
    return {"davg": block.mean, "dstd": block.stddev, "out_bias": model.atomic_model.out_bias,
            "out_std": model.atomic_model.out_std, "min_nbor_dist": model.min_nbor_dist}


def _assert_stats(ours: dict, theirs: dict, head: str) -> None:
    for key, value in ours.items():
        ref = theirs[f"{head}/{key}"]
        value = value.detach().numpy()
        assert value.shape == ref.shape, (head, key, value.shape, ref.shape)
        np.testing.assert_allclose(value, ref, rtol=TOL, atol=1e-12, err_msg=f"{head}/{key}")


@pytest.mark.parametrize("descriptor", [{}, {"set_davg_zero": False, "exclude_types": [[0, 1]]}],
                         ids=["davg_zero", "davg_exclude_types"])
def test_dpa1_statistics_equal_deepmd(tmp_path, toy_data3, descriptor):
    """davg/dstd, out_bias/out_std and min_nbor_dist from 0-step runs of both, sel "auto"
    resolved to DeePMD-kit's one integer."""
    ckpt, theirs = statistics_of_both(dpa1_single(toy_data3, sel="auto", **descriptor),
                                      tmp_path)
    model, _ = load_model(ckpt)
    _assert_stats(_stats(model), theirs, "Default")
    their_sel = json.loads(str(theirs["_model_params_json"]))["descriptor"]["sel"]
    assert isinstance(their_sel, int)
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]["_extra_state"]
    assert stored["model_params"]["descriptor"]["sel"] == their_sel
    assert json.loads((tmp_path / "out.json").read_text())["model"]["descriptor"]["sel"] == \
        their_sel


@pytest.fixture(scope="module")
def multi_runs(tmp_path_factory, toy_data3, eval_data3):
    """Per share level: both multi-task checkpoints and DeepPot's numbers per head on
    sys_c (each branch saw only two of its three elements)."""
    root = tmp_path_factory.mktemp("dpa1_multi")
    batch = OracleBatch(root)
    runs = {}
    for level in (0, 1):
        runs[level] = r = _dp_and_dpx(dpa1_multi(toy_data3, level), root / f"level{level}",
                                      batch)
        r["theirs"] = {(who, head): batch.eval(r[who], eval_data3 / "sys_c", head)
                       for who in ("dp", "dpx") for head in ("oh", "hc")}
    batch.run()
    return runs


@pytest.mark.parametrize("head", ["oh", "hc"])
@pytest.mark.parametrize("who", ["dp", "dpx"])
@pytest.mark.parametrize("level", [0, 1])
def test_dpa1_multitask_checkpoints_both_ways(multi_runs, eval_data3, level, who, head):
    run = multi_runs[level]
    assert_same(dpx_eval(run[who], eval_data3 / "sys_c", head),
                dict(np.load(run["theirs"][who, head])))


MULTI_STATS = {"davg": "atomic_model.descriptor.se_atten.mean",
               "dstd": "atomic_model.descriptor.se_atten.stddev",
               "out_bias": "atomic_model.out_bias", "out_std": "atomic_model.out_std",
               "min_nbor_dist": "min_nbor_dist"}


def _multi_stats(run: dict, keys) -> None:
    """Per branch, dpx's statistics equal DeePMD-kit's: the buffers of the 3-step
    checkpoints (training leaves them as the statistics set them)."""
    sd = checkpoint_tensors(run["dp"])
    theirs = {f"{head}/{key}": sd[f"model.{head}.{MULTI_STATS[key]}"].numpy()
              for head in ("oh", "hc") for key in keys}
    for head in ("oh", "hc"):
        model, _ = load_model(run["dpx"], head)
        _assert_stats({k: v for k, v in _stats(model).items() if k in keys}, theirs, head)


@pytest.mark.parametrize("level", [0, 1])
def test_dpa1_multitask_statistics_equal_deepmd(multi_runs, level):
    """davg/dstd and out_bias/out_std per branch. Level 0: one davg/dstd merged over the
    branches; level 1: each branch's own, the type embedding alone shared."""
    run = multi_runs[level]
    _multi_stats(run, ("davg", "dstd", "out_bias", "out_std"))
    for ckpt in (run["dp"], run["dpx"]):
        sd = checkpoint_tensors(ckpt)
        assert _same_in_both_heads(sd, "se_atten.") == (level == 0), ckpt
        assert _same_in_both_heads(sd, "type_embedding."), ckpt


@pytest.mark.parametrize("level", [0, 1])
def test_dpa1_multitask_min_nbor_dist_per_branch(multi_runs, level):
    """DeePMD-kit's neighbor statistics run per branch on its own training data
    (deepmd/pt/entrypoints/main.py), whatever the branch shares: each branch's own
    min_nbor_dist."""
    _multi_stats(multi_runs[level], ("min_nbor_dist",))


def _same_in_both_heads(sd: dict, part: str) -> bool:
    """Whether the descriptor's `part` holds the same tensors in both heads."""
    keys = [k for k in sd if k.startswith(f"model.oh.atomic_model.descriptor.{part}")]
    assert keys, part
    return all(torch.equal(sd[k], sd[k.replace(".oh.", ".hc.", 1)]) for k in keys)


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory, toy_data):
    """DeePMD-kit's DPA-1 example (its model, unchanged) for 2 steps on the toy data; sys_b's
    frames clear of its rcut for the evaluations."""
    cfg = single_input(toy_data)
    cfg["model"] = copy.deepcopy(EXAMPLE_MODEL)
    cfg["training"].update(numb_steps=2, save_freq=2, stat_file="./dpa1.hdf5")
    root = tmp_path_factory.mktemp("dpa1_example")
    system = away_from_cutoff(toy_data / "sys_b", EXAMPLE_MODEL["descriptor"]["rcut"],
                              root / "sys_b")
    batch = OracleBatch(root)
    (root / "dp").mkdir()
    batch.dp("--pt", "train", write_json(root / "dp" / "input.json", cfg), cwd=root / "dp")
    dpx_train(dict(cfg, training=dict(cfg["training"], stat_file=str(root / "dpa1.hdf5"))),
              root)
    runs = {"dp": root / "dp" / "model.ckpt-2.pt", "dpx": root / "model.ckpt-2.pt",
            "system": system}
    runs["theirs"] = {who: batch.eval(runs[who], system) for who in ("dp", "dpx")}
    batch.run()
    return runs


@pytest.mark.parametrize("who", ["dp", "dpx"])
def test_deepmd_dpa1_example_both_ways(example_runs, who):
    assert_same(dpx_eval(example_runs[who], example_runs["system"]),
                dict(np.load(example_runs["theirs"][who])))


# ---------------------------------------------------------------- finetune
FINETUNE = VARIANTS["strip_smooth"]
FINETUNE_MAPS = {"same": ["O", "H", "C"], "reordered": ["C", "O", "H"],
                 "new_element": ["O", "H", "C"]}


@pytest.fixture(scope="module")
def finetune_runs(tmp_path_factory, toy_data3, single_runs):
    """Both tools finetune (0 steps) the same pretrained checkpoints on the three-element
    data: dpx's and DeePMD-kit's 3-step models of FINETUNE to the same and to a reordered
    type map, and a model pretrained on O and H only to a map with C (a new element)."""
    root = tmp_path_factory.mktemp("dpa1_finetune")
    # sys_a holds O and H only, but its type_map.raw names C too, which a model of O and H
    # refuses (as DeePMD-kit does): a copy that names O and H
    oh_data = root / "sys_oh"
    shutil.copytree(toy_data3 / "sys_a", oh_data)
    assert (oh_data / "type_map.raw").read_text().split()[:2] == ["O", "H"]
    (oh_data / "type_map.raw").write_text("O\nH\n")
    only_oh = dpa1_single(toy_data3, **FINETUNE)
    only_oh["model"]["type_map"] = ["O", "H"]
    only_oh["training"]["training_data"]["systems"] = [str(oh_data)]
    only_oh["training"]["validation_data"]["systems"] = [str(oh_data)]
    (root / "oh").mkdir()
    dpx_train(only_oh, root / "oh")
    sources = {("dpx", "same"): single_runs["strip_smooth"]["dpx"],
               ("dp", "same"): single_runs["strip_smooth"]["dp"],
               ("dpx", "reordered"): single_runs["strip_smooth"]["dpx"],
               ("dpx", "new_element"): root / "oh" / "model.ckpt-3.pt"}
    batch = OracleBatch(root)
    runs = {}
    for (source, case), pretrained in sources.items():
        cfg = dpa1_single(toy_data3, **FINETUNE)
        cfg["model"]["type_map"] = FINETUNE_MAPS[case]
        cfg["training"].update(numb_steps=0)
        run = root / f"{source}_{case}"
        (run / "dp").mkdir(parents=True)
        batch.dp("--pt", "train", write_json(run / "dp" / "in.json", cfg), "--finetune",
                 pretrained, "--skip-neighbor-stat", cwd=run / "dp")
        cfg["training"].update(save_ckpt=str(run / "model.ckpt"),
                               disp_file=str(run / "lcurve.out"))
        assert main(["train", str(write_json(run / "in.json", cfg)), "--finetune",
                     str(pretrained), "-o", str(run / "out.json")]) == 0
        runs[source, case] = {"dp": run / "dp" / "model.ckpt-0.pt",
                              "dpx": run / "model.ckpt-0.pt"}
    batch.run()
    return runs


@pytest.mark.parametrize("source,case", [("dpx", "same"), ("dp", "same"),
                                         ("dpx", "reordered"), ("dpx", "new_element")])
def test_dpa1_finetune_equals_deepmd(finetune_runs, source, case):
    """The same weights, statistics and changed out_bias as `dp --pt train --finetune`. A
    new element's type-embedding row is random in both (each from its own generator), and
    the bias change, fitted to predictions that use that row, differs with it: those are
    compared for their shape only; its davg/dstd come from the new data in both."""
    run = finetune_runs[source, case]
    theirs, ours = (checkpoint_tensors(run[who], keep_empty=False) for who in ("dp", "dpx"))
    random_row = case == "new_element"
    compared = []
    for key, ref in theirs.items():
        assert key in ours, key
        value = ours[key]
        assert value.shape == ref.shape, key
        if random_row and key.endswith(("out_bias", "out_std")):
            continue
        if random_row and "type_embedding" in key and key.endswith("matrix"):
            value, ref = value[:2], ref[:2]  # O and H: the pretrained rows
        np.testing.assert_allclose(value.numpy(), ref.numpy(), rtol=TOL, atol=1e-12,
                                   err_msg=key)
        compared.append(key)
    assert any("se_atten.mean" in k for k in compared)
    assert any("fitting_net.filter_layers" in k for k in compared)
    assert random_row or "model.Default.atomic_model.out_bias" in compared
