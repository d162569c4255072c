"""Fault injection (issue 13): whatever happens to a run, nothing it wrote before is lost, and
a restart continues it as if nothing had happened.

- kill -9 at seeded random moments of training, and inside a checkpoint write: every
  checkpoint on disk loads, the link and the `checkpoint` pointer name a complete one, and a
  restart from it ends with the parameters and lcurve.out of an uninterrupted run;
- a full disk: a clear error, the previous checkpoint kept, no temporary file left;
- output paths that cannot be written (a folder that is a file), an HDF5 stat file in a
  missing folder;
- two runs in one folder: the second is refused while the first lives; a dead run's lock is
  stale and removed, and of two runs that break it at once only one takes it; a run never
  prunes another run's checkpoints;
- (a rank of a torchrun job dies: tests/dist/test_ddp.py checks that the checkpoints
  written before still load.)
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dpx.cli.main import main
from dpx.io import checkpoint
from dpx.train.run_files import RunFiles
from tests.train.conftest import small_input, write

STEPS = 40
KILL_SEEDS = range(6)


def dpx(*args) -> list[str]:
    return [sys.executable, "-m", "dpx.cli.main", *map(str, args)]


def run_input(dataset, folder: Path, steps=STEPS, **training) -> Path:
    cfg = small_input(dataset, steps=steps, disp_freq=1, save_freq=5, max_ckpt_keep=100,
                      **training)
    return write(folder / "in.json", cfg)


def weights(path) -> dict:
    sd = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in sd.items() if k != "_extra_state"}


def assert_intact(folder: Path) -> list[Path]:
    """Every numbered checkpoint loads; the link and the pointer name a complete one."""
    files = sorted(folder.glob("model.ckpt-*.pt"), key=lambda p: int(p.stem.split("-")[-1]))
    for f in files:
        checkpoint.load(f)
    link = folder / "model.ckpt.pt"
    if link.is_symlink() or link.exists():
        assert link.resolve() in [f.resolve() for f in files]
        assert (folder / "checkpoint").read_text().strip() == link.resolve().name
    return files


def lcurve_rows(path: Path) -> list[str]:
    return [r for r in path.read_text().splitlines() if r and not r.startswith("#")]


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted run: (its final weights, its lcurve.out rows)."""
    folder = tmp_path_factory.mktemp("reference")
    subprocess.run(dpx("train", run_input(dataset, folder)), cwd=folder, check=True,
                   capture_output=True)
    return weights(folder / f"model.ckpt-{STEPS}.pt"), lcurve_rows(folder / "lcurve.out")


def resume_and_compare(dataset, folder: Path, reference) -> None:
    """Restart from what the interrupted run left (or start over when it left no
    checkpoint) and end where the uninterrupted run ended, bit for bit."""
    inp = run_input(dataset, folder)
    if (folder / "model.ckpt.pt").exists():
        args = ["train", inp, "--restart", "model.ckpt.pt"]
    else:
        args = ["train", inp, "--overwrite"]
    res = subprocess.run(dpx(*args), cwd=folder, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    final, rows = reference
    got = weights(folder / f"model.ckpt-{STEPS}.pt")
    for k, v in final.items():
        assert torch.equal(got[k], v), k
    assert lcurve_rows(folder / "lcurve.out") == rows  # one uninterrupted run, no repeats
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
    assert not (folder / ".model.ckpt.lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_kill_9_during_training(dataset, tmp_path, reference, seed):
    rng = random.Random(seed)
    rows_before_kill = rng.randint(1, STEPS - 2)
    proc = subprocess.Popen(dpx("train", run_input(dataset, tmp_path)), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lcurve = tmp_path / "lcurve.out"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if lcurve.exists() and len(lcurve_rows(lcurve)) >= rows_before_kill:
            time.sleep(rng.uniform(0.0, 0.05))
            break
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_intact(tmp_path)
    resume_and_compare(dataset, tmp_path, reference)


DYING_SAVE = """
import os, signal, sys
import torch
from dpx.cli.main import main
original, calls = torch.save, [0]
def dying_save(obj, f, *args, **kwargs):
    calls[0] += 1
    if calls[0] == int(os.environ["DIE_AT_SAVE"]):
        with open(f, "wb") as out:   # half of a checkpoint, then the end of the process
            out.write(b"PK\\x03\\x04 partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(obj, f, *args, **kwargs)
torch.save = dying_save
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("die_at", [1, 3])
def test_kill_9_inside_a_checkpoint_write(dataset, tmp_path, reference, die_at):
    res = subprocess.run([sys.executable, "-c", DYING_SAVE, "train",
                          str(run_input(dataset, tmp_path))], cwd=tmp_path,
                         env=dict(os.environ, DIE_AT_SAVE=str(die_at)), capture_output=True)
    assert res.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert left == [f".model.ckpt-{5 * die_at}.pt.tmp{left[0].rsplit('tmp', 1)[1]}"]
    files = assert_intact(tmp_path)
    assert [f.name for f in files] == [f"model.ckpt-{5 * k}.pt" for k in range(1, die_at)]
    resume_and_compare(dataset, tmp_path, reference)


# what a full disk raises: the OSError of a plain write, or the RuntimeError of torch's zip
# writer that finds its file shorter than what it wrote
FULL_DISK = {"OSError": (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                         "No space left on device"),
             "RuntimeError": (RuntimeError("[enforce fail at inline_container.cc:672] . "
                                           "unexpected pos 256064 vs 255956"),
                              "the write stopped short, as it does on a full disk")}


@pytest.mark.parametrize("kind", FULL_DISK)
def test_full_disk_keeps_the_previous_checkpoint(dataset, run_dir, monkeypatch, capsys, kind):
    original, calls = torch.save, [0]
    error, reason = FULL_DISK[kind]

    def full_disk(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            with open(f, "wb") as out:
                out.write(b"partial")
            raise error
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", str(run_input(dataset, run_dir, steps=12))]) == 2
    err = capsys.readouterr().err
    assert f"cannot write checkpoint {Path('model.ckpt-10.pt')}: {reason}" in err
    assert re.search(rf"MiB free in {re.escape(str(run_dir.resolve()))}; the previous "
                     rf"checkpoint is kept\)", err), err
    assert "Traceback" not in err
    files = assert_intact(run_dir)
    assert [f.name for f in files] == ["model.ckpt-5.pt"]
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]
    assert not (run_dir / ".model.ckpt.lock").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs at tmp_path/disk (mounting needs root or a user namespace)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_real_full_disk(dataset, run_dir, small_disk):
    """A checkpoint that does not fit: one line naming it and the free space, rc 2."""
    (small_disk / "filler").write_bytes(b"\0" * (3 * 2**20 - 64 * 2**10))
    inp = run_input(dataset, run_dir, steps=6, save_ckpt=str(small_disk / "model.ckpt"))
    res = subprocess.run(dpx("train", inp), cwd=run_dir, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr
    assert re.match(rf"dpx train: error: cannot write checkpoint {small_disk}/model.ckpt-5.pt: "
                    rf".* MiB free in {small_disk}; the previous checkpoint is kept\)", last), last
    assert not list(small_disk.glob("*.pt")) and not list(small_disk.glob(".*.tmp*"))


def test_paths_that_cannot_be_written(dataset, run_dir, capsys):
    (run_dir / "afile").write_text("not a folder")
    inp = run_input(dataset, run_dir, steps=2, save_ckpt="afile/model.ckpt")
    assert main(["train", str(inp)]) == 2
    assert "a part of that path is a file, not a folder" in capsys.readouterr().err
    # an HDF5 stat file in a folder that does not exist yet: made
    inp = run_input(dataset, run_dir, steps=2, stat_file="stats/sub/stat.h5")
    assert main(["train", str(inp)]) == 0
    assert (run_dir / "stats" / "sub" / "stat.h5").exists()


@pytest.mark.slow
def test_a_second_run_in_the_folder_is_refused(dataset, run_dir, capsys):
    first = subprocess.Popen(dpx("train", run_input(dataset, run_dir, steps=100000)),
                             cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run_dir / "model.ckpt-5.pt").exists():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.05)
        inp = write(run_dir / "second.json", small_input(dataset, steps=2))
        assert main(["train", str(inp), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"another run (pid {first.pid}, started" in err
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert_intact(run_dir)
    # its lock is stale now: a restart removes it and continues
    assert main(["train", str(run_input(dataset, run_dir, steps=12)), "--restart",
                 "model.ckpt.pt"]) == 0
    assert "removed the stale lock" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "{\"pid\": 12", "null", "\xff\xfe"])
def test_a_lock_that_names_no_run_is_removed(dataset, run_dir, capsys, content):
    """An empty or unreadable lock (left by an older dpx, or a run on a filesystem without
    hard links, that died while writing it) has no owner: removed with a warning, as a stale
    one is, once it is old (a young one may be being written: see the next test)."""
    lock = run_dir / ".model.ckpt.lock"
    lock.write_text(content, errors="surrogateescape")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    assert main(["train", str(run_input(dataset, run_dir, steps=2))]) == 0
    err = capsys.readouterr().err
    assert "removed the lock" in err and "it names no run (empty or unreadable)" in err
    assert not lock.exists()


def test_a_young_empty_lock_is_left_alone(dataset, run_dir, capsys):
    """Where a run creates its lock empty and then writes it (no hard links), a lock seen
    empty a moment ago is a run starting: refused, rc 2, and the lock kept."""
    lock = run_dir / ".model.ckpt.lock"
    lock.write_text("")
    assert main(["train", str(run_input(dataset, run_dir, steps=2))]) == 2
    assert "another run is taking the run lock now" in last_error(capsys)
    assert lock.exists()


def test_a_folder_without_hard_links(dataset, run_dir, monkeypatch, capsys):
    """Some FUSE mounts and SMB refuse hard links: the lock is created and written in place,
    and a run still takes it, is refused by it, and releases it."""
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    held, take = [], RunFiles.lock

    def lock(self):
        take(self)
        held.extend(json.loads(p.read_text())["pid"] for p in self.locks)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(RunFiles, "lock", lock)
    assert main(["train", str(run_input(dataset, run_dir, steps=2))]) == 0
    assert held == [os.getpid()]
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    files = RunFiles(str(run_dir / "model.ckpt"), str(run_dir / "lcurve.out"))
    (run_dir / ".model.ckpt.lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))
    with pytest.raises(ValueError, match=r"another run \(pid 1, started"):
        files.lock()


BREAKING_A_STALE_LOCK = """
import sys, time
from pathlib import Path
from dpx.train import run_files

lock, stale = Path(sys.argv[1]), f'"pid": {sys.argv[2]},'
real = run_files.alive


def holder() -> str:
    try:
        return lock.read_text()
    except OSError:
        return stale


def slow_alive(pid):
    # this run has read the stale holder; the other one takes the lock now (or waits)
    print("judging", flush=True)
    deadline = time.time() + 2
    while time.time() < deadline and stale in holder():
        time.sleep(0.01)
    return real(pid)


run_files.alive = slow_alive
try:
    run_files.RunFiles(str(lock.parent / "model.ckpt"), "lcurve.out")._take(lock)
    print("took", flush=True)
except ValueError as e:
    print("refused:", e, flush=True)
sys.stdin.read()  # alive until the other run has tried
"""


def test_two_runs_breaking_one_stale_lock(tmp_path):
    """Two runs start at once in a folder whose lock is stale. B has judged the old holder
    gone when A replaces the lock with its own: B must not then remove A's live lock and
    link its own. Whatever the interleaving, one run holds the lock."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".model.ckpt.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    b = subprocess.Popen([sys.executable, "-c", BREAKING_A_STALE_LOCK, str(lock), str(dead.pid)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert b.stdout.readline() == "judging\n"
        try:
            RunFiles(str(tmp_path / "model.ckpt"), str(tmp_path / "lcurve.out"))._take(lock)
            took_a = True
        except ValueError as e:
            assert f"another run (pid {b.pid}, started" in str(e)
            took_a = False
        out = b.communicate("", timeout=60)[0]
    finally:
        b.kill()
    took_b = out.startswith("took")
    assert took_a + took_b == 1, out
    assert json.loads(lock.read_text())["pid"] == (os.getpid() if took_a else b.pid)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.ckpt.lock"]


def test_taking_the_lock_never_leaves_a_partial_file(dataset, run_dir, monkeypatch, capsys):
    """A lock is complete when it appears: a write that fails (a full disk) leaves none."""
    def full_disk(self, *args, **kwargs):
        with open(self, "w") as f:
            f.write("{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    inp = run_input(dataset, run_dir, steps=2)
    monkeypatch.setattr(Path, "write_text", full_disk)
    assert main(["train", str(inp)]) == 2
    err = capsys.readouterr().err
    assert "could not take the run lock: No space left on device" in err
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]


def test_a_run_prunes_only_its_own_checkpoints(dataset, run_dir):
    (run_dir / "other").mkdir()
    assert main(["train", str(run_input(dataset, run_dir / "other", steps=5,
                                        save_ckpt=str(run_dir / "model.ckpt"),
                                        disp_file=str(run_dir / "other" / "lcurve.out")))]) == 0
    other = run_dir / "model.ckpt-5.pt"
    for step in (100, 101, 102):  # another run's results under the same name
        (run_dir / f"model.ckpt-{step}.pt").write_bytes(other.read_bytes())
    cfg = small_input(dataset, steps=6, save_freq=1, max_ckpt_keep=3)
    assert main(["train", str(write(run_dir / "in.json", cfg)), "--overwrite"]) == 0
    names = sorted(p.name for p in run_dir.glob("model.ckpt-*.pt"))
    assert names == sorted(["model.ckpt-4.pt", "model.ckpt-5.pt", "model.ckpt-6.pt",
                            "model.ckpt-100.pt", "model.ckpt-101.pt", "model.ckpt-102.pt"])
    # a restart continues the run's own list: 4..7 pruned, 100..102 kept
    cfg["training"]["numb_steps"] = 10
    assert main(["train", str(write(run_dir / "in.json", cfg)), "--restart",
                 "model.ckpt-6.pt"]) == 0
    names = sorted(p.name for p in run_dir.glob("model.ckpt-*.pt"))
    assert names == sorted(["model.ckpt-8.pt", "model.ckpt-9.pt", "model.ckpt-10.pt",
                            "model.ckpt-100.pt", "model.ckpt-101.pt", "model.ckpt-102.pt"])


def test_a_new_run_does_not_replace_an_earlier_one_unasked(dataset, run_dir, capsys):
    inp = run_input(dataset, run_dir, steps=5)
    assert main(["train", str(inp)]) == 0
    before = (run_dir / "lcurve.out").read_text()
    assert main(["train", str(inp)]) == 2
    err = capsys.readouterr().err
    assert "holds an earlier run's files (model.ckpt-5.pt, lcurve.out, model.ckpt.pt)" in err
    assert "--restart" in err and "--overwrite" in err
    assert (run_dir / "lcurve.out").read_text() == before
    assert main(["train", str(inp), "--overwrite"]) == 0


def test_an_earlier_lcurve_without_checkpoints_is_kept_aside(dataset, run_dir, capsys):
    """An lcurve.out and no checkpoint (a workflow's task folder run again): the new run
    starts, the old file is kept under its time stamp. Checkpoints still refuse."""
    inp = run_input(dataset, run_dir, steps=2)
    assert main(["train", str(inp)]) == 0
    before = (run_dir / "lcurve.out").read_text()
    for p in run_dir.glob("model.ckpt*.pt"):
        p.unlink()
    os.utime(run_dir / "lcurve.out", (0, 1_700_000_000))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1_700_000_000))
    capsys.readouterr()
    assert main(["train", str(inp)]) == 0
    assert (run_dir / f"lcurve.out.{stamp}").read_text() == before
    assert f"kept as lcurve.out.{stamp}" in capsys.readouterr().err
    assert len(lcurve_rows(run_dir / "lcurve.out")) == 2  # the new run's
    assert main(["train", str(inp)]) == 2  # with its checkpoints: refused, nothing moved
    assert sorted(p.name for p in run_dir.glob("lcurve.out*")) == ["lcurve.out",
                                                                   f"lcurve.out.{stamp}"]
    for p in run_dir.glob("model.ckpt*.pt"):
        p.unlink()
    os.utime(run_dir / "lcurve.out", (0, 1_700_000_000))
    assert main(["train", str(inp)]) == 0  # the same time stamp again: a new name
    assert (run_dir / f"lcurve.out.{stamp}-1").exists()


def test_restart_truncates_the_rows_after_its_checkpoint(dataset, run_dir, reference):
    """The rows written between the last checkpoint and a crash are not repeated."""
    inp = run_input(dataset, run_dir, steps=STEPS)
    assert main(["train", str(inp)]) == 0
    for step in range(30, STEPS + 1, 5):  # as if the run had died just before step 30's save
        (run_dir / f"model.ckpt-{step}.pt").unlink()
    assert main(["train", str(inp), "--restart", "model.ckpt-25.pt"]) == 0
    rows = lcurve_rows(run_dir / "lcurve.out")
    steps = [int(r.split()[0]) for r in rows]
    assert steps == sorted(set(steps))
    assert rows == reference[1]


@pytest.mark.parametrize("steps", [5, 10])
def test_restart_with_no_step_left_changes_nothing(dataset, run_dir, capsys, steps):
    """numb_steps at or below the checkpoint's step: said, rc 0, no row or file removed."""
    assert main(["train", str(run_input(dataset, run_dir, steps=20))]) == 0

    def files():
        return {p.name: p.read_bytes() for p in run_dir.iterdir()
                if p.name not in ("in.json", "out.json")}
    before = files()
    capsys.readouterr()
    assert main(["train", str(run_input(dataset, run_dir, steps=steps)), "--restart",
                 "model.ckpt-10.pt"]) == 0
    err = capsys.readouterr().err
    assert f"nothing to train: the checkpoint is at step 10 and the run has {steps} steps" in err
    assert "finished" not in err
    assert files() == before


def test_a_corrupt_stat_file_names_its_file(dataset, run_dir, capsys):
    cfg = small_input(dataset, steps=0, stat_file="stat")
    assert main(["train", str(write(run_dir / "a.json", cfg))]) == 0
    (bias,) = run_dir.glob("stat/*/bias_atom_energy.npy")
    bias.write_bytes(b"\x93NUMPY\x05\x00garbage")
    capsys.readouterr()
    assert main(["train", str(write(run_dir / "a.json", cfg)), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{bias.relative_to(run_dir)}: cannot read as a .npy array: we only support format " \
           f"version" in err
    assert "(a part of the stat file stat; delete it and the statistics are computed " \
           "again)" in err


def test_restart_from_a_file_that_is_no_checkpoint(dataset, run_dir, capsys):
    (run_dir / "x.pt").write_text("echo hello\n")
    assert main(["train", str(run_input(dataset, run_dir, steps=2)), "--restart", "x.pt"]) == 2
    assert "x.pt is not a readable checkpoint (not a zip archive); expected a " \
           "model.ckpt-<step>.pt written by dpx or DeePMD-kit training" in capsys.readouterr().err


def test_a_system_without_a_weighted_label_is_refused(dataset, run_dir, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    for f in (data / "train").glob("*/set.*/force.npy"):
        f.unlink()
    assert main(["train", str(run_input(data, run_dir, steps=2))]) == 2
    assert re.search(r"training/training_data/systems: system \S+/train/water_\d+ has no "
                     r"force\.npy in any set, and loss/start_pref_f and limit_pref_f weight it",
                     capsys.readouterr().err)
    cfg = small_input(data, steps=2, disp_freq=1)
    cfg["loss"].update(start_pref_f=0, limit_pref_f=0)
    assert main(["train", str(write(run_dir / "in.json", cfg))]) == 0  # find_force = 0


def test_numb_steps_0(dataset, run_dir, capsys):
    inp = run_input(dataset, run_dir, steps=0)
    assert main(["train", str(inp)]) == 0
    rows = lcurve_rows(run_dir / "lcurve.out")
    assert len(rows) == 1 and rows[0].split()[0] == "0"
    capsys.readouterr()
    assert main(["show", "model.ckpt-0.pt"]) == 0
    assert "training step: 0 " in capsys.readouterr().err


def test_out_json_is_the_whole_input(dataset, run_dir):
    import json

    from dpx.config import parse_input
    inp = run_input(dataset, run_dir, steps=2)
    assert main(["train", str(inp)]) == 0
    out = json.loads((run_dir / "out.json").read_text())
    assert set(out) == {"model", "learning_rate", "optimizer", "loss", "training"}
    assert out["learning_rate"]["decay_steps"] == 50 and out["loss"]["start_pref_f"] == 1000
    assert isinstance(out["model"]["descriptor"]["sel"], list)
    assert out["training"]["training_data"]["systems"]
    parse_input(out, base_dir=run_dir)  # it reads back


def test_stat_file_of_other_data_is_recomputed(dataset, run_dir, capsys):
    cfg = small_input(dataset, steps=0, stat_file="stat")
    assert main(["train", str(write(run_dir / "a.json", cfg))]) == 0
    other = small_input(dataset, steps=0, stat_file="stat", save_ckpt="b/model.ckpt",
                        disp_file="b/lcurve.out")
    other["training"]["training_data"]["systems"] = [str(dataset / "valid")]
    capsys.readouterr()
    assert main(["train", str(write(run_dir / "b.json", other))]) == 0
    err = capsys.readouterr().err
    assert re.search(r"stat was made from other data \(systems, nframes differ", err), err
    fresh = dict(other, training=dict(other["training"], save_ckpt="c/model.ckpt",
                                      disp_file="c/lcurve.out"))
    fresh["training"].pop("stat_file")
    assert main(["train", str(write(run_dir / "c.json", fresh))]) == 0
    b, c = weights(run_dir / "b" / "model.ckpt-0.pt"), weights(run_dir / "c" / "model.ckpt-0.pt")
    for k in b:
        if k.endswith(("mean", "stddev", "out_bias")):
            assert torch.equal(b[k], c[k]), k
    # the same data again: the cache is used, and the log says where it came from
    capsys.readouterr()
    assert main(["train", str(write(run_dir / "b.json", other)), "--overwrite"]) == 0
    assert "descriptor statistics read from" in capsys.readouterr().err


def test_stat_file_of_changed_labels_is_recomputed(dataset, tmp_path, run_dir, capsys):
    """Issue 29.12: the same systems and frame counts, other energies (the file's size and
    mtime kept, so only the hash of the labels sees it): the bias is recomputed."""
    import shutil

    import numpy as np
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    cfg = small_input(data, steps=0, stat_file="stat")
    assert main(["train", str(write(run_dir / "a.json", cfg))]) == 0
    before = weights(run_dir / "model.ckpt-0.pt")
    energy = sorted(data.glob("train/*/set.*/energy.npy"))[0]
    st = energy.stat()
    np.save(energy, np.load(energy) + 5.0)
    os.utime(energy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert energy.stat().st_size == st.st_size
    capsys.readouterr()
    assert main(["train", str(write(run_dir / "a.json", cfg)), "--overwrite"]) == 0
    err = capsys.readouterr().err
    system = energy.parent.parent
    assert re.search(rf"stat was made from other data \(contents differ: the files or labels "
                     rf"of {re.escape(str(system))} changed\); the statistics are recomputed",
                     err), err
    after = weights(run_dir / "model.ckpt-0.pt")
    key = next(k for k in after if k.endswith("out_bias"))
    assert not torch.allclose(before[key], after[key])
    # the file now records the new contents: a third run reads it
    capsys.readouterr()
    assert main(["train", str(write(run_dir / "a.json", cfg)), "--overwrite"]) == 0
    assert "descriptor statistics read from" in capsys.readouterr().err


def test_stat_file_without_a_record_is_used(dataset, run_dir, capsys):
    """DeePMD-kit's stat file (the same layout, no dpx_provenance) is read, and the log says
    that dpx cannot tell what it was made from."""
    cfg = small_input(dataset, steps=0, stat_file="stat")
    assert main(["train", str(write(run_dir / "a.json", cfg))]) == 0
    (record,) = run_dir.glob("stat/*/dpx_provenance.npy")
    record.unlink()
    capsys.readouterr()
    assert main(["train", str(write(run_dir / "a.json", cfg)), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "holds no record of the data its statistics came from (made by DeePMD-kit" in err
    assert "descriptor statistics read from stat" in err


def fill(disk: Path, free_pages: int = 0) -> None:
    """Fill the tmpfs at disk, leaving free_pages pages of 4 KiB (tmpfs counts pages)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, size - size % 4096 - 4096 * free_pages)


def last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_a_full_disk_under_the_lock_and_out_json(dataset, run_dir, small_disk, capsys):
    """The lock, then out.json (an earlier one kept whole): one line naming the file."""
    inp = run_input(dataset, run_dir, steps=0, save_ckpt=str(small_disk / "model.ckpt"))
    fill(small_disk)
    assert main(["train", str(inp)]) == 2
    assert last_error(capsys) == (f"dpx train: error: {small_disk}/.model.ckpt.lock: could not "
                                  f"take the run lock: No space left on device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    (small_disk / "filler").unlink()
    (small_disk / "out.json").write_text("an earlier run's\n")
    fill(small_disk)
    inp = run_input(dataset, run_dir, steps=0)
    assert main(["train", str(inp), "-o", str(small_disk / "out.json")]) == 2
    assert last_error(capsys) == (f"dpx train: error: cannot write the normalized input to "
                                  f"{small_disk}/out.json: No space left on device")
    assert (small_disk / "out.json").read_text() == "an earlier run's\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "out.json"]


@pytest.mark.parametrize("name", ["stat", "stat.h5"])
def test_a_full_disk_under_the_stat_file(dataset, run_dir, small_disk, capsys, name):
    """A stat file of other data, rewritten on a full disk: one line; once there is room,
    the next run recomputes it (never reads a half-rewritten file as the old data's)."""
    other = small_input(dataset, steps=0, stat_file=str(small_disk / name))
    other["training"]["training_data"]["systems"] = [str(dataset / "valid")]
    assert main(["train", str(write(run_dir / "other.json", other))]) == 0
    fill(small_disk)
    inp = run_input(dataset, run_dir, steps=0, stat_file=str(small_disk / name))
    assert main(["train", str(inp), "--overwrite"]) == 2
    assert last_error(capsys) == (f"dpx train: error: cannot write the stat file "
                                  f"{small_disk / name}: No space left on device")
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]
    (small_disk / "filler").unlink()
    assert main(["train", str(inp), "--overwrite"]) == 0
    assert "the statistics are recomputed" in capsys.readouterr().err


def test_a_full_disk_under_lcurve(dataset, run_dir, small_disk, capsys):
    """lcurve.out fills the disk: one line; the rows and checkpoints written are kept. A
    restart that must cut its rows on a full disk leaves it as it was."""
    lcurve = small_disk / "lcurve.out"
    fill(small_disk, free_pages=2)  # the lock's page and one page of rows
    inp = run_input(dataset, run_dir, steps=60, disp_file=str(lcurve))
    assert main(["train", str(inp)]) == 2
    assert last_error(capsys) == (f"dpx train: error: cannot write {lcurve}: No space left on "
                                  f"device")
    assert len(lcurve_rows(lcurve)) > 5 and assert_intact(run_dir)
    (small_disk / "filler").unlink()
    lcurve.unlink()
    inp = run_input(dataset, run_dir, steps=12, disp_file=str(lcurve))
    assert main(["train", str(inp), "--overwrite"]) == 0
    before = lcurve.read_text()
    fill(small_disk, free_pages=1)  # the lock's page
    assert main(["train", str(inp), "--restart", "model.ckpt-5.pt"]) == 2
    assert last_error(capsys) == (f"dpx train: error: cannot write {lcurve} (without the rows "
                                  f"after step 5): No space left on device; it is kept as it "
                                  f"was")
    assert lcurve.read_text() == before
