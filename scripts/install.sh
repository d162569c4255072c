#!/usr/bin/env bash
# Make (or reuse) the virtual environment .venv and build dpx into it against its torch.
#   DPX_VENV   where the environment lives (default: .venv in the repository)
#   DPX_TORCH  the torch requirement (default torch==2.13.0, the CPU build; on a GPU machine
#              with torch already installed system-wide, set DPX_TORCH=system)
#   DPX_EXTRAS pip extras of dpx to install (default: none; "test" for the test suite)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${DPX_VENV:-$root/.venv}"
torch_req="${DPX_TORCH:-torch==2.13.0}"
if [ ! -x "$venv/bin/python" ]; then
  if [ "$torch_req" = system ]; then
    python3 -m venv --system-site-packages "$venv"
  else
    python3 -m venv "$venv"
  fi
fi
py="$venv/bin/python"
# the GPU machine is offline: upgrading pip there would only wait for the network
[ "$torch_req" != system ] && "$py" -m pip install -q --upgrade pip
if [ "$torch_req" != system ]; then
  "$py" -m pip install -q "$torch_req"
fi
# the op library is compiled against the torch just installed: no build isolation
"$py" -m pip install -q "scikit-build-core>=0.10" ninja numpy
spec="$root"
[ -n "${DPX_EXTRAS:-}" ] && spec="$root[${DPX_EXTRAS}]"
"$py" -m pip install -q --no-build-isolation "$spec"
"$py" -c "import dpx.ops, torch; print('dpx installed; op library loaded:', dpx.ops.LOADED, '| torch', torch.__version__)"
