"""Files: the checkpoint format (checkpoint), the model parameters and branches it stores
(params), and models rebuilt from checkpoints or frozen files (load). Below train, infer and
export; it imports none of them."""
from dpx.io import checkpoint, params
from dpx.io.load import FrozenModel, is_frozen, load_frozen, load_model

__all__ = ["FrozenModel", "checkpoint", "is_frozen", "load_frozen", "load_model", "params"]
