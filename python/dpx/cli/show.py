"""`dpx show`: branches, type map, settings, parameter counts and step of a model file."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="describe a checkpoint (.pt) or frozen model (.pth)")
    p.add_argument("model", help="checkpoint, folder with a 'checkpoint' file, or frozen model")


def run(args) -> int:
    from dpx.infer.show import run_show
    return run_show(args.model)
