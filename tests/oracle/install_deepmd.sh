#!/usr/bin/env bash
# Install the DeePMD-kit 3.2.0 oracle (PyTorch backend) next to CPU torch 2.13.0
# into a virtual environment, for tests that compare dpx with DeePMD-kit.
#
# Usage:  tests/oracle/install_deepmd.sh VENV/bin/python [--verify]
#   VENV/bin/python  the venv's python; if it does not exist, the venv VENV is
#                    created with "${PYTHON:-python3} -m venv".
#   --verify         also run the import smoke test when nothing had to be
#                    installed (it always runs after an install).
#
# Idempotent: when the pinned versions are already installed and the custom-op
# library is already disabled it only checks package metadata (< 1 s).
# Exit status 0 = the venv can run `dp --pt train/freeze/test` and
# `python tests/oracle/deepmd_runner.py ...`.
#
# Why each piece (details in tests/oracle/README.md and NOTES.md):
# - torch==2.13.0 is pinned (also as a constraint) so that nothing replaces it;
#   on this machine kind pip takes the CPU wheel from local disk (find-links
#   /opt/wheels).  NEVER use deepmd-kit[torch]: that extra pins torch 2.11
#   (a ~2 GB CUDA build from PyPI).
# - mpich: the cibuildwheel-built deepmd wheel preloads libmpi from the mpich
#   wheel at `import deepmd.pt` (PackageNotFoundError without it).
# - e3nn: imported by deepmd.pt at import time but not declared.
# - dpdata: used by dp test / data tools.
# - deepmd/lib/libdeepmd_op_pt.so is compiled against torch 2.11.0 and makes
#   `import deepmd.pt` raise with torch 2.13.  deepmd/pt/cxx_op.py loads it iff
#   the file exists (there is no environment variable to skip it), so it is
#   renamed; deepmd then reports "Custom OP Enabled: False" and runs the pure
#   PyTorch code path (all se_e2_a training/freeze/test/inference works).
set -euo pipefail

PY=${1:?usage: install_deepmd.sh VENV/bin/python [--verify]}
VERIFY=0
[ "${2:-}" = "--verify" ] && VERIFY=1

DISABLED_SUFFIX=disabled-built-for-torch-2.11

log() { echo "[install_deepmd] $*"; }

if [ ! -x "$PY" ]; then
    bindir=$(dirname "$PY")
    if [ "$(basename "$bindir")" != bin ]; then
        echo "[install_deepmd] $PY does not exist and is not VENV/bin/python" >&2
        exit 2
    fi
    venv=$(dirname "$bindir")
    log "creating venv $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi

# Versions measured to work together (pip freeze of the reference venv).
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
cat >"$CONSTRAINTS" <<'EOF'
torch==2.13.0
deepmd-kit==3.2.0
dpdata==1.1.0
mpich==5.0.2
e3nn==0.6.0
annotated-types==0.8.0
array-api-compat==1.16.0
bracex==3.2.3
colorama==0.4.6
dargs==0.5.1
Deprecated==1.3.1
einops==0.8.2
filelock==4.3.1
flexcache==0.3
flexparser==0.4
fsspec==2026.9.0
h5py==3.16.0
Jinja2==3.1.6
lmdb==3.0.0
MarkupSafe==3.0.4
mendeleev==1.3.0
ml_dtypes==0.6.0
mpmath==1.3.0
msgpack==1.2.4
networkx==3.6.1
numpy==2.4.6
opt-einsum-fx==0.1.4
opt_einsum==3.4.0
packaging==26.4
pandas==3.1.1
Pint==0.24.4
platformdirs==4.14.8
pydantic==2.14.4
pydantic_core==2.50.5
pyfiglet==0.8.post1
Pygments==2.21.0
python-dateutil==4.0.0
PyYAML==6.0.4
scipy==1.17.1
SQLAlchemy==2.1.9
sympy==1.14.0
typeguard==4.6.1
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
wcmatch==12.0.1
wrapt==2.5.2
setuptools==84.2.1
EOF

# Fast check: exit 0 iff the five pinned packages are installed at the pinned
# versions (local version labels such as +cpu ignored).  No deepmd import.
have_pins() {
    "$PY" - <<'EOF'
import importlib.metadata as md, sys
want = {"torch": "2.13.0", "deepmd-kit": "3.2.0", "dpdata": "1.1.0",
        "mpich": "5.0.2", "e3nn": "0.6.0"}
for name, ver in want.items():
    try:
        got = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if got.split("+")[0] != ver:
        sys.exit(1)
EOF
}

deepmd_lib_dir() {
    "$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("deepmd"); print(os.path.join(list(s.submodule_search_locations)[0], "lib"))'
}

INSTALLED=0
if have_pins; then
    log "pinned packages already installed"
else
    log "installing torch==2.13.0 deepmd-kit==3.2.0 dpdata mpich e3nn"
    extra=()
    # this machine kind keeps the CPU torch wheel on local disk
    [ -d /opt/wheels ] && extra+=(--find-links /opt/wheels)
    start=$(date +%s)
    "$PY" -m pip install --no-input --progress-bar off --disable-pip-version-check \
        "${extra[@]}" -c "$CONSTRAINTS" \
        torch==2.13.0 deepmd-kit==3.2.0 dpdata==1.1.0 mpich==5.0.2 e3nn==0.6.0
    log "pip install took $(( $(date +%s) - start )) s"
    INSTALLED=1
fi

libdir=$(deepmd_lib_dir)
op="$libdir/libdeepmd_op_pt.so"
if [ -e "$op" ]; then
    log "disabling $op (built for torch 2.11)"
    mv -f "$op" "$op.$DISABLED_SUFFIX"
    INSTALLED=1
fi

if [ "$INSTALLED" = 1 ] || [ "$VERIFY" = 1 ]; then
    log "smoke test: import deepmd.pt"
    OMP_NUM_THREADS=1 "$PY" - <<'EOF' 2>&1 | grep -v -E "Triton not available|adjust the number of threads"
import torch, deepmd, deepmd.pt
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
assert deepmd.__version__ == "3.2.0", deepmd.__version__
assert deepmd.pt.ENABLE_CUSTOMIZED_OP is False
if "+cpu" not in torch.__version__:
    print("[install_deepmd] WARNING: torch is not the CPU build:", torch.__version__)
print("[install_deepmd] OK: deepmd", deepmd.__version__, "torch", torch.__version__,
      "custom ops", deepmd.pt.ENABLE_CUSTOMIZED_OP)
EOF
    # (pipefail: a failing python makes this pipeline, and so the script, fail)
fi
log "ready: $PY"
