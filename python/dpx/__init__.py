"""dpx: a fast, DeePMD-kit-compatible trainer for deep-potential models."""
from dpx.ops import _library  # noqa: F401  (checks the op library against the running torch)

__version__ = "0.1.0"
