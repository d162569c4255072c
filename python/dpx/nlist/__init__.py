"""Neighbor lists in plain PyTorch, scriptable: the extended system of a periodic frame
(extend), every neighbor within rcut (all_within), a raw list put into the typed layout
(format_nlist), and type-pair exclusions (exclude_pairs). The compiled search is the op
dpx.ops.neighbor_list; the always-sorting formatting that DeePMD-kit does is the oracle in
dpx.ops.reference.format_nlist."""
from dpx.nlist.exclude import exclude_pairs, excluded_slots, neighbor_types, pair_table
from dpx.nlist.extend import all_within, extend
from dpx.nlist.format import format_nlist

__all__ = ["all_within", "exclude_pairs", "excluded_slots", "extend", "format_nlist",
           "neighbor_types", "pair_table"]
