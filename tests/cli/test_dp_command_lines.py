"""The command lines that workflows built for DeePMD-kit run, with `dpx` as their command
(issue 27): dpgen2's RunDPTrain puts `--pt` after the command (dpgen2/op/run_dp_train.py,
_make_train_command) and its exploration freezes with `--pt freeze -c CKPT -o OUT [--head H]`
(run_lmp.py, freeze_model); DP-GEN's make_train runs `train_command --pt train input.json
[--skip-neighbor-stat] [--init-model old/model.ckpt | --restart model.ckpt]`, then `--pt
freeze` and `--pt compress` (dpgen/generator/run.py). What dpx cannot do is refused by name."""
import json

import pytest

from dpx.cli.main import COMMANDS, main, parser
from dpx.cli.refuse import OTHER_BACKENDS
from tests.train.conftest import multi_input, small_input, write

# the least each subcommand needs to parse
MINIMAL = {"train": ["in.json"], "freeze": [], "test": ["-m", "m.pt", "-s", "sys"],
           "show": ["m.pt"], "change-bias": ["m.pt", "-s", "sys"],
           "neighbor-stat": ["-s", "sys", "-r", "6"], "compress": [], "check": [],
           "convert-data": ["sys", "-o", "sys.lmdb"]}
TAKEN = [["--pt"], ["--pytorch"], ["-b", "pytorch"], ["--backend", "pytorch"], ["-b", "pt"]]


def test_minimal_lines_cover_every_subcommand():
    assert set(MINIMAL) == set(COMMANDS)


@pytest.mark.parametrize("flag", TAKEN, ids=" ".join)
@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_pytorch_backend_flags_are_taken_by_every_subcommand(command, flag):
    args = parser().parse_args([*flag, command, *MINIMAL[command]])
    assert args.command == command and args.backend == "pytorch"


REFUSED = [[f"--{name}"] for name in OTHER_BACKENDS] + [["-b", "tensorflow"], ["--backend", "jax"],
                                                         ["-b", "paddle"], ["--pt", "--tf"]]


@pytest.mark.parametrize("flag", REFUSED, ids=" ".join)
def test_other_backends_are_refused_in_one_line(flag, capsys):
    with pytest.raises(SystemExit) as e:
        main([*flag, "train", "in.json"])
    err = capsys.readouterr().err
    named = flag[-1] if flag[0] == "--pt" else " ".join(flag)
    assert e.value.code == 2
    assert err == (f"dpx: error: {named}: dpx reads and writes the PyTorch backend's format "
                   f"only (.pt checkpoints, .pth frozen models); give --pt (or no backend "
                   f"flag)\n")


@pytest.mark.parametrize("option", [["--init-frz-model", "old/init.pth"], ["-f", "init.pth"],
                                    ["--force-load"]], ids=" ".join)
def test_dp_train_options_dpx_lacks_are_refused_by_name(option, capsys):
    """DP-GEN's training_init_frozen_model, and dp's --force-load (a user's train_args)."""
    with pytest.raises(SystemExit) as e:
        main(["--pt", "train", "input.json", *option])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dpx: error: {' '.join(option)}: dpx ") and err.count("\n") == 1


def test_dpgen2_training_and_freeze_lines(dataset, run_dir):
    """Fresh, restart from the newest numbered checkpoint, init-model with dpgen2's auto_prob
    string, and the exploration step's freeze."""
    cfg = small_input(dataset, steps=3)
    assert main(["--pt", "train", str(write(run_dir / "input.json", cfg))]) == 0
    cfg["training"]["numb_steps"] = 5
    write(run_dir / "input.json", cfg)
    assert main(["--pt", "train", "--restart", "model.ckpt-3.pt", "input.json"]) == 0
    assert (run_dir / "model.ckpt-5.pt").exists()
    (run_dir / "next").mkdir()
    nxt = small_input(dataset, steps=2, save_ckpt="next/model.ckpt", disp_file="next/lcurve.out")
    nxt["training"]["training_data"]["auto_prob"] = "prob_sys_size; 0:1:0.9; 1:2:0.1"
    assert main(["--pt", "train", "--init-model", "model.ckpt.pt",
                 str(write(run_dir / "next.json", nxt))]) == 0
    assert main(["--pt", "freeze", "-c", "next/model.ckpt.pt", "-o", "m1.pth"]) == 0
    assert (run_dir / "m1.pth").exists()


def test_dpgen2_multitask_head_lines(dataset, run_dir):
    """A multi-task run, its branch frozen with --head, and --finetune M --model-branch H."""
    assert main(["--pt", "train", str(write(run_dir / "multi.json",
                                            multi_input(dataset, steps=2)))]) == 0
    assert main(["--pt", "freeze", "-c", "model.ckpt.pt", "-o", "small.pth",
                 "--head", "small"]) == 0
    (run_dir / "ft").mkdir()
    cfg = small_input(dataset, steps=1, save_ckpt="ft/model.ckpt", disp_file="ft/lcurve.out")
    assert main(["--pt", "train", str(write(run_dir / "ft.json", cfg)), "--finetune",
                 "model.ckpt.pt", "--model-branch", "large"]) == 0
    assert (run_dir / "small.pth").exists() and (run_dir / "ft" / "model.ckpt-1.pt").exists()


def test_dpgen_train_freeze_compress_lines(dataset, run_dir):
    """DP-GEN's `{ if [ ! -f model.ckpt.pt ]; then TRAIN --init-model old/model.ckpt; else
    TRAIN --restart model.ckpt; fi }` (checkpoint prefixes without .pt, as dp takes them),
    then freeze and compress with their defaults."""
    (run_dir / "old").mkdir()
    cfg = small_input(dataset, steps=2, save_ckpt="old/model.ckpt", disp_file="old/lcurve.out")
    cfg["model"]["descriptor"]["sel"] = [12, 24]  # --skip-neighbor-stat wants sel given
    assert main(["--pt", "train", str(write(run_dir / "old.json", cfg))]) == 0
    cfg = small_input(dataset, steps=2)
    cfg["model"]["descriptor"]["sel"] = [12, 24]
    train = ["--pt", "train", str(write(run_dir / "input.json", cfg)), "--skip-neighbor-stat"]
    assert main([*train, "--init-model", "old/model.ckpt"]) == 0
    cfg["training"]["numb_steps"] = 4
    write(run_dir / "input.json", cfg)
    assert main([*train, "--restart", "model.ckpt"]) == 0
    assert json.loads((run_dir / "out.json").read_text())["training"]["numb_steps"] == 4
    assert main(["--pt", "freeze"]) == 0 and main(["--pt", "compress"]) == 0
    assert (run_dir / "frozen_model.pth").exists()
    assert (run_dir / "frozen_model_compressed.pth").exists()
