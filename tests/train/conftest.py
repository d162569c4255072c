import json
import shutil
from pathlib import Path

import pytest

from dpx.data.synthetic import make_dataset

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "small_water"


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """The bundled synthetic data (Morse labels: independent of whether ASE is installed)."""
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, nsystems=2, nframes=8, nvalid=3, seed=0, calculator="morse")
    return root


def small_input(data: Path, steps=6, **training) -> dict:
    cfg = json.loads((EXAMPLE / "input.json").read_text())
    cfg["model"]["descriptor"].update(neuron=[4, 8], axis_neuron=4)
    cfg["model"]["fitting_net"]["neuron"] = [8, 8]
    t = cfg["training"]
    t["training_data"]["systems"] = [str(data / "train")]
    t["validation_data"]["systems"] = [str(data / "valid")]
    t.update(numb_steps=steps, disp_freq=2, save_freq=3, stat_file=None)
    t.pop("stat_file")
    t.update(training)
    return cfg


def multi_input(data: Path, steps=6) -> dict:
    cfg = json.loads((EXAMPLE / "input_multi.json").read_text())
    cfg["model"]["shared_dict"]["sea_descriptor"].update(neuron=[4, 8], axis_neuron=4)
    for b in cfg["model"]["model_dict"].values():
        b["fitting_net"]["neuron"] = [8, 8]
    dd = cfg["training"]["data_dict"]
    dd["small"]["training_data"]["systems"] = [str(data / "train" / "water_024")]
    dd["small"]["validation_data"]["systems"] = [str(data / "valid")]
    dd["large"]["training_data"]["systems"] = [str(data / "train" / "water_036")]
    cfg["training"].update(numb_steps=steps, disp_freq=2, save_freq=3)
    return cfg


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, cfg: dict) -> Path:
    path.write_text(json.dumps(cfg))
    return path


__all__ = ["dataset", "small_input", "multi_input", "write", "shutil"]
