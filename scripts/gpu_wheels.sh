#!/usr/bin/env bash
# Fetch, on a machine with network, the wheels that DeePMD-kit 3.2.0 (`dp --pt`, the peer of
# benchmarks/gpu.py) needs on the GPU machine, which has torch 2.11 + CUDA 13 and Python 3.12
# but no network. They land in .whl/ (git-ignored, ~35 MB), to be carried along; the GPU
# script installs them with `pip install --no-index --no-deps --target`.
# Only what that image lacks is fetched (its package list: the device tool's KINDS.md):
# numpy, scipy, h5py, pyyaml, einops, e3nn, msgpack, ml-dtypes... are already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.whl"
mkdir -p "$dest"
py="${PYTHON:-python3}"
pins=(deepmd-kit==3.2.0 mpich==5.0.2 dpdata==1.1.0 dargs==0.5.1 wcmatch==12.0.1 bracex==3.2.3
      mendeleev==1.3.0 Pint==0.24.4 flexcache==0.3 flexparser==0.4 Deprecated==1.3.1
      pyfiglet==0.8.post1 pydantic==2.14.4 pydantic_core==2.50.5 SQLAlchemy==2.1.9
      greenlet typeguard==4.6.1 annotated-types==0.8.0 typing-inspection==0.4.5 lmdb==3.0.0
      array-api-compat==1.16.0 platformdirs==4.14.8 nvidia-cuda-runtime-cu12)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$dest" "${pins[@]}"
du -sh "$dest"
