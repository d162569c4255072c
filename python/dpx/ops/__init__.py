"""dpx ops: neighbor search, se_e2_a environment matrix and embedding reductions.

Public functions dispatch to the compiled library (torch.ops.dpx.*) with autograd chains
registered in the sibling modules; reference.py holds the pure-PyTorch twin of every op.
"""
from dpx.ops import _library
from dpx.ops.env_mat import env_mat_se_a
from dpx.ops.nlist import NeighborList, neighbor_list, neighbor_stat
from dpx.ops.se_a import se_a_descriptor

LOADED = _library.LOADED

__all__ = ["LOADED", "NeighborList", "env_mat_se_a", "neighbor_list", "neighbor_stat",
           "se_a_descriptor"]
