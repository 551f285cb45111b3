#!/usr/bin/env bash
# The one GPU check of the CUDA backend (docs/CUDA.md, "Running the GPU check").
#
#   bash bench/gpu-check.sh prepare [--archs 90a] [--quick]
#       where Node and nvcc are (this repository's dev machine): builds every CUDA library of the
#       check and the CPU references into $QZO_GPU_BUNDLE (default .qzo-cache/gpu-bundle). Without a
#       GPU this is the dry run of everything but the GPU parts, and it says which parts it skipped.
#   bash bench/gpu-check.sh run [--quick]
#       on the GPU machine (python3 + numpy; PyTorch used when present; Node NOT needed): the kernel
#       checks, the GPU-vs-CPU training trajectory, the matmul timings + roofline, the 7B QZO step.
#       Carry the packed bundle: run(carry=[".qzo-cache/gpu-bundle.tgz"]) (about 20 MB for --archs 90a). Results: bench/results/<device>-<date>.{json,md}
#       and $OUT. Budget: about 3 minutes on an H100 (the compiles happen at prepare time).
#   bash bench/gpu-check.sh            prepare (when Node is there and the bundle is missing), then run.
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${QZO_GPU_BUNDLE:-.qzo-cache/gpu-bundle}
mode=${1:-all}
[ $# -gt 0 ] && shift

prepare() {
  if ! command -v node >/dev/null; then
    echo "gpu-check.sh: no node on this machine: prepare the bundle where Node and nvcc are, and carry $BUNDLE"
    return 1
  fi
  npx tsc -p tsconfig.json --outDir .qzo-cache/dist >/dev/null || { echo "gpu-check.sh: tsc failed"; return 1; }
  node .qzo-cache/dist/bench/gpu-check.js --bundle "$BUNDLE" "$@" || return 1
  # Carry this one file to the GPU machine (cubins compress about 3x; the carry limit is 64 MiB).
  tar -czf "$BUNDLE.tgz" -C "$(dirname "$BUNDLE")" "$(basename "$BUNDLE")" && echo "gpu-check.sh: bundle packed: $BUNDLE.tgz ($(du -h "$BUNDLE.tgz" | cut -f1))"
}

run() {
  if [ ! -f "$BUNDLE/index.json" ] && [ -f "$BUNDLE.tgz" ]; then
    tar -xzf "$BUNDLE.tgz" -C "$(dirname "$BUNDLE")" || { echo "gpu-check.sh: cannot unpack $BUNDLE.tgz"; return 1; }
  fi
  if [ ! -f "$BUNDLE/index.json" ]; then
    echo "gpu-check.sh: no bundle at $BUNDLE (run 'bash bench/gpu-check.sh prepare' where Node and nvcc are, and carry $BUNDLE.tgz)"
    return 1
  fi
  if ! python3 -c "import numpy" 2>/dev/null; then
    echo "gpu-check.sh: python3 with numpy is needed for the GPU part"
    return 1
  fi
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
  fi
  # The matrix instructions the tiled kernel really uses on this chip (HMMA: mma.sync; HGMMA: wgmma).
  if command -v cuobjdump >/dev/null; then
    lib=$(ls "$BUNDLE"/matmul/*-fused/lib.so 2>/dev/null | head -1)
    [ -n "$lib" ] && echo "SASS of $lib: $(cuobjdump --dump-sass "$lib" | grep -cE '\bHMMA') HMMA, $(cuobjdump --dump-sass "$lib" | grep -cE '\bHGMMA') HGMMA, $(cuobjdump --dump-sass "$lib" | grep -cE '\bLDL|\bSTL') local-memory accesses"
  fi
  local log=${OUT:-/tmp}/gpu-check.log
  PYTHONUNBUFFERED=1 python3 bench/gpu-check.py "$BUNDLE" "$@" 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

case "$mode" in
  prepare) prepare "$@" ;;
  run) run "$@" ;;
  all)
    if [ ! -f "$BUNDLE/index.json" ]; then prepare "$@" || exit 1; fi
    run "$@"
    ;;
  *) echo "usage: bash bench/gpu-check.sh [prepare|run|all] [--quick] [--archs 90a,80]"; exit 2 ;;
esac
