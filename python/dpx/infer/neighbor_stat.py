"""`dpx neighbor-stat`: the neighbor statistics of data (what sel "auto" is made from), as
`dp neighbor-stat` prints them."""
from __future__ import annotations

import logging
import time

from dpx.data import load_systems
from dpx.nlist.stat import neighbor_counts

log = logging.getLogger(__name__)


def run_neighbor_stat(system: str, rcut: float, type_map: list[str] | None,
                      one_type: bool) -> int:
    if not rcut > 0:
        raise ValueError(f"-r/--rcut: must be > 0, got {rcut}")
    systems = load_systems(system, type_map=type_map, key="--system")
    if type_map is None:  # the data's own: its type_map.raw, or as many types as it uses
        names = systems[0].type_map
        ntypes = len(names) if names else int(max(s.atype.max() for s in systems)) + 1
    else:
        ntypes = len(type_map)
    t0 = time.perf_counter()
    counts, dmin = neighbor_counts(systems, rcut, ntypes, one_type)
    log.info("Neighbor statistics of %d system(s), %d frame(s) in %.2f s", len(systems),
             sum(s.nframes for s in systems), time.perf_counter() - t0)
    log.info("min_nbor_dist: %f", dmin)
    log.info("max_nbor_size: %s (cutoff radius: %f)", counts.tolist(), rcut)
    return 0
