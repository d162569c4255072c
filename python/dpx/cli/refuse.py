"""Options that DeePMD-kit's `dp` takes and dpx cannot honour: accepted by argparse so that
a workflow (dpgen2, DP-GEN) that passes them gets one line naming the option and what dpx
takes instead, not a usage dump about an unrecognized argument."""
from __future__ import annotations

import argparse
import sys

# `dp -b NAME` / `dp --NAME`: DeePMD-kit 3.2.0's backend table (deepmd/main.py BACKEND_TABLE)
PYTORCH = ("pytorch", "pt")
OTHER_BACKENDS = ("tensorflow", "tf", "tensorflow2", "tf2", "jax", "paddle", "pd",
                  "pytorch-exportable", "pt-expt", "dpmodel", "dp", "numpy", "np")
_FORMAT = ("dpx reads and writes the PyTorch backend's format only (.pt checkpoints, .pth "
           "frozen models); give --pt (or no backend flag)")


def fail(option: str, why: str) -> None:
    """One line on stderr, rc 2: what argparse does for a bad value, without the usage."""
    sys.stderr.write(f"dpx: error: {option}: {why}\n")
    sys.exit(2)


class Refused(argparse.Action):
    """A flag that exits at once, naming itself (and its value) and saying why (const)."""

    def __init__(self, option_strings, dest, const: str, nargs=0, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, const=const,
                         help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        fail(" ".join([option_string, *(values or [])]), self.const)  # nargs 0 gives []


class Backend(argparse.Action):
    """-b/--backend NAME: pytorch (alias pt) is what dpx is; any other backend is refused."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values.lower() not in PYTORCH:
            fail(f"{option_string} {values}", _FORMAT)
        setattr(namespace, self.dest, "pytorch")


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """dp's backend flags, before the subcommand: `dp --pt train ...` works as `dpx --pt
    train ...`, so a workflow's "command": "dpx" needs no wrapper."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-b", "--backend", action=Backend, default="pytorch",
                       metavar="pytorch", help="DeePMD-kit's backend option: only pytorch "
                       "(alias pt) is taken; dpx uses the PyTorch backend's files")
    group.add_argument("--pt", "--pytorch", dest="backend", action="store_const",
                       const="pytorch", help="accepted for `dp --pt ...` command lines")
    # outside the group: `--pt --tf` is refused for --tf, not as a clash of the two
    parser.add_argument(*[f"--{name}" for name in OTHER_BACKENDS], dest="backend",
                        action=Refused, const=_FORMAT)
