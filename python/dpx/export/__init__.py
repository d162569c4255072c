"""Export of trained models: `freeze` writes DeePMD-kit's frozen-model format."""
from dpx.export.freeze import freeze

__all__ = ["freeze"]
