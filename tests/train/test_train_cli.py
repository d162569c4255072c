"""`dpx train` / `dpx test` end to end on the bundled synthetic data."""
import json
import math

import pytest
import torch

from dpx.cli.main import main
from tests.train.conftest import multi_input, small_input, write


def params_of(path):
    sd = torch.load(path, weights_only=False)["model"]
    return {k: v for k, v in sd.items() if k != "_extra_state"}


def test_train_writes_deepmd_layout(dataset, run_dir):
    assert main(["train", str(write(run_dir / "in.json", small_input(dataset)))]) == 0
    for name in ("lcurve.out", "model.ckpt-3.pt", "model.ckpt-6.pt", "checkpoint", "out.json"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "model.ckpt.pt").resolve().name == "model.ckpt-6.pt"
    assert (run_dir / "checkpoint").read_text().strip() == "model.ckpt-6.pt"
    lines = (run_dir / "lcurve.out").read_text().splitlines()
    assert lines[0].split() == ["#", "step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn",
                                "rmse_f_val", "rmse_f_trn", "rmse_v_val", "rmse_v_trn", "lr"]
    steps = [int(line.split()[0]) for line in lines[2:]]
    assert steps == [1, 2, 4, 6]
    assert all(math.isfinite(float(x)) for x in lines[-1].split())
    state = torch.load(run_dir / "model.ckpt-6.pt", weights_only=False)
    extra = state["model"]["_extra_state"]
    assert extra["train_infos"]["step"] == 5
    assert isinstance(extra["model_params"]["descriptor"]["sel"], list)
    assert "optimizer" in state
    # DeePMD-kit's optimizer groups: foreach None, fused False (dpx steps fused)
    assert all(g["foreach"] is None and g["fused"] is False
               for g in state["optimizer"]["param_groups"])


def test_restart_continues_exactly(dataset, run_dir):
    """6 steps in one go equal 6 steps restarted from the step-3 checkpoint, bit for bit."""
    for d in ("a", "b"):
        (run_dir / d).mkdir()
    cfg = small_input(dataset, steps=6, save_ckpt="a/model.ckpt", disp_file="a/lcurve.out")
    assert main(["train", str(write(run_dir / "a.json", cfg))]) == 0
    cfg = small_input(dataset, steps=6, save_ckpt="b/model.ckpt", disp_file="b/lcurve.out")
    assert main(["train", str(write(run_dir / "b.json", cfg)),
                 "--restart", "a/model.ckpt-3.pt"]) == 0
    a, b = params_of(run_dir / "a/model.ckpt-6.pt"), params_of(run_dir / "b/model.ckpt-6.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the Adam moments too (the restarted run stepped fused, as the first did)
    oa = torch.load(run_dir / "a/model.ckpt-6.pt", weights_only=False)["optimizer"]["state"]
    ob = torch.load(run_dir / "b/model.ckpt-6.pt", weights_only=False)["optimizer"]["state"]
    for i in oa:
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(oa[i][key], ob[i][key]), (i, key)
    la = (run_dir / "a/lcurve.out").read_text().splitlines()
    lb = (run_dir / "b/lcurve.out").read_text().splitlines()
    assert la[-2:] == lb[-2:]


def test_init_model_and_stat_file(dataset, run_dir):
    cfg = small_input(dataset, steps=2, stat_file="stats.h5")
    assert main(["train", str(write(run_dir / "in.json", cfg))]) == 0
    assert (run_dir / "stats.h5").exists()
    first = params_of(run_dir / "model.ckpt-2.pt")
    # the cached statistics give the same davg/dstd and bias on a second run
    cfg["training"].update(save_ckpt="again", disp_file="lcurve_again.out")
    assert main(["train", str(write(run_dir / "in2.json", cfg))]) == 0
    again = params_of(run_dir / "again-2.pt")
    for k in first:
        if k.endswith(("mean", "stddev", "out_bias")):
            assert torch.equal(first[k], again[k]), k
    cfg["training"].update(save_ckpt="init", disp_file="lcurve_init.out")
    assert main(["train", str(write(run_dir / "in3.json", cfg)),
                 "--init-model", "model.ckpt-2.pt"]) == 0


def test_dpx_test_reports_errors(dataset, run_dir, capsys):
    assert main(["train", str(write(run_dir / "in.json", small_input(dataset, steps=2)))]) == 0
    capsys.readouterr()
    assert main(["test", "-m", "model.ckpt-2.pt", "-s", str(dataset / "valid"), "-n", "2",
                 "-d", "detail"]) == 0
    text = capsys.readouterr().err
    assert "# number of test data : 2" in text
    for metric in ("Energy RMSE/Natoms", "Force  RMSE", "Virial RMSE"):
        assert metric in text
    rows = (run_dir / "detail.e.out").read_text().splitlines()
    assert rows[0].startswith("#") and len(rows) == 3


def test_multi_task_trains_and_shares(dataset, run_dir):
    assert main(["train", str(write(run_dir / "in.json", multi_input(dataset)))]) == 0
    sd = torch.load(run_dir / "model.ckpt-6.pt", weights_only=False)["model"]
    prefix = "atomic_model.descriptor.sea."
    for name in ("mean", "stddev", "filter_layers.networks.0.layers.0.matrix"):
        assert torch.equal(sd[f"model.small.{prefix}{name}"], sd[f"model.large.{prefix}{name}"])
    fit = "atomic_model.fitting_net.filter_layers.networks.0.layers.0.matrix"
    assert not torch.equal(sd[f"model.small.{fit}"], sd[f"model.large.{fit}"])
    head = (run_dir / "lcurve.out").read_text().splitlines()[0].split()
    assert "rmse_val_small" in head and "rmse_trn_large" in head
    assert "rmse_val_large" not in head


@pytest.mark.parametrize("change, message", [
    (lambda c: c["model"]["descriptor"].update(rcut=-1.0), "model/descriptor/rcut: must be > 0"),
    (lambda c: c["training"]["training_data"].update(systems=["nowhere"]), "nowhere"),
])
def test_bad_input_is_a_clear_error(dataset, run_dir, capsys, change, message):
    cfg = small_input(dataset)
    change(cfg)
    assert main(["train", str(write(run_dir / "in.json", cfg))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_se_r_example_end_to_end(dataset, run_dir, capsys):
    """examples/small_water/input_se_r.json (network shrunk): train, restart, freeze, test,
    show from the command line."""
    import json

    from tests.train.conftest import EXAMPLE
    cfg = json.loads((EXAMPLE / "input_se_r.json").read_text())
    cfg["model"]["fitting_net"]["neuron"] = [8, 8]
    t = cfg["training"]
    t["training_data"]["systems"] = [str(dataset / "train")]
    t["validation_data"]["systems"] = [str(dataset / "valid")]
    t.update(numb_steps=4, disp_freq=2, save_freq=2)
    inp = write(run_dir / "se_r.json", cfg)
    assert main(["train", str(inp)]) == 0
    assert (run_dir / "se_r" / "model.ckpt-4.pt").exists()
    t["numb_steps"] = 6
    assert main(["train", str(write(run_dir / "se_r6.json", cfg)), "--restart",
                 "se_r/model.ckpt-4.pt"]) == 0
    assert main(["freeze", "-c", "se_r", "-o", "se_r.pth"]) == 0
    capsys.readouterr()
    assert main(["test", "-m", "se_r.pth", "-s", str(dataset / "valid")]) == 0
    assert main(["show", "se_r/model.ckpt.pt"]) == 0
    err = capsys.readouterr().err
    assert "Force  RMSE" in err and 'type="se_e2_r"' in err and "training step: 6" in err


def test_the_users_config_is_not_changed(dataset, run_dir):
    """sel 'auto' is resolved into the run's copy of the input (ResolvedConfig); the Config
    the caller passed keeps what the user wrote."""
    from dpx.config import parse_input
    from dpx.train.startup import build_trainer
    cfg = parse_input(small_input(dataset), base_dir=run_dir)
    assert cfg.branches["Default"].model.descriptor.sel == "auto"
    trainer = build_trainer(cfg)
    assert cfg.branches["Default"].model.descriptor.sel == "auto"
    assert isinstance(trainer.cfg.branches["Default"].model.descriptor.sel, list)


def test_profiling_writes_a_chrome_trace(dataset, run_dir):
    """training/profiling (and profiling_file, a key of DeePMD-kit's official examples)."""
    import json
    cfg = small_input(dataset, steps=22, profiling=True, profiling_file="trace.json")
    assert main(["train", str(write(run_dir / "in.json", cfg))]) == 0
    trace = json.loads((run_dir / "trace.json").read_text())
    assert trace["traceEvents"]


def test_neighbor_statistics_kept_in_the_stat_file(dataset, run_dir, capsys):
    """A second run on the same data reads the neighbor statistics back from the stat file
    (no scan) and resolves the same sel and min_nbor_dist; --neighbor-stat-frames is logged
    as an estimate."""
    cfg = small_input(dataset, steps=1, stat_file="stats")
    cfg["model"]["descriptor"]["sel"] = "auto"
    runs = []
    for k, extra in enumerate(([], [], ["--neighbor-stat-frames", "1"])):
        cfg["training"].update(save_ckpt=f"run{k}", disp_file=f"lcurve{k}.out")
        capsys.readouterr()
        assert main(["train", str(write(run_dir / f"in{k}.json", cfg)),
                     "-o", f"out{k}.json", *extra]) == 0
        state = torch.load(run_dir / f"run{k}-1.pt", weights_only=False)["model"]
        sel = json.loads((run_dir / f"out{k}.json").read_text())["model"]["descriptor"]["sel"]
        dmin = [float(v) for k, v in state.items() if k.endswith("min_nbor_dist")]
        runs.append((capsys.readouterr().err, sel, dmin))
    assert "read from the stat file" not in runs[0][0]
    assert "2 of 2 system(s) read from the stat file" in runs[1][0]
    assert runs[1][1:] == runs[0][1:]
    assert "ESTIMATE from at most 1 frame(s) per system" in runs[2][0]


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_neighbor_stat_frames_must_be_a_whole_number(dataset, run_dir, capsys, value):
    path = write(run_dir / "in.json", small_input(dataset, steps=1))
    with pytest.raises(SystemExit) as stop:
        main(["train", str(path), "--neighbor-stat-frames", value])
    assert stop.value.code == 2
    assert f"--neighbor-stat-frames: expected a whole number >= 1, got '{value}'" in \
        capsys.readouterr().err
