"""`dpx compress`: tabulated embedding nets (DeePMD-kit's `dp --pt compress` options)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("compress", help="write a frozen model whose embedding nets are tables "
                       "(fast MD; a stock DeePMD-kit LAMMPS runs it)")
    p.add_argument("-i", "--input", default="frozen_model.pth",
                   help="a checkpoint (.pt), or a frozen model (.pth) written by dpx freeze")
    p.add_argument("-o", "--output", default="frozen_model_compressed.pth",
                   help="output file (suffix forced to .pth)")
    p.add_argument("-s", "--step", type=float, default=0.01,
                   help="the table's stride (10x beyond the training data's range)")
    p.add_argument("-e", "--extrapolate", type=float, default=5,
                   help="the table reaches extrapolate x the training data's range")
    p.add_argument("-f", "--frequency", type=int, default=-1,
                   help="overflow check frequency, stored as DeePMD-kit stores it")
    p.add_argument("-t", "--training-script", default=None,
                   help="the training input, for min_nbor_dist when the model lacks it")
    p.add_argument("--head", "--model-branch", dest="branch", default=None,
                   help="branch of a multi-task checkpoint")


def run(args) -> int:
    from dpx.compress.compress import compress
    if not args.step > 0:
        raise ValueError(f"-s/--step must be > 0, got {args.step}")
    if not args.extrapolate > 1:
        raise ValueError(f"-e/--extrapolate must be > 1, got {args.extrapolate}")
    compress(args.input, args.output, args.step, args.extrapolate, args.frequency,
             args.training_script, args.branch)
    return 0
