"""The model, defined once: network layers (network), descriptors (descriptor/), fittings
(fitting/), the atomic model (atomic), the energy model (energy), start-up statistics (stat)
and the compute backend chosen when a model is built (backend: dpx's ops for training, the
pure-PyTorch twins for the frozen file)."""
from dpx.model.backend import EXPORT, TRAINING, ModelOptions
from dpx.model.energy import EnergyModel

__all__ = ["EXPORT", "TRAINING", "EnergyModel", "ModelOptions"]
