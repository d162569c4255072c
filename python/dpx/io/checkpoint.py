"""The checkpoint format, DeePMD-kit's layout: torch.save({"model": the wrapper state dict
(`model.<branch>.<path>` keys plus `_extra_state = {model_params, train_infos}`), "optimizer":
Adam's state dict, "dpx": {next_step, sampler and RNG states}}). DeePMD-kit reads "model"
and "optimizer" and ignores "dpx".

Files are written so that a crash never leaves a half-written one behind: each is written to
a temporary name in the same folder and renamed over the target (atomic on POSIX), the
`model.ckpt.pt` link likewise. Files are read with `torch.load(weights_only=True)`: tensors,
numbers, strings, lists and dicts only, so opening a checkpoint cannot run code that a
pickle in it carries.
"""
from __future__ import annotations

import logging
import os
import pickle
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
    keep only the newest max_keep numbered checkpoints."""
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


def resolve(path: str | Path) -> Path:
    """The checkpoint file a path names: a folder means the file its `checkpoint` file names;
    `model.ckpt` means `model.ckpt.pt` when only that exists."""
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
    return path


def load(path: str | Path) -> dict:
    """The checkpoint dict of a file (or folder, see resolve), read without running code."""
    path = resolve(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise ValueError(f"{path} is not a readable checkpoint: {_first_line(e)}") from None
        raise ValueError(
            f"{path}: refused to load. The file holds Python objects other than tensors, "
            f"numbers, strings, lists and dicts, and unpickling them could run code it "
            f"carries. dpx and DeePMD-kit checkpoints never hold such objects; load the file "
            f"only if you trust it, and save its plain content again "
            f"(torch's message: {_first_line(e)})") from None
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable checkpoint: {_first_line(e)}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a DeePMD-kit/dpx checkpoint (no 'model' entry)")
    return state


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
