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
import shutil
import zipfile
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


def file_name(save_ckpt: str, step: int) -> Path:
    stem = Path(save_ckpt)
    return stem.parent / f"{stem.name}-{step}.pt"


def save(state: dict, save_ckpt: str, step: int) -> Path:
    """Write <save_ckpt>-<step>.pt and point <save_ckpt>.pt and the `checkpoint` file at it.
    A write that fails (a full disk, a folder that is a file) is an error that says what
    could not be written where and why; the previous checkpoint, its link and the pointer
    stay as they were, and no temporary file is left."""
    path = file_name(save_ckpt, step)
    folder, name = path.parent, Path(save_ckpt).name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        link = folder / f"{name}.pt"
        tmp_link = folder / f".{name}.pt.tmp{os.getpid()}"
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        os.symlink(path.name, tmp_link)
        os.replace(tmp_link, link)
        # `dp freeze -c DIR` reads DIR/checkpoint, so it lives beside the files it names
        atomic_write(folder / "checkpoint", lambda tmp: Path(tmp).write_text(path.name))
    except (OSError, RuntimeError) as e:
        # torch's zip writer reports a short write (a full disk) as a RuntimeError
        # ("unexpected pos ..."), not as the OSError underneath
        raise WriteError(f"cannot write checkpoint {path}: {_reason(e)} ({_free(folder)}; "
                         f"the previous checkpoint is kept)") from None
    log.info("saved checkpoint %s", path)
    return path


def _reason(e: Exception) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return f"the write stopped short, as it does on a full disk (torch: {first_line(e)})"


def _free(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"free space in {folder} unknown"
    return f"{free / 2**20:.1f} MiB free in {folder.resolve()}"


class WriteError(ValueError):
    """A file of the run could not be written; the message says which, where and why."""


def prune(save_ckpt: str, written: list[str], max_keep: int) -> list[str]:
    """Delete the oldest of the checkpoint files this run wrote (`written`, oldest first)
    beyond the newest max_keep; return those kept. Files of other runs are not touched."""
    folder = Path(save_ckpt).parent
    for name in written[:-max_keep]:
        (folder / name).unlink(missing_ok=True)
    return written[-max_keep:]


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
            raise ValueError(f"{path} is not a readable checkpoint: {first_line(e)}") from None
        raise ValueError(
            f"{path}: refused to load. The file holds Python objects other than tensors, "
            f"numbers, strings, lists and dicts, and unpickling them could run code it "
            f"carries. dpx and DeePMD-kit checkpoints never hold such objects; load the file "
            f"only if you trust it, and save its plain content again "
            f"(torch's message: {first_line(e)})") from None
    except Exception as e:  # a truncated or foreign file
        # torch reads a non-zip file as a legacy pickle and fails on its first byte
        # (KeyError: 101 for an 'e'); what the user needs is what the file should be
        reason = first_line(e) if zipfile.is_zipfile(path) else "not a zip archive"
        raise ValueError(f"{path} is not a readable checkpoint ({reason}); expected a "
                         f"model.ckpt-<step>.pt written by dpx or DeePMD-kit training") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a DeePMD-kit/dpx checkpoint (no 'model' entry)")
    return state


def first_line(e: Exception) -> str:
    """The first line of an exception's message (torch's run to many), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
