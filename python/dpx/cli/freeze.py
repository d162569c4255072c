"""`dpx freeze`: a checkpoint branch as a TorchScript model for DeePMD-kit and LAMMPS
(deepmd-compat §13.1)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("freeze", help="write a checkpoint as a frozen model (.pth) that "
                       "DeePMD-kit and LAMMPS load")
    p.add_argument("-c", "--checkpoint-folder", "--checkpoint", dest="checkpoint", default=".",
                   help="checkpoint file, or a folder whose `checkpoint` file names it")
    p.add_argument("-o", "--output", default="frozen_model.pth",
                   help="output file (suffix forced to .pth)")
    p.add_argument("--head", "--model-branch", dest="branch", default=None,
                   help="branch of a multi-task checkpoint")


def run(args) -> int:
    from dpx.export import freeze
    freeze(args.checkpoint, args.output, args.branch)
    return 0
