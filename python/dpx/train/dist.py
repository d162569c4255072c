"""Data-parallel training on torch.distributed (launched by torchrun; gloo on CPU, NCCL on GPU).

Gradients are synchronized by one all-reduce of all trainable parameters per step, the same
collectives on every rank whichever branch it drew, so no rank can wait for a collective that
another rank skips (DeePMD-kit's DDP with per-rank branches could hang). Each parameter's
gradient is divided by the number of ranks whose branch uses it: shared parameters are
averaged over all ranks, a branch's private parameters over the ranks that drew the branch
(so their step does not shrink as ranks are added); a parameter no rank used keeps no
gradient and Adam leaves it alone.
"""
from __future__ import annotations

import datetime
import logging
import os
import signal
import socket
import time
from contextlib import contextmanager

import torch
import torch.distributed as dist

from dpx.io.checkpoint import first_line
from dpx.train.run_files import alive

log = logging.getLogger(__name__)
_peers: list[tuple[str, int]] = []  # (host, pid) of each rank, to tell which one is gone


class LostRank(Exception):
    """A collective failed because a rank is gone (torchrun then stops the job). Its text is
    the one line each surviving rank prints; the trainer fills in the last checkpoint."""

    def __init__(self, rank: int, lost: list[int], detail: str):
        super().__init__(rank, lost, detail)
        self.rank, self.lost, self.detail, self.checkpoint = rank, lost, detail, None

    def __str__(self) -> str:
        who = (f"rank {', '.join(map(str, self.lost))} (it exited or was killed)" if self.lost
               else f"another rank (torch: {self.detail})")
        last = f"; the last checkpoint is {self.checkpoint}" if self.checkpoint else ""
        return f"rank {self.rank}: lost contact with {who}{last}"


@contextmanager
def alone_on_node(distributed: bool):
    """Rank 0's start-up work while the other ranks wait for its result (neighbor and data
    statistics): every CPU this process may run on, instead of torchrun's OMP_NUM_THREADS=1
    per rank (on a node of 8 ranks and 64 cores the scan of millions of frames ran on one).
    A single process keeps its threads as they are."""
    before = torch.get_num_threads()
    if distributed:
        torch.set_num_threads(max(before, len(os.sched_getaffinity(0))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _collective(op, *args, **kwargs):
    """op(*args) on the process group; a failure (gloo: 'Connection reset by peer', NCCL: a
    remote error or the timeout) is a LostRank naming the ranks whose process is gone."""
    try:
        return op(*args, **kwargs)
    except RuntimeError as e:
        raise LostRank(world()[0], _gone_ranks(), first_line(e)) from None


def _on_sigterm(signum, frame):
    """torchrun stops the other ranks with SIGTERM ~0.1 s after one dies: a rank that has not
    yet seen its collective fail (a loaded machine, a long step) still says which is gone;
    a stop for any other reason ends quietly."""
    gone = _gone_ranks(0)
    if gone:
        raise LostRank(world()[0], gone, "stopped by torchrun")
    raise SystemExit(128 + signum)


def _gone_ranks(wait_s: float = 0.05) -> list[int]:
    """The ranks on this host whose process has ended. A peer's sockets close as it dies,
    a moment before it is a zombie, so look again briefly; ranks on other hosts cannot be
    told apart (then none is named)."""
    host, deadline = socket.gethostname(), time.monotonic() + wait_s
    while True:
        gone = [r for r, (h, pid) in enumerate(_peers) if h == host and not alive(pid)]
        if gone or time.monotonic() > deadline:
            return gone
        time.sleep(0.005)


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def local_device(device: torch.device, local_rank: int, count: int) -> torch.device:
    """The GPU of this rank: torchrun's LOCAL_RANK where the user named none (NCCL refuses two
    ranks on one GPU, and every rank on cuda:0 would share its memory)."""
    if device.type != "cuda" or device.index is not None:
        return device
    if local_rank >= count:
        raise ValueError(f"LOCAL_RANK {local_rank} but {count} CUDA device(s) are visible: start "
                         f"at most {count} ranks per node (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)


def init(device: torch.device) -> bool:
    """Join the process group when launched by torchrun. A rank that dies makes torchrun stop
    the others; the timeout bounds a collective that can never complete."""
    rank, size = world()
    if size == 1 or dist.is_initialized():
        return size > 1
    backend = "nccl" if device.type == "cuda" else "gloo"
    minutes = float(os.environ.get("DPX_DIST_TIMEOUT_MIN", "10"))
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    peers: list = [None] * size
    dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    _peers[:] = peers
    signal.signal(signal.SIGTERM, _on_sigterm)
    log.info("rank %d of %d joined (%s)", rank, size, backend)
    return True


def broadcast_object(obj):
    """rank 0's obj on every rank."""
    box = [obj]
    _collective(dist.broadcast_object_list, box, src=0)
    return box[0]


def broadcast_state(module: torch.nn.Module) -> None:
    """rank 0's parameters and buffers (statistics included) on every rank."""
    with torch.no_grad():
        for t in module.state_dict().values():
            if isinstance(t, torch.Tensor) and t.numel():
                _collective(dist.broadcast, t, src=0)


def sync_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum gradients and usage counts over ranks; divide each by its count."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])
    used = torch.tensor([float(p.grad is not None) for p in params], dtype=flat.dtype,
                        device=flat.device)
    _collective(dist.all_reduce, flat)
    _collective(dist.all_reduce, used)
    offset = 0
    for p, n in zip(params, used.tolist()):
        size = p.numel()
        p.grad = None if n == 0 else (flat[offset:offset + size] / n).view_as(p)
        offset += size


def lr_scale(mode: str, size: int) -> float:
    """scale_by_worker: none (dpx's default), linear or sqrt of the number of ranks."""
    return {"none": 1.0, "linear": float(size), "sqrt": size ** 0.5}[mode]


def check_in_sync(params: list[torch.nn.Parameter]) -> None:
    """All ranks hold bit-identical parameters (an all-gather of a checksum per rank)."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in params])
        # position weights make the checksum sensitive to where a difference sits
        digest = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1,
                                                               dtype=flat.dtype)).sum()])
        every = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
        _collective(dist.all_gather, every, digest)
    if any(not torch.equal(every[0], d) for d in every[1:]):
        raise RuntimeError(f"parameters diverged across ranks: checksums {every}")
