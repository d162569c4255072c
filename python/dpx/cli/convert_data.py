"""`dpx convert-data SYSTEMS... -o OUT`: systems to DeePMD-kit 3.2's LMDB data set (OUT ends
in .lmdb), or to folders of deepmd/npy systems (any other OUT), so data moves between the two
(DeePMD-kit ships no such command; dpdata's deepmd/lmdb format writes the same layout)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("convert-data", help="convert systems between deepmd/npy (or HDF5) and "
                       "DeePMD-kit's LMDB data set")
    p.add_argument("systems", nargs="+", help="system folders, folders of systems, "
                   "file.h5[#/group] or .lmdb data sets, as a data section's systems take them")
    p.add_argument("-o", "--output", required=True, help="OUT.lmdb: one LMDB data set "
                   "(what `dp --pt train` and `dpx train` read); any other path: a folder of "
                   "deepmd/npy systems sys.NNNN")
    p.add_argument("-t", "--type-map", nargs="+", default=None,
                   help="element names of the output's type indices (default: the systems' "
                        "type_map.raw, in the order the elements first appear)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    from dpx.data.convert import to_lmdb, to_npy
    from dpx.data.storage.lmdb import is_lmdb
    convert = to_lmdb if is_lmdb(args.output) else to_npy
    convert(args.systems, args.output, type_map=args.type_map, overwrite=args.overwrite,
            key="systems")
    return 0
