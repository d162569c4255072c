"""`dpx show`: branches, type map, settings, parameter counts and step of a model file; with
attributes, those attributes as `dp show` prints them."""
from __future__ import annotations


def add_parser(sub) -> None:
    from dpx.infer.show import ATTRIBUTES
    p = sub.add_parser("show", help="describe a checkpoint (.pt) or frozen model (.pth)")
    p.add_argument("model", help="checkpoint, folder with a 'checkpoint' file, or frozen model")
    p.add_argument("attributes", nargs="*", choices=[[], *ATTRIBUTES], default=[],
                   metavar="ATTRIBUTE", help=f"as dp show takes them: {', '.join(ATTRIBUTES)}")


def run(args) -> int:
    from dpx.infer.show import run_show
    return run_show(args.model, args.attributes)
