"""Load the compiled op library and check that it matches the running torch.

A library built against another torch fails in obscure ways (missing symbols, wrong ABI,
silently different dispatch), so a mismatch is an ImportError that says how to rebuild.
Where the library was never built (a source checkout on PYTHONPATH) the ops fall back to
their pure-PyTorch twins in reference.py, with a warning.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

REBUILD = "pip install --no-build-isolation --force-reinstall --no-deps ."
_PKG = Path(__file__).resolve().parent.parent
LIBRARY = _PKG / "lib" / "libdpx_ops.so"


def _built_torch_version() -> str | None:
    try:
        from dpx import _build_info
    except ImportError:
        return None
    return _build_info.TORCH_VERSION


def _load() -> bool:
    if os.environ.get("DPX_OPS") == "reference":
        return False
    built = _built_torch_version()
    if built is None or not LIBRARY.exists():
        log.warning("dpx op library not found at %s; using the pure-PyTorch reference ops "
                    "(slow). Build it with: %s", LIBRARY, REBUILD)
        return False
    if built != torch.__version__:
        raise ImportError(
            f"dpx's op library was built against torch {built}, but torch {torch.__version__} "
            f"is installed. Rebuild dpx against the installed torch from the dpx source "
            f"folder:\n    {REBUILD}")
    torch.ops.load_library(str(LIBRARY))
    return True


LOADED = _load()
