"""`dpx train INPUT`: single- or multi-task training from a DeePMD-kit input."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dpx.cli.refuse import Refused
from dpx.config import load_input

log = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model from an input file")
    p.add_argument("input", help="input JSON (or YAML), DeePMD-kit format")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("-r", "--restart", help="continue from this checkpoint (weights, "
                        "optimizer, learning rate, step, random state)")
    resume.add_argument("-i", "--init-model", help="start from this checkpoint's weights")
    resume.add_argument("-t", "--finetune", help="finetune from this checkpoint")
    # DP-GEN's training_init_frozen_model; DeePMD-kit's PyTorch backend reads the weights of
    # a frozen .pth, which dpx does not (its frozen files hold no training state to resume)
    p.add_argument("-f", "--init-frz-model", action=Refused, nargs=1,
                   const="dpx starts from a checkpoint (.pt), not a frozen model; give "
                         "--init-model CHECKPOINT.pt")
    p.add_argument("--force-load", action=Refused,
                   const="dpx loads a checkpoint strictly (a tensor it lacks is an error "
                         "naming it), never initializing missing ones at random")
    p.add_argument("--model-branch", "--head", dest="model_branch", default=None,
                   help="branch of a multi-task checkpoint to finetune from (or RANDOM), or "
                        "to --init-model a single-task input from")
    p.add_argument("--use-pretrain-script", action="store_true",
                   help="with --finetune: take the descriptor and fitting net sections from "
                        "the pretrained model instead of the input")
    p.add_argument("--skip-neighbor-stat", action="store_true",
                   help="skip the neighbor statistics (sel must be given as a list)")
    p.add_argument("--neighbor-stat-frames", type=_positive_int, default=None, metavar="N",
                   help="estimate the neighbor statistics (sel \"auto\", min_nbor_dist) from at "
                        "most N frames of each system instead of every frame (logged as an "
                        "estimate; not kept in the stat file)")
    p.add_argument("-o", "--output", default="out.json", help="normalized input written here")
    p.add_argument("--overwrite", action="store_true",
                   help="a new run may replace an earlier run's lcurve.out and checkpoints in "
                        "its folder (without it, checkpoints are refused; an lcurve.out "
                        "alone is kept as lcurve.out.<time stamp>)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")


def run(args) -> int:
    from dpx.train.dist import LostRank
    try:
        _train(args)
    except LostRank as e:
        # every rank says it (only rank 0 logs); torchrun's summary follows
        print(f"dpx train: error: {e}", file=sys.stderr)
        return 1
    return 0


def _train(args) -> None:
    from dpx.io.checkpoint import atomic_write
    from dpx.train.startup import NeighborScan, build_trainer, normalized_input, start_mode
    cfg = load_input(args.input)
    mode = start_mode(args.restart, args.init_model, args.finetune, args.model_branch,
                      args.use_pretrain_script,
                      NeighborScan(args.skip_neighbor_stat, args.neighbor_stat_frames))
    trainer = build_trainer(cfg, mode, args.device, overwrite=args.overwrite)
    if trainer.rank == 0:
        text = json.dumps(normalized_input(trainer.cfg), indent=2, default=str)
        try:  # replaced whole: a full disk keeps an earlier run's out.json
            atomic_write(Path(args.output), lambda tmp: Path(tmp).write_text(text))
        except OSError as e:
            trainer.files.unlock()
            raise ValueError(f"cannot write the normalized input to {args.output}: "
                             f"{e.strerror}") from None
    trainer.run()
