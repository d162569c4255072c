"""`dpx neighbor-stat`: minimum neighbor distance and maximum neighbor counts of data."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("neighbor-stat", help="neighbor statistics of data (what sel 'auto' "
                       "is made from)")
    p.add_argument("-s", "--system", default=".", help="a system folder, or a folder of "
                   "systems (default: .)")
    p.add_argument("-r", "--rcut", type=float, required=True, help="cutoff radius")
    p.add_argument("-t", "--type-map", nargs="+", default=None,
                   help="element names, in the model's order (default: the data's)")
    p.add_argument("--mixed-type", "--one-type", dest="one_type", action="store_true",
                   help="count all types as one")


def run(args) -> int:
    from dpx.infer.neighbor_stat import run_neighbor_stat
    return run_neighbor_stat(args.system, args.rcut, args.type_map, args.one_type)
