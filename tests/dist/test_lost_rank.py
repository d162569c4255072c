"""A collective that fails because a rank is gone: one line naming both ranks (fast; the
real torchrun kill is tests/dist/test_ddp.py::test_killing_a_rank_ends_the_job)."""
import os
import socket
import subprocess
import sys

import pytest

from dpx.train import dist


def test_a_failed_collective_names_the_rank_that_is_gone(monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    monkeypatch.setattr(dist, "_peers", [(host, dead.pid), (host, os.getpid())])
    monkeypatch.setenv("RANK", "1")

    def reset(*args):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:6583: "
                           "Connection reset by peer.\nmore")

    with pytest.raises(dist.LostRank) as info:
        dist._collective(reset)
    info.value.checkpoint = "model.ckpt-10.pt"
    assert str(info.value) == ("rank 1: lost contact with rank 0 (it exited or was killed); "
                               "the last checkpoint is model.ckpt-10.pt")
    monkeypatch.setattr(dist, "_peers", [("elsewhere", 1), (host, os.getpid())])
    with pytest.raises(dist.LostRank, match=r"^rank 1: lost contact with another rank \(torch: "
                                            r"\[gloo.*Connection reset by peer\.\)$"):
        dist._collective(reset)


def test_torchruns_stop_signal_names_the_rank_that_is_gone(monkeypatch):
    """A rank that gets torchrun's SIGTERM before its collective fails says it too; a stop
    with every rank alive (Ctrl-C) ends quietly."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    monkeypatch.setattr(dist, "_peers", [(host, os.getpid()), (host, dead.pid)])
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(dist.LostRank, match=r"^rank 0: lost contact with rank 1 \(it exited"):
        dist._on_sigterm(15, None)
    monkeypatch.setattr(dist, "_peers", [(host, os.getpid()), (host, os.getppid())])
    with pytest.raises(SystemExit, match="143"):
        dist._on_sigterm(15, None)
