"""A checkpoint cannot run code: a pickle payload planted in one is refused, with a message
naming the file, by every entry point that opens checkpoints."""
import builtins

import pytest
import torch

from dpx.cli.main import main
from dpx.io import checkpoint
from tests.train.conftest import dataset, small_input, write  # noqa: F401 (fixture)


class Payload:
    """Unpickling this writes a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("run")
    cfg = small_input(dataset, steps=1, save_ckpt=str(run / "model.ckpt"),
                      disp_file=str(run / "lcurve.out"))
    inp = write(run / "in.json", cfg)
    assert main(["train", str(inp), "-o", str(run / "out.json")]) == 0
    return run


@pytest.fixture
def poisoned(trained, tmp_path):
    state = torch.load(trained / "model.ckpt-1.pt", weights_only=True)
    marker = tmp_path / "payload_ran"
    state["model"]["_extra_state"]["model_params"]["info"] = Payload(marker)
    path = tmp_path / "poisoned.pt"
    torch.save(state, path)
    return path, marker


def test_the_payload_runs_when_unpickled_unsafely(poisoned):
    """The oracle of this module: the planted payload does run under weights_only=False."""
    path, marker = poisoned
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


def test_dpx_and_deepmd_checkpoints_need_no_unsafe_globals(trained):
    state = checkpoint.load(trained / "model.ckpt-1.pt")
    assert "model" in state and "optimizer" in state and "dpx" in state


ENTRY_POINTS = {
    "test": lambda ckpt, d, inp: ["test", "-m", str(ckpt), "-s", str(d / "valid")],
    "show": lambda ckpt, d, inp: ["show", str(ckpt)],
    "freeze": lambda ckpt, d, inp: ["freeze", "-c", str(ckpt), "-o", str(ckpt.with_suffix(".pth"))],
    "restart": lambda ckpt, d, inp: ["train", str(inp), "--restart", str(ckpt)],
    "init-model": lambda ckpt, d, inp: ["train", str(inp), "--init-model", str(ckpt)],
    "finetune": lambda ckpt, d, inp: ["train", str(inp), "--finetune", str(ckpt)],
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_points_refuse_the_payload(entry, poisoned, trained, dataset, tmp_path,  # noqa: F811
                                         monkeypatch, capsys):
    path, marker = poisoned
    monkeypatch.chdir(tmp_path)
    inp = write(tmp_path / "in.json", small_input(dataset, steps=1))
    assert main(ENTRY_POINTS[entry](path, dataset, inp)) == 2
    err = capsys.readouterr().err
    assert f"{path}: refused to load" in err, err
    assert not marker.exists()


def test_calculator_refuses_the_payload(poisoned):
    pytest.importorskip("ase")
    from dpx.calculator import DPX
    path, marker = poisoned
    with pytest.raises(ValueError, match="refused to load"):
        DPX(str(path))
    assert not marker.exists()
