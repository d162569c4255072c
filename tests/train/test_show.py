"""`dpx show` on single- and multi-task checkpoints: the parameter counts are checked against
counts made from the key names (descriptor tensors shared, fitting tensors per branch)."""
import torch

from dpx.cli.main import main
from dpx.infer.show import count_parameters, read
from dpx.io import load_model
from tests.train.conftest import multi_input, small_input, write


def _numel(model, part: str) -> int:
    """Trainable elements of a submodule of the rebuilt model (parameters() counts each
    tensor once, aliases included)."""
    return sum(p.numel() for p in model.get_submodule(part).parameters() if p.requires_grad)


def test_show_multitask_counts_shared_once(dataset, run_dir, capsys):
    assert main(["train", str(write(run_dir / "in.json", multi_input(dataset)))]) == 0
    shared, own = count_parameters(read(run_dir / "model.ckpt-6.pt")[1])
    small = load_model(run_dir / "model.ckpt-6.pt", "small")[0]
    assert shared == _numel(small, "atomic_model.descriptor") > 0
    for branch in ("small", "large"):
        model = load_model(run_dir / "model.ckpt-6.pt", branch)[0]
        assert own[branch] == _numel(model, "atomic_model.fitting_net") > 0
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
    model = load_model(run_dir / "model.ckpt-3.pt")[0]
    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0  # a folder: its `checkpoint` file names the file
    text = capsys.readouterr().err
    assert "single-task model" in text and "type_map: O H" in text
    assert f"trainable parameters in all: {_numel(model, '')}" in text
    assert main(["freeze", "-c", "model.ckpt-3.pt", "-o", "frozen.pth"]) == 0
    capsys.readouterr()
    assert main(["show", "frozen.pth"]) == 0
    text = capsys.readouterr().err
    assert "(frozen)" in text and f"trainable parameters in all: {_numel(model, '')}" in text


def test_show_missing_file(run_dir, capsys):
    assert main(["show", "nope.pt"]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err


def test_aliases_select_branches_everywhere(dataset, run_dir, capsys):
    """model_branch_alias (and case-insensitive names, as DeePMD-kit resolves them) select a
    branch in test, freeze, finetune, the calculator; show lists them and the info."""
    cfg = multi_input(dataset, steps=2)
    cfg["model"]["model_dict"]["small"]["model_branch_alias"] = ["S", "tiny"]
    cfg["model"]["model_dict"]["small"]["info"] = {"functional": "PBE"}
    assert main(["train", str(write(run_dir / "in.json", cfg))]) == 0
    ckpt = str(run_dir / "model.ckpt-2.pt")
    small, _ = load_model(ckpt, "small")
    for name in ("S", "tiny", "SMALL"):
        model, _ = load_model(ckpt, name)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                      small.state_dict().values()))
    assert main(["freeze", "-c", ckpt, "-o", "tiny.pth", "--head", "tiny"]) == 0
    assert main(["test", "-m", ckpt, "--head", "S", "-s", str(dataset / "valid")]) == 0
    capsys.readouterr()
    assert main(["show", ckpt]) == 0
    err = capsys.readouterr().err
    assert "model branches: small (alias S, tiny), large" in err
    assert '[small] info: {"functional": "PBE"}' in err
    assert main(["test", "-m", ckpt, "--head", "nope", "-s", str(dataset / "valid")]) == 2
    assert "branches: small (alias S, tiny), large" in capsys.readouterr().err
    cfg["model"]["model_dict"]["large"]["model_branch_alias"] = ["tiny"]
    assert main(["train", str(write(run_dir / "bad.json", cfg)), "--overwrite"]) == 2
    assert "model_branch_alias: 'tiny' already names branch 'small'" in capsys.readouterr().err
