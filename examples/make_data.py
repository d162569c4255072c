"""Make the bundled example data: small water-like systems in DeePMD npy format.

    python examples/make_data.py OUTDIR [--nsystems 2] [--nframes 20] [--nvalid 5] [--seed 0]
                                       [--calculator morse|emt] [--nsets 1] [--tilt 0]

Writes OUTDIR/train/water_024, OUTDIR/train/water_036, ..., OUTDIR/valid/water_024 and
OUTDIR/generator.json. Labels come from a built-in smooth Morse pair potential, so the same
command makes the same data on every machine (--calculator emt: ASE's EMT, where ASE is
installed); all systems are periodic. Takes a few seconds.
The work is done by dpx.data.synthetic; this script only parses arguments and checks the
labels of one frame against finite differences.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path


def _load_synthetic():
    """dpx/data/synthetic.py from this checkout, loaded by path: importing the dpx package
    would pull in torch and the op library, and this script needs only numpy (and ASE)."""
    path = Path(__file__).resolve().parents[1] / "python" / "dpx" / "data" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("dpx_data_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic = _load_synthetic()
log = logging.getLogger("make_data")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--nsystems", type=int, default=2, help="training systems (8, 12, ... molecules)")
    parser.add_argument("--nframes", type=int, default=20, help="frames per training system")
    parser.add_argument("--nvalid", type=int, default=5, help="frames of the validation system (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calculator", default="morse", choices=["morse", "emt"])
    parser.add_argument("--nsets", type=int, default=1, help="set.* folders per system")
    parser.add_argument("--tilt", type=float, default=0.0, help="max cell tilt / edge (0: cubic)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    made = synthetic.make_dataset(args.outdir, args.nsystems, args.nframes, args.nvalid,
                                  args.seed, args.calculator, args.nsets, args.tilt)
    _check(made["calculator"], args.seed)
    return 0


def _check(calculator: str, seed: int) -> None:
    """Forces = -dE/dx and virial = -dE/deps on one fresh frame, or stop with an error."""
    import numpy as np
    _, label = synthetic.labeler(calculator)
    atype, coord, cell = synthetic.water_frame(8, np.random.default_rng(seed))
    f_err, w_err = synthetic.finite_difference_error(label, coord, cell, atype)
    log.info("finite-difference check (%s): max force error %.2e eV/A, virial %.2e eV",
             calculator, f_err, w_err)
    if f_err > 1e-4 or w_err > 1e-4:
        raise SystemExit(f"labels from {calculator} disagree with finite differences "
                         f"(force {f_err:.2e}, virial {w_err:.2e}); do not use this data")


if __name__ == "__main__":
    sys.exit(main())
