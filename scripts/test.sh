#!/usr/bin/env bash
# Install dpx with its test dependencies into .venv and run the whole test suite
# (slow tests included). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
DPX_EXTRAS=test bash "$root/scripts/install.sh"
venv="${DPX_VENV:-$root/.venv}"
cd "$root"
# run from the repository root against the installed package (not python/ on sys.path)
"$venv/bin/python" -m pytest -m "slow or not slow" "$@" tests
