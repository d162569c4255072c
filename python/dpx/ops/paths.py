"""Which implementation each op family runs on a device: dpx's compiled kernel or code that
CI executes (the pure-PyTorch twins, or the vectorized neighbor search of nlist_generic.py).

On a CPU the compiled kernels always run: CI executes them. On a GPU a CUDA kernel runs only
where `dpx check` passed it on this GPU model, driver, torch and dpx build (its record, under
the user's cache folder); anything else (no record, a stale or unreadable one, a family that
failed) runs the device-generic code. DPX_CUDA_KERNELS=0 forces the generic code, =1 the
kernels (what `dpx check` itself does to test them).

select() is a pure function of the device kind, the record and the override, so the rule is
tested without a GPU; kernel() is what the ops call, cached per device.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path

import torch

from dpx.ops import _library

log = logging.getLogger(__name__)

# family -> what it covers (the names `dpx check` reports and the record keeps)
FAMILIES = {
    "neighbor_list": "dpx::neighbor_list (extended system and typed neighbor list)",
    "env_mat": "dpx::env_mat_se_a and its vjp / jvp / hvp",
    "se_a": "dpx::se_a_reduce / se_a_gram and their derivatives",
    "se_a_embed": "dpx::se_a_embed_reduce family (fused embedding + reduction)",
}
ENV = "DPX_CUDA_KERNELS"
RECORD_VERSION = 1


def select(device_type: str, record: dict | None, force: str | None) -> dict[str, bool]:
    """family -> True where the compiled kernel runs on this kind of device.

    record: the valid record of this GPU ({"families": {name: {"passed": bool, ...}}}) or
    None; force: the value of DPX_CUDA_KERNELS ("0", "1" or None)."""
    if device_type == "cpu":
        return dict.fromkeys(FAMILIES, True)
    if device_type != "cuda" or force == "0":
        return dict.fromkeys(FAMILIES, False)
    if force == "1":
        return dict.fromkeys(FAMILIES, True)
    families = (record or {}).get("families", {})
    return {f: bool(families.get(f, {}).get("passed") is True) for f in FAMILIES}


def record_path() -> Path:
    """The record file: $DPX_CACHE_DIR, else $XDG_CACHE_HOME/dpx, else ~/.cache/dpx."""
    base = os.environ.get("DPX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dpx")
    return Path(base) / "cuda_check.json"


def _library_digest() -> str:
    """A rebuilt library is another build, whatever its version says."""
    if not _library.LIBRARY.exists():
        return "none"
    return hashlib.sha256(_library.LIBRARY.read_bytes()).hexdigest()[:16]


def device_key(index: int) -> dict:
    """What a record is valid for: the GPU model, driver, torch (and its CUDA) and dpx build."""
    from dpx import __version__
    driver = getattr(torch._C, "_cuda_getDriverVersion", lambda: None)()
    return {"gpu": torch.cuda.get_device_name(index), "driver": driver,
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "dpx": __version__, "library": _library_digest(), "host_arch": platform.machine(),
            "record_version": RECORD_VERSION}


def read_records(path: Path) -> tuple[list[dict], str | None]:
    """The records in the file, and why the file was not usable (None where it was)."""
    if not path.exists():
        return [], None
    try:
        data = json.loads(path.read_text())
        records = data["records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TypeError("records is not a list of objects")
        return records, None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [], f"{path} is not a readable dpx check record ({e}); run `dpx check` again"


def find_record(records: list[dict], key: dict) -> tuple[dict | None, str]:
    """The record made under exactly this key, and a line saying what was found.

    A record of the same GPU under another torch, driver or dpx build is stale: never
    trusted, the line says what changed."""
    for r in records:
        if r.get("key") == key and isinstance(r.get("families"), dict):
            return r, f"dpx check record of {r.get('date', '?')}"
    same_gpu = [r for r in records if isinstance(r.get("key"), dict)
                and r["key"].get("gpu") == key["gpu"]]
    if same_gpu:
        old = same_gpu[-1]["key"]
        changed = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in key.items()
                            if old.get(k) != v)
        return None, f"the dpx check record of this GPU is stale ({changed}); run `dpx check`"
    return None, f"no dpx check record for {key['gpu']}; run `dpx check`"


_CACHE: dict[str, tuple[dict[str, bool], str]] = {}


def resolve(device: torch.device) -> tuple[dict[str, bool], str]:
    """select() for this device with its record, and a line saying why (cached per device)."""
    name = str(device)
    if name not in _CACHE:
        force = os.environ.get(ENV)
        if force not in (None, "", "0", "1"):
            raise ValueError(f"{ENV} must be 0 or 1, got {force!r}")
        force = force or None
        why = "CPU: compiled kernels"
        record = None
        if device.type == "cuda":
            if force:
                why = f"{ENV}={force}"
            else:
                records, why = read_records(record_path())
                if why is None:
                    index = device.index if device.index is not None \
                        else torch.cuda.current_device()
                    record, why = find_record(records, device_key(index))
        paths = select(device.type, record, force)
        if not _library.LOADED:
            paths = dict.fromkeys(FAMILIES, False)
            why = "the op library is not loaded"
        _CACHE[name] = (paths, why)
    return _CACHE[name]


def kernel(device: torch.device, family: str) -> bool:
    """The compiled kernel of this family runs on this device."""
    return resolve(device)[0][family]


def describe(device: torch.device) -> str:
    """One line for the training log: which path each family runs on, and why."""
    paths, why = resolve(device)
    parts = ", ".join(f"{f} {'kernel' if k else 'generic'}" for f, k in paths.items())
    return f"op paths on {device}: {parts} ({why}; {ENV}=0|1 forces either)"
