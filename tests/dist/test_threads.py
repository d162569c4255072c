"""Rank 0's start-up work (neighbor and data statistics) runs on every CPU the process may
use while the other ranks wait, not on torchrun's one thread per rank; the threads are given
back after it, and a single process keeps its own setting."""
import os

import torch

from dpx.train import dist


def test_rank_zero_takes_the_node_while_the_others_wait(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what torchrun's OMP_NUM_THREADS=1 gives each rank
    try:
        with dist.alone_on_node(True):
            assert torch.get_num_threads() == 6
        assert torch.get_num_threads() == 1
        with dist.alone_on_node(False):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
