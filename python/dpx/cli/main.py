"""The `dpx` command: one module per subcommand, logging configured once here."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from dpx.cli import change_bias as change_bias_cmd
from dpx.cli import check as check_cmd
from dpx.cli import compress as compress_cmd
from dpx.cli import convert_data as convert_data_cmd
from dpx.cli import freeze as freeze_cmd
from dpx.cli import neighbor_stat as neighbor_stat_cmd
from dpx.cli import show as show_cmd
from dpx.cli import test as test_cmd
from dpx.cli import train as train_cmd
from dpx.cli.refuse import add_backend_flags
from dpx.extras import MissingPackage

log = logging.getLogger("dpx")

COMMANDS = {"train": train_cmd, "freeze": freeze_cmd, "test": test_cmd, "show": show_cmd,
            "change-bias": change_bias_cmd, "neighbor-stat": neighbor_stat_cmd,
            "compress": compress_cmd, "check": check_cmd, "convert-data": convert_data_cmd}


def setup_logging(level: str) -> None:
    rank = int(os.environ.get("RANK", 0))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] dpx %(levelname)s %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger("dpx")
    root.handlers[:] = [handler] if rank == 0 else [logging.NullHandler()]
    root.setLevel(level)
    root.propagate = False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpx", description="Fast DeePMD-kit-compatible training "
                                "of se_e2_a and se_e2_r deep potentials.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_backend_flags(p)
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return COMMANDS[args.command].run(args) or 0
    except (ValueError, FileNotFoundError, NotImplementedError, KeyError, MissingPackage) as e:
        # bad input: the message names the file, key or value; a traceback would bury it.
        # MissingPackage: an optional package the input needs (dpdata, h5py, lmdb), named
        if os.environ.get("DPX_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"dpx {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
