"""`dpx show` on single- and multi-task checkpoints: the parameter counts are checked against
counts made from the key names (descriptor tensors shared, fitting tensors per branch)."""
import torch

from dpx.cli.main import main
from dpx.infer.show import count_parameters, read
from tests.train.conftest import multi_input, small_input, write


def _numel(sd: dict, part: str) -> int:
    return sum(v.numel() for k, v in sd.items()
               if k.startswith(f"model.{part}") and k.split(".")[-1] in ("matrix", "bias", "idt"))


def test_show_multitask_counts_shared_once(dataset, run_dir, capsys):
    assert main(["train", str(write(run_dir / "in.json", multi_input(dataset)))]) == 0
    sd = torch.load(run_dir / "model.ckpt-6.pt", weights_only=False)["model"]
    shared, own = count_parameters(read(run_dir / "model.ckpt-6.pt")[1])
    assert shared == _numel(sd, "small.atomic_model.descriptor.") > 0
    for branch in ("small", "large"):
        assert own[branch] == _numel(sd, f"{branch}.atomic_model.fitting_net.") > 0
    capsys.readouterr()
    assert main(["show", "model.ckpt-6.pt"]) == 0
    text = capsys.readouterr().err
    for line in ("multi-task model", "model branches: small, large", "training step: 6",
                 f"parameters shared by several branches: {shared}",
                 f"trainable parameters in all: {shared + own['small'] + own['large']}",
                 "rcut=", "sel=", "neuron=[8, 8]"):
        assert line in text, line


def test_show_single_task_and_folder(dataset, run_dir, capsys):
    assert main(["train", str(write(run_dir / "in.json", small_input(dataset, steps=3)))]) == 0
    sd = torch.load(run_dir / "model.ckpt-3.pt", weights_only=False)["model"]
    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0  # a folder: its `checkpoint` file names the file
    text = capsys.readouterr().err
    assert "single-task model" in text and "type_map: O H" in text
    assert f"trainable parameters in all: {_numel(sd, 'Default.')}" in text


def test_show_missing_file(run_dir, capsys):
    assert main(["show", "nope.pt"]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err
