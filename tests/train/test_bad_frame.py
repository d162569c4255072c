"""A data file that goes bad in the middle of a run (issue 28, item 5): the run stops with
the file and frame named, rc 2, and the steps done saved in a checkpoint."""
import re
import shutil

import numpy as np
import torch

from dpx.cli.main import main
from dpx.data import system as system_module
from dpx.train.trainer import Trainer
from tests.train.conftest import small_input, write


def test_a_file_cut_short_mid_run_stops_with_a_checkpoint(dataset, run_dir, monkeypatch,
                                                          capsys):
    shutil.copytree(dataset, run_dir / "data")
    monkeypatch.setattr(system_module, "IN_MEMORY_BYTES", 0)  # frames read when drawn
    cut = [run_dir / "data/train" / s / "set.000/force.npy"
           for s in ("water_024", "water_036")]
    step = Trainer.step

    def step_then_cut(self, name, lr):
        out = step(self, name, lr)
        if self.done == 3:  # step 3 (0-based) has run: cut the files before step 4 reads
            for path in cut:
                path.write_bytes(path.read_bytes()[:200])
        return out
    monkeypatch.setattr(Trainer, "step", step_then_cut)
    cfg = small_input(run_dir / "data", steps=8, save_freq=100)
    cfg["training"].pop("validation_data")
    assert main(["train", str(write(run_dir / "in.json", cfg))]) == 2
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines()
           if line.startswith("dpx train: error")]  # the log goes to stderr too
    assert len(err) == 1 and "Traceback" not in stderr, err
    assert re.search(r"water_0(24|36)/set\.000/force\.npy: frame \d+ is cut short", err[0])
    assert "stopped before step 4" in err[0] and "model.ckpt-4.pt" in err[0]
    state = torch.load(run_dir / "model.ckpt-4.pt", weights_only=False)
    assert state["dpx"]["next_step"] == 4
    assert np.isfinite(state["model"]["_extra_state"]["train_infos"]["lr"])
