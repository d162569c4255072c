"""Checkpoints in DeePMD-kit's layout (deepmd-compat §11), written so that a crash never
leaves a half-written file behind: each file is written to a temporary name in the same
folder and renamed over the target (atomic on POSIX), the `model.ckpt.pt` link likewise.

A checkpoint is torch.save({"model": wrapper state dict (with _extra_state), "optimizer": ...,
"dpx": {sampler and RNG states}}); DeePMD-kit reads "model" and "optimizer" and ignores "dpx".
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def atomic_write(path: Path, write) -> None:
    """write(tmp_path) then rename tmp over path; the temporary never outlives a failure."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save(state: dict, save_ckpt: str, step: int, max_keep: int) -> Path:
    """Write <save_ckpt>-<step>.pt, point <save_ckpt>.pt and the `checkpoint` file at it, and
    keep only the newest max_keep numbered checkpoints (§11)."""
    stem = Path(save_ckpt)
    folder = stem.parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem.name}-{step}.pt"
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    link = folder / f"{stem.name}.pt"
    tmp_link = folder / f".{stem.name}.pt.tmp{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(path.name, tmp_link)
    os.replace(tmp_link, link)
    # `dp freeze -c DIR` reads DIR/checkpoint, so it lives beside the files it names
    atomic_write(folder / "checkpoint", lambda tmp: Path(tmp).write_text(path.name))
    _prune(folder, stem.name, step, max_keep)
    log.info("saved checkpoint %s", path)
    return path


def _prune(folder: Path, name: str, step: int, max_keep: int) -> None:
    pattern = re.compile(re.escape(name) + r"-(\d+)\.pt$")
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := pattern.match(p.name)))
    # a file from a later step belongs to an abandoned future of a restarted run
    stale = [p for s, p in found if s > step]
    kept = [p for s, p in found if s <= step]
    for p in stale + kept[:-max_keep]:
        p.unlink()


def load(path: str | Path) -> dict:
    """A checkpoint dict; a directory means the file its `checkpoint` file names."""
    path = Path(path)
    if path.is_dir():
        pointer = path / "checkpoint"
        if not pointer.exists():
            raise FileNotFoundError(f"{path} is a folder without a 'checkpoint' file naming "
                                    f"the newest checkpoint")
        path = path / pointer.read_text().strip()
    if not path.exists() and path.suffix != ".pt" and Path(f"{path}.pt").exists():
        path = Path(f"{path}.pt")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable checkpoint: {e}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a DeePMD-kit/dpx checkpoint (no 'model' entry)")
    return state
