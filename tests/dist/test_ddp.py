"""Data-parallel training under torchrun (gloo on CPU): 2 processes on this machine."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dpx.cli.main import main
from dpx.infer.evaluate import evaluate
from dpx.io import load_model
from dpx.train.branches import BranchSampler
from tests.train.conftest import multi_input, small_input, write

pytestmark = pytest.mark.slow
DPX = str(Path(sys.executable).parent / "dpx")


def torchrun(args, cwd, env=None, nproc=2, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "--no-python", DPX, *args]
    return subprocess.Popen(cmd, cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def params(path):
    sd = torch.load(path, weights_only=False)["model"]
    return {k: v for k, v in sd.items() if k != "_extra_state"}


def test_two_processes_train_the_example(dataset, run_dir):
    cfg = small_input(dataset, steps=6)
    finish(torchrun(["train", str(write(run_dir / "in.json", cfg))], run_dir,
                    env={"DPX_CHECK_SYNC": "1"}))
    rows = [r for r in (run_dir / "lcurve.out").read_text().splitlines() if not r.startswith("#")]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 4, 6]
    model, _ = load_model(run_dir / "model.ckpt-6.pt")  # loads in a single process
    coord = torch.rand(1, 6, 3, dtype=torch.float64) * 3
    out = evaluate(model, coord.numpy(), [0, 1, 1, 0, 1, 1], None)
    assert out["energy"].shape == (1,)


def test_two_ranks_batch_1_equal_one_rank_batch_2(dataset, run_dir):
    (run_dir / "ddp").mkdir()
    (run_dir / "one").mkdir()
    cfg = small_input(dataset, steps=3, save_freq=3)
    cfg["training"]["training_data"]["batch_size"] = 1
    finish(torchrun(["train", str(write(run_dir / "ddp" / "in.json", cfg))], run_dir / "ddp"))
    cfg["training"]["training_data"]["batch_size"] = 2
    os.chdir(run_dir / "one")
    assert main(["train", str(write(run_dir / "one" / "in.json", cfg))]) == 0
    a, b = params(run_dir / "ddp" / "model.ckpt-3.pt"), params(run_dir / "one" / "model.ckpt-3.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-12, msg=k)


@pytest.mark.parametrize("sampling", ["per_rank", "same_on_all_ranks"])
def test_multitask_ranks_stay_in_sync(dataset, run_dir, sampling):
    cfg = multi_input(dataset, steps=8)
    cfg["training"]["task_sampling"] = sampling
    if sampling == "per_rank":
        # the ranks' draws differ on some step (the trainer draws from exactly these streams)
        prob = [1.0, 2.0]
        r0, r1 = (BranchSampler(["small", "large"], prob, 10, rank) for rank in (0, 1))
        assert any(r0.draw() != r1.draw() for _ in range(8))
    finish(torchrun(["train", str(write(run_dir / "in.json", cfg))], run_dir,
                    env={"DPX_CHECK_SYNC": "1"}))  # a checksum all-gather after every step
    sd = params(run_dir / "model.ckpt-8.pt")
    assert sd["model.small.atomic_model.descriptor.sea.mean"].data_ptr() == \
        sd["model.large.atomic_model.descriptor.sea.mean"].data_ptr()


@pytest.mark.parametrize("victim", [0, 1])
def test_killing_a_rank_ends_the_job(dataset, run_dir, victim):
    """...with one line from the survivor, no traceback of its own, and what rank 0 wrote
    before intact (tests/faults checks the single-process kills)."""
    cfg = small_input(dataset, steps=100000, disp_freq=1, save_freq=5)
    proc = torchrun(["train", str(write(run_dir / "in.json", cfg))], run_dir,
                    start_new_session=True)
    deadline = time.time() + 180
    while not (run_dir / "model.ckpt-10.pt").exists():
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = sorted(int(p) for p in workers.stdout.split())  # local rank order = start order
    assert len(pids) == 2, workers.stdout
    t0 = time.time()
    os.kill(pids[victim], signal.SIGKILL)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the job did not end within 90 s of a rank dying")
    assert proc.returncode != 0
    assert time.time() - t0 < 90
    from tests.faults.test_faults import assert_intact
    files = {f.name for f in assert_intact(run_dir)}
    assert {"model.ckpt-5.pt", "model.ckpt-10.pt"} <= files
    line = re.search(rf"dpx train: error: rank {1 - victim}: lost contact with rank {victim} "
                     rf"\(it exited or was killed\); the last checkpoint is "
                     rf"(model\.ckpt-\d+\.pt)\n", out)
    assert line and line.group(1) in files, out[-4000:]
    assert f"[rank{1 - victim}]: Traceback" not in out and "Connection reset" not in out
