"""Neighbor statistics of systems (deepmd-compat §2, update_sel): per type, the largest number
of neighbors within rcut any atom has, and the shortest pair distance. sel "auto", the sel
check, min_nbor_dist and `dpx neighbor-stat` read them.

Like DeePMD-kit's, the numbers come from every frame, exactly. What keeps that cheap at
millions of frames: a counting pass (dpx::neighbor_stat: counts and the closest pair, no
list written, frames split over threads) fed by a reader thread that gathers the next frames
(systems with as many atoms go together, ~CHUNK_BYTES of coordinates) while the pass runs on
the last ones; and a cache of each system's result keyed by what it was computed from (a
stat file's entry, train/stat_file.py), so a second run, a restart or a finetune on the same
data reads the numbers back. An estimate from a few frames per system only when asked for.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dpx import ops
from dpx.progress import Ticker

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 << 20  # coordinates handed to one pass: enough frames to keep threads busy
_VERSION = 1  # of what a cached entry means: bump when the counting rule changes


def system_key(system, rcut: float, width: int) -> str | None:
    """What a system's statistics are computed from, as a digest: its files (names, sizes,
    mtimes: the stamp), frames, atom types (model types, after any remapping), rcut and
    whether types count apart. None where the frames came from no file dpx read (nothing
    that would tell a changed system apart)."""
    if not system.stamp:
        return None
    record = [_VERSION, system.name, system.stamp, int(system.nframes),
              hashlib.sha1(np.ascontiguousarray(system.atype, np.int64)).hexdigest(),
              repr(float(rcut)), int(width)]
    return hashlib.sha1(json.dumps(record).encode()).hexdigest()


def sample_frames(nframes: int, at_most: int | None) -> np.ndarray:
    """Every frame, or at most `at_most` spread evenly (first and last included)."""
    if at_most is None or at_most >= nframes:
        return np.arange(nframes)
    return np.unique(np.linspace(0, nframes - 1, max(at_most, 1)).round().astype(np.int64))


def neighbor_counts(systems, rcut: float, ntypes: int, one_type: bool = False, *,
                    cache=None, at_most: int | None = None,
                    stage: str = "neighbor statistics") -> tuple[np.ndarray, float]:
    """(max neighbors per type [ntypes] (one number with one_type: all types as one), minimum
    pair distance) over every frame of the systems (at most `at_most` per system: an estimate).

    cache: an object with get(key) -> (counts, dmin) | None and put(key, counts, dmin), the
    results of single systems (full scans only)."""
    width = 1 if one_type else ntypes
    counts, dmin = np.zeros(width, dtype=np.int64), math.inf
    todo = []
    for sys in systems:
        key = system_key(sys, rcut, width) if cache is not None and at_most is None else None
        hit = cache.get(key) if key else None
        if hit is None:
            todo.append((sys, key, sample_frames(sys.nframes, at_most)))
        else:
            counts, dmin = np.maximum(counts, hit[0]), min(dmin, hit[1])
    if len(todo) < len(systems):
        log.info("%s: %d of %d system(s) read from the stat file", stage,
                 len(systems) - len(todo), len(systems))
    found = _scan(todo, rcut, width, one_type, stage)
    for (sys, key, _), (c, d) in zip(todo, found):
        counts, dmin = np.maximum(counts, c), min(dmin, d)
        if key:
            cache.put(key, c, d)
    return counts, dmin


def _scan(todo, rcut, width, one_type, stage) -> list[tuple[np.ndarray, float]]:
    """Per system of todo (system, key, frames): its counts and closest pair."""
    found = [(np.zeros(width, dtype=np.int64), math.inf) for _ in todo]
    nframes = sum(len(f) for _, _, f in todo)
    ticker = Ticker(log, stage, nframes, "frames")
    chunks = _chunks(todo)
    with ThreadPoolExecutor(1) as reader:  # reads (pread, GIL released) overlap the pass
        ahead = reader.submit(_read, todo, next(chunks, None), one_type)
        while True:
            batch = ahead.result()
            if batch is None:
                break
            ahead = reader.submit(_read, todo, next(chunks, None), one_type)
            pieces, coord, atype, box = batch
            nnei_max, min_dist = ops.neighbor_stat(coord, atype, box, rcut, width)
            lo = 0
            for j, n in pieces:  # a piece holds at least one frame (_chunks)
                c, d = nnei_max[lo:lo + n].amax(dim=0).numpy(), float(min_dist[lo:lo + n].min())
                found[j] = (np.maximum(found[j][0], c), min(found[j][1], d))
                lo += n
            ticker.advance(len(coord), f"system {pieces[-1][0] + 1} of {len(todo)}")
    return found


def _chunks(todo):
    """Lists of (system j, frames) with one atom count and periodicity, ~CHUNK_BYTES of
    coordinates each; a system larger than that is split."""
    group, size, kind = [], 0, None
    for j, (sys, _, frames) in enumerate(todo):
        per_frame = sys.natoms * 24
        step = max(1, CHUNK_BYTES // per_frame)
        for lo in range(0, len(frames), step):
            part = frames[lo:lo + step]
            if group and ((sys.natoms, sys.nopbc) != kind or size + len(part) * per_frame
                          > CHUNK_BYTES):
                yield group
                group, size = [], 0
            group.append((j, part))
            size, kind = size + len(part) * per_frame, (sys.natoms, sys.nopbc)
    if group:
        yield group


def _read(todo, group, one_type):
    """The frames of a chunk as tensors: pieces [(j, nframes)], coord, atype, box."""
    if group is None:
        return None
    coord = np.concatenate([np.asarray(todo[j][0].coord[f]) for j, f in group])
    nopbc = todo[group[0][0]][0].nopbc
    box = None if nopbc else np.concatenate([np.asarray(todo[j][0].box[f]) for j, f in group])
    atype = np.concatenate([np.broadcast_to(todo[j][0].atype, (len(f), todo[j][0].natoms))
                            for j, f in group])
    atype = torch.from_numpy(np.ascontiguousarray(atype, dtype=np.int64))
    if one_type:  # all types as one; virtual atoms (< 0) stay virtual
        atype = torch.where(atype >= 0, 0, atype)
    return ([(j, len(f)) for j, f in group], torch.from_numpy(coord), atype,
            None if box is None else torch.from_numpy(box))
