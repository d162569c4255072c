#!/usr/bin/env bash
# Everything a GPU machine checks about dpx's CUDA path, in one command:
#
#   bash scripts/gpu_check.sh                 # all stages below, in order
#   bash scripts/gpu_check.sh build test      # some of them (each also alone, e.g. to fit a
#                                             # per-command time limit; later stages need build)
#
# Expects torch with CUDA installed system-wide (torch 2.11 + CUDA 13 on the reference
# machine) and nvcc (PATH or /usr/local/cuda/bin). Stages, each stopping the script on failure:
#   build     dpx into .venv against that torch (DPX_TORCH=system scripts/install.sh), which
#             compiles the CUDA kernels (sm_80, sm_90, PTX); checks they are registered
#   test      tests/ops and tests/nlist on CUDA and CPU: CUDA against CPU and the reference,
#             gradcheck / gradgradcheck in float64, opcheck, the force-loss weight gradient,
#             the CUDA neighbor list equal to the CPU one, the fused embedding's model path
#             on CUDA against the unfused one (the slow compile and benchmark smoke tests are
#             left out: build and bench do those for real)
#   sanitize  compute-sanitizer memcheck and racecheck on a short op test (every op on CUDA)
#   check     `dpx check`: every CUDA kernel against its twin, each family in a child
#             process; writes the record that lets `dpx train` use the kernels that passed
#   train     the bundled example on the GPU, 60 steps each: the paths of the record, then
#             DPX_CUDA_KERNELS=0 (the generic code a GPU runs by default), then torchrun
#             --nproc_per_node 1 (NCCL); the log's "op paths" line and lcurve for each
#   bench     benchmarks/gpu.py (per-op timings, the training step against `dp --pt train`,
#             peak GPU memory, the floor); the dp side is skipped with a message when DeePMD-kit
#             is not installed. Steps: DPX_BENCH_STEPS (default 200).
# Logs go to gpu_check_logs/ (override: DPX_GPU_LOGS).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
logs="${DPX_GPU_LOGS:-$root/gpu_check_logs}"
mkdir -p "$logs"
py="$root/.venv/bin/python"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(build test sanitize check train bench)
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
header() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

stage_build() {
  header "build against the system torch"
  python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
  nvcc --version | tail -1
  DPX_TORCH=system bash scripts/install.sh 2>&1 | tee "$logs/build.log" | tail -3
  "$py" -c "import pytest" 2>/dev/null || "$py" -m pip install -q pytest
  "$py" - <<'PY'
import torch, dpx.ops
assert dpx.ops.LOADED, "op library not loaded"
em = torch.zeros(1, 2, 4, device="cuda")
try:
    torch.ops.dpx.se_a_reduce(em, em)
except NotImplementedError as e:
    raise SystemExit(f"no CUDA kernels in the library (built without nvcc or CUDA torch?): {e}")
print("CUDA kernels registered")
PY
}

stage_test() {
  header "op and neighbor-list tests on CUDA and CPU"
  # DPX_CUDA_KERNELS=1: the public functions and models run the CUDA kernels under test
  # (without a record they would run the generic code on the GPU)
  DPX_CUDA_KERNELS=1 "$py" -m pytest -q -m "not slow" tests/ops tests/nlist \
    tests/model/test_fused_embedding.py 2>&1 \
    | tee "$logs/tests.log" | tail -15
}

stage_sanitize() {
  header "compute-sanitizer memcheck and racecheck"
  local sanitizer short tool
  sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  short=(tests/ops/test_env_mat.py::test_cuda_matches_cpu tests/ops/test_se_a.py::test_cuda_matches_cpu
         tests/nlist/test_neighbor_list.py::test_random_triclinic)
  for tool in memcheck racecheck; do
    "$sanitizer" --tool "$tool" --error-exitcode 1 --target-processes all \
      "$py" -m pytest -q -x -p no:cacheprovider -k cuda "${short[@]}" 2>&1 \
      | tee "$logs/$tool.log" | tail -5
  done
}

stage_check() {
  header "dpx check (its failures are recorded, not fatal: training then avoids those kernels)"
  "$root/.venv/bin/dpx" check 2>&1 | tee "$logs/check.log" || true
}

stage_train() {
  local work
  work="$(mktemp -d)"
  "$py" examples/make_data.py "$work/data" >/dev/null
  "$py" - "$root/examples/small_water/input.json" "$work/input.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["training"].update(numb_steps=60, disp_freq=20, save_freq=60)
json.dump(cfg, open(sys.argv[2], "w"), indent=1)
PY
  cd "$work"
  header "dpx train on CUDA: the record's paths"
  "$root/.venv/bin/dpx" train input.json --overwrite 2>&1 | tee "$logs/train.log" \
    | grep -E "op paths|finished|error" || true
  tail -2 lcurve.out
  header "dpx train on CUDA: DPX_CUDA_KERNELS=0 (the default without a record)"
  DPX_CUDA_KERNELS=0 "$root/.venv/bin/dpx" train input.json --overwrite 2>&1 \
    | tee "$logs/train_generic.log" | grep -E "op paths|finished|error" || true
  tail -2 lcurve.out
  header "torchrun --nproc_per_node 1 (NCCL)"
  "$root/.venv/bin/torchrun" --nproc_per_node 1 --no-python "$root/.venv/bin/dpx" train \
    input.json --overwrite 2>&1 | tee "$logs/train_ddp.log" | grep -E "joined|op paths|finished|error" || true
  tail -2 lcurve.out
  cd "$root"
}

# DeePMD-kit 3.2.0 for the side-by-side runs: the machine is offline, so its wheels travel in
# .whl/ (scripts/gpu_wheels.sh fetches them; carry .whl) and go into a folder of their own
# beside the system torch 2.11, which the wheel's custom ops were built against.
peer_dp() {
  command -v dp >/dev/null && { command -v dp; return; }
  ls "$root"/.whl/deepmd_kit-*.whl >/dev/null 2>&1 || return 0
  local site=/tmp/dpx-peer-site bin=/tmp/dpx-peer-bin
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$root"/.whl/*.whl >&2
  mkdir -p "$bin"
  printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec python3 -m deepmd "$@"\n' \
    "$site" > "$bin/dp"
  chmod +x "$bin/dp"
  echo "$bin/dp"
}

stage_bench() {
  header "benchmarks/gpu.py"
  local dp
  dp="$(peer_dp)"
  echo "peer: ${dp:-none (no dp on PATH and no .whl/deepmd_kit wheel)}"
  "$py" benchmarks/gpu.py --steps "${DPX_BENCH_STEPS:-200}" --dp "${dp:-none}" 2>&1 \
    | tee "$logs/bench.log"
}

for s in "${stages[@]}"; do
  case "$s" in
    build|test|sanitize|check|train|bench) "stage_$s" ;;
    *) echo "unknown stage '$s' (build, test, sanitize, check, train, bench)" >&2; exit 2 ;;
  esac
done
header "done: logs in $logs"
