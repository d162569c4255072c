#!/usr/bin/env bash
# Fresh machine to a trained model: install dpx into .venv, make the bundled data, train the
# single-task example, then report its errors with dpx test. Everything lands in
# examples/small_water/ (data/, lcurve.out, model.ckpt-*.pt).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install.sh"
venv="${DPX_VENV:-$root/.venv}"
cd "$root/examples/small_water"
"$venv/bin/python" ../make_data.py data
"$venv/bin/dpx" train input.json --overwrite  # the example replaces its own last run
"$venv/bin/dpx" test -m model.ckpt.pt -s data/valid -d detail
