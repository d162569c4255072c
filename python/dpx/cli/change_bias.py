"""`dpx change-bias`: a model's energy bias changed on data or set (as `dp --pt change-bias`)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("change-bias", help="change a model's energy bias by statistic on data, "
                       "or set it")
    p.add_argument("input", help="checkpoint (.pt) or frozen model (.pth)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("-s", "--system", default=".", help="a system folder, or a folder of "
                     "systems (default: .)")
    src.add_argument("-f", "--datafile", default=None,
                     help="a file that names one system per line")
    src.add_argument("-b", "--bias-value", type=float, nargs="+", default=None,
                     help="the bias of each type of the model's type_map")
    p.add_argument("-n", "--numb-batch", type=int, default=0,
                   help="frames per system used (0: all)")
    p.add_argument("-m", "--mode", choices=["change", "set"], default="change",
                   help="change: add the fit of the model's errors; set: the fit of the "
                        "energies")
    p.add_argument("-o", "--output", default=None,
                   help="output file (default: INPUT with _updated before the suffix)")
    p.add_argument("--model-branch", "--head", dest="branch", default=None,
                   help="branch of a multi-task checkpoint")


def run(args) -> int:
    from dpx.infer.change_bias import run_change_bias
    return run_change_bias(args.input, args.mode, args.bias_value, args.system, args.datafile,
                           args.numb_batch, args.branch, args.output)
