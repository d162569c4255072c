"""`dpx test`: energy, force and virial errors of a model on DeePMD systems (deepmd-compat §14)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("test", help="report errors of a model on labeled systems")
    p.add_argument("-m", "--model", required=True, help="checkpoint (.pt) or frozen model (.pth)")
    p.add_argument("-s", "--system", required=True, help="a system folder, or a folder of systems")
    p.add_argument("-n", "--numb-test", type=int, default=0, help="frames per system (0 = all)")
    p.add_argument("-d", "--detail-file", default=None, help="prefix of the detail files")
    p.add_argument("--head", "--model-branch", dest="branch", default=None,
                   help="branch of a multi-task checkpoint")


def run(args) -> int:
    from dpx.infer.test import run_test
    return run_test(args.model, args.system, args.numb_test, args.detail_file, args.branch)
