"""Batches for training, validation and statistics (deepmd-compat §1.5-§1.7, §9.2).

DeePMD runs one torch DataLoader per system under an outer DataLoader with worker processes;
with 30 multi-task branches that is 30 x NUM_WORKERS processes (deepmd-kit PR #4535). Here
one DataSampler per data section draws a system, then that system's next batch, from a numpy
Generator it owns, in the calling process. A batch reads its frames from memory (small data
sets) or from the set files (frames.Column: a few preads of a few KB per frame), so there is
little for workers to hide, and the whole sampler state is a small dict of plain values that
a checkpoint can carry for an exact resume.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from dpx.data.schema import System
from dpx.progress import Ticker

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- batch sizes, probabilities

def resolve_batch_size(batch_size, natoms: list[int], key: str = "batch_size") -> list:
    """Per-system batch sizes; None marks a system dropped by "filter:N".

    int B; list (one per system); "auto" = "auto:32"; "auto:N" = ceil(N/natoms);
    "max:N" = max(1, N//natoms); "filter:N" = "max:N" after dropping systems with more
    than N atoms.
    """
    if isinstance(batch_size, (list, tuple)):
        if len(batch_size) != len(natoms):
            raise ValueError(f"{key}: a list of {len(batch_size)} batch sizes for "
                             f"{len(natoms)} systems; give one per system")
        return [_positive(key, b) for b in batch_size]
    if not isinstance(batch_size, str):
        return [_positive(key, batch_size)] * len(natoms)
    rule, _, arg = batch_size.partition(":")
    if rule == "auto" and not arg:
        arg = "32"
    if rule not in ("auto", "max", "filter") or not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"{key}: {batch_size!r} is not a batch size; expected an integer, "
                         "a list, \"auto\", \"auto:N\", \"max:N\" or \"filter:N\" (N >= 1)")
    limit = int(arg)
    if rule == "auto":
        return [-(-limit // n) for n in natoms]
    return [None if rule == "filter" and n > limit else max(1, limit // n) for n in natoms]


def _positive(key: str, b) -> int:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"{key}: batch size {b!r} must be a positive integer")
    return int(b)


def system_probs(nbatches: list[int], sys_probs=None, auto_prob: str = "prob_sys_size",
                 key: str = "training_data") -> np.ndarray:
    """System sampling probabilities: sys_probs if given, else auto_prob."""
    nbatches = np.asarray(nbatches, dtype=np.float64)
    if sys_probs is not None:
        probs = process_sys_probs(sys_probs, nbatches, f"{key}/sys_probs")
    elif auto_prob == "prob_uniform":
        probs = np.full(nbatches.size, 1.0 / nbatches.size)
    elif auto_prob == "prob_sys_size":
        probs = prob_sys_size_ext(f"prob_sys_size;0:{nbatches.size}:1.0", nbatches)
    elif auto_prob.startswith("prob_sys_size;"):
        probs = prob_sys_size_ext(auto_prob, nbatches, f"{key}/auto_prob")
    else:
        raise ValueError(f"{key}/auto_prob: unknown style {auto_prob!r}; expected "
                         "\"prob_uniform\", \"prob_sys_size\" or \"prob_sys_size;a:b:w;...\"")
    return probs / probs.sum()


def process_sys_probs(sys_probs, nbatches, key: str = "sys_probs") -> np.ndarray:
    """Entries >= 0 as given; negative ones share 1 - sum(given) in proportion to nbatches."""
    probs = np.asarray(sys_probs, dtype=np.float64)
    nbatches = np.asarray(nbatches, dtype=np.float64)
    if probs.shape != nbatches.shape:
        raise ValueError(f"{key}: {probs.size} entries for {nbatches.size} systems")
    given = probs >= 0
    assigned = float(probs[given].sum())
    if assigned > 1.0 + 1e-8:  # tolerance as deepmd (#1917)
        raise ValueError(f"{key}: the non-negative entries sum to {assigned:.6g} > 1")
    rest = 1.0 - assigned
    out = np.where(given, probs, 0.0)
    if not np.isclose(rest, 0.0):
        if given.all():
            raise ValueError(f"{key}: entries sum to {assigned:.6g}, not 1, and no negative "
                             "entry takes the remainder")
        share = np.where(given, 0.0, nbatches)
        out = out + rest * share / share.sum()
    return out


def prob_sys_size_ext(spec: str, nbatches, key: str = "auto_prob") -> np.ndarray:
    """"prob_sys_size;a:b:w;...": block [a, b) gets weight w (normalized); inside a block
    probability is proportional to the number of batches; systems in no block get 0."""
    nbatches = np.asarray(nbatches, dtype=np.float64)
    blocks = [_block(part, spec, nbatches.size, key) for part in spec.split(";")[1:]]
    total = sum(w for _, _, w in blocks)
    if not blocks or total <= 0:
        raise ValueError(f"{key}: {spec!r} has no block with positive weight")
    probs = np.zeros(nbatches.size)
    for start, stop, weight in blocks:  # a later block overwrites an overlap, as in deepmd
        part = nbatches[start:stop]
        probs[start:stop] = part / part.sum() * weight / total
    return probs


def _block(part: str, spec: str, nsys: int, key: str) -> tuple[int, int, float]:
    fields = part.split(":")
    try:
        start, stop, weight = int(fields[0]), int(fields[1]), float(fields[2])
        ok = len(fields) == 3 and 0 <= start < stop <= nsys and weight >= 0
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"{key}: block {part!r} of {spec!r} is not a:b:w with "
                         f"0 <= a < b <= {nsys} (systems) and w >= 0")
    return start, stop, weight


def total_numb_batch(nbatches, probs) -> int:
    """Batches in one "epoch" (numb_epoch, §9.2): ceil(max over p_i > 0 of nbatch_i / p_i)."""
    nbatches = np.asarray(nbatches, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    valid = probs > 0
    return int(np.ceil(np.max(nbatches[valid] / probs[valid])))


# ---------------------------------------------------------------- batches

# What the statistics read of a sample besides coord, atype and box: the energy bias
# (energy), the fitting's input statistics (fparam, aparam). Forces, virials and the atomic
# labels are left out of statistics samples: they were ~60 % of a sample's memory, 10 frames
# of each of thousands of systems held per branch (issue 28).
STAT_LABELS = ("energy", "fparam", "aparam")


def collate(system: System, fids, sid: int, find_frame: int | None = None,
            labels=None) -> dict:
    """Frames `fids` of one system as a batch of torch tensors (nb = len(fids)).

    coord [nb, natoms, 3] f64, atype [nb, natoms] i64, box [nb, 9] f64 or None (nopbc),
    energy [nb, 1], force [nb, natoms, 3], virial [nb, 9], atom_ener [nb, natoms],
    atom_pref [nb, natoms*3], atom_ener_coeff [nb, natoms] (fparam [nb, k],
    aparam [nb, natoms, k] when the data has them); find_<label> float 0/1, taken from the
    first frame as deepmd's collate_batch does (or from find_frame: a rank's share of a
    global batch keeps the global batch's); natoms int; sid int; fid list of ints. labels:
    only these of the labels (and their find_ flags), all when None.
    """
    idx = np.asarray(fids, dtype=np.int64)
    first = int(idx[0]) if find_frame is None else find_frame
    keys = system.labels if labels is None else [k for k in system.labels if k in labels]
    batch = {
        "coord": torch.from_numpy(system.coord[idx]),
        "atype": torch.from_numpy(np.repeat(system.atype[None], idx.size, axis=0)),
        "box": None if system.box is None else torch.from_numpy(system.box[idx]),
    }
    for key in keys:
        batch[key] = torch.from_numpy(system.labels[key][idx])
        batch[f"find_{key}"] = float(system.find[key][first])
    batch.update(natoms=system.natoms, sid=int(sid), fid=idx.tolist())
    return batch


@dataclass
class _Pass:
    """One shuffled pass over a system's frames; perm is rebuilt from seed on resume."""
    seed: int
    cursor: int
    perm: np.ndarray


def _ntypes(systems: list[System]) -> int:
    maps = [len(s.type_map) for s in systems if s.type_map is not None]
    return max(maps + [int(s.atype.max()) + 1 for s in systems])


class DataSampler:
    """Draws batches for one data section: a system by its probability, then its next batch.

    systems: loaded systems (load_systems); batch_size, sys_probs, auto_prob: the section's
    settings (§1.5, §1.6); seed: int or sequence of ints (e.g. (seed, rank, branch)) for the
    Generator this sampler owns; ntypes: len(model type_map), for type counts; key: the
    section's path in error messages. After "filter:N", `systems` holds only the kept ones
    and `sid` indexes that list.
    """

    def __init__(self, systems: list[System], batch_size="auto", *, sys_probs=None,
                 auto_prob: str = "prob_sys_size", seed=None, ntypes: int | None = None,
                 key: str = "training_data"):
        if not systems:
            raise ValueError(f"{key}: no systems to sample from")
        sizes = resolve_batch_size(batch_size, [s.natoms for s in systems], f"{key}/batch_size")
        kept = [i for i, b in enumerate(sizes) if b is not None]
        if not kept:
            raise ValueError(f"{key}/batch_size: {batch_size!r} drops every system "
                             f"(atom counts {sorted({s.natoms for s in systems})})")
        if len(kept) < len(systems):
            log.info("%s: %s drops %d of %d systems", key, batch_size,
                     len(systems) - len(kept), len(systems))
        self.key = key
        self.systems = [systems[i] for i in kept]
        self.batch_sizes = [sizes[i] for i in kept]
        self.nbatches = [math.ceil(s.nframes / b) for s, b in zip(self.systems, self.batch_sizes)]
        self.probs = system_probs(self.nbatches, sys_probs, auto_prob, key)
        cdf = np.cumsum(self.probs)
        self._cdf = cdf / cdf[-1]  # exactly 1 at the end, so a draw in [0, 1) always lands
        self.ntypes = ntypes or _ntypes(self.systems)
        self._rng = np.random.default_rng(seed)
        self._passes: list[_Pass | None] = [None] * len(self.systems)
        self._log_summary()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self.next_batch()

    def next_batch(self) -> dict:
        return self.batch_from(self.draw_system())

    def draw_system(self) -> int:
        return int(np.searchsorted(self._cdf, self._rng.random(), side="right"))

    def next_share(self, rank: int, world: int) -> dict:
        """This rank's frames of the next global batch: rows rank, rank + world, ... (row 0
        when a short last batch of a pass has fewer frames than ranks, so every rank still
        takes its step). Only these frames are read; the draws are those of next_batch."""
        sid = self.draw_system()
        fids = self._take(sid)
        mine = fids[rank::world] if rank < fids.size else fids[:1]
        return collate(self.systems[sid], mine, sid, find_frame=int(fids[0]))

    def batch_from(self, sid: int) -> dict:
        """The next batch of system sid (a new shuffled pass when the last one is used up)."""
        return collate(self.systems[sid], self._take(sid), sid)

    def sample(self, n: int = 1) -> list[dict]:
        """n batches, e.g. validation's numb_btch per display step."""
        return [self.next_batch() for _ in range(n)]

    def total_numb_batch(self) -> int:
        return total_numb_batch(self.nbatches, self.probs)

    def stat_input(self, nbatch: int = 10, seed=0, order=None) -> list[dict]:
        """Statistics frames (§1.7) from a Generator of their own: the training draws stay
        the same whether or not statistics are computed (a resumed run skips them). order:
        a callable (systems, batch_sizes, nbatch) -> each system's frame order, in place of
        the seeded shuffle (DeePMD-kit's, dpx.train.stat_order)."""
        perms = None if order is None else order(self.systems, self.batch_sizes, nbatch)
        return make_stat_input(self.systems, self.batch_sizes, nbatch, seed, self.ntypes,
                               perms)

    def _take(self, sid: int) -> np.ndarray:
        cur = self._passes[sid]
        nframes = self.systems[sid].nframes
        if cur is None or cur.cursor >= nframes:
            seed = int(self._rng.integers(2**63))
            cur = self._passes[sid] = _Pass(seed, 0, _permutation(seed, nframes))
        fids = cur.perm[cur.cursor:cur.cursor + self.batch_sizes[sid]]
        cur.cursor += fids.size
        return fids

    def state_dict(self) -> dict:
        """Generator state and each system's pass (seed, cursor): plain ints and lists."""
        return {
            "rng": self._rng.bit_generator.state,
            "passes": [None if p is None else [p.seed, p.cursor] for p in self._passes],
            "nframes": [s.nframes for s in self.systems],
            "batch_sizes": list(self.batch_sizes),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where state_dict() was taken; the data must be the same."""
        for name, mine in (("nframes", [s.nframes for s in self.systems]),
                           ("batch_sizes", self.batch_sizes)):
            if list(state[name]) != list(mine):
                raise ValueError(f"{self.key}: saved sampler state has {name} {state[name]} "
                                 f"but the data now has {mine}; resume with the same data "
                                 "and batch_size")
        self._rng.bit_generator.state = state["rng"]
        self._passes = [None if p is None else
                        _Pass(int(p[0]), int(p[1]), _permutation(int(p[0]), s.nframes))
                        for p, s in zip(state["passes"], self.systems)]

    def _log_summary(self) -> None:
        log.info("%s: %d system(s), %d batches per epoch", self.key, len(self.systems),
                 self.total_numb_batch())
        log.info("  %-42s %6s %6s %6s %9s %3s", "system", "natoms", "bch_sz", "n_bch",
                 "prob", "pbc")
        for s, b, nb, p in zip(self.systems, self.batch_sizes, self.nbatches, self.probs):
            log.info("  %-42s %6d %6d %6d %9.3e %3s", _short(s.name, 42), s.natoms, b, nb,
                     p, "F" if s.nopbc else "T")


def _permutation(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else "-- " + name[-(width - 3):]


def make_stat_input(systems: list[System], batch_sizes: list[int], nbatch: int = 10,
                    seed=0, ntypes: int | None = None, perms=None) -> list[dict]:
    """Per system, the first min(nbatch, nbatches) batches of a fresh shuffled pass, as one
    batch dict (collate, the STAT_LABELS only) plus type_count [nframes, ntypes] int64
    (§1.7). Deterministic in
    seed, or each system's pass given as perms; systems contribute in proportion to their
    sampled frames, not their probability."""
    rng = np.random.default_rng(seed)
    ntypes = ntypes or _ntypes(systems)
    out = []
    ticker = Ticker(log, "statistics frames", len(systems), "systems")
    for sid, (system, b) in enumerate(zip(systems, batch_sizes)):
        ticker.advance(1)
        perm = rng.permutation(system.nframes) if perms is None else perms[sid]
        nb = min(nbatch, math.ceil(system.nframes / b))
        # the last batch of a pass may be short
        batch = collate(system, perm[:nb * b], sid, labels=STAT_LABELS)
        counts = system.type_count(ntypes)
        batch["type_count"] = torch.from_numpy(np.tile(counts, (len(batch["fid"]), 1)))
        out.append(batch)
    return out
