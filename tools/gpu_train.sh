#!/usr/bin/env bash
# The GPU training campaign on a lent machine: tools/gpu_train.sh BUNDLE OUTDIR [--budget SECONDS] [tools/gpu_train.py flags]
# Prints the machine, checks the bundle (python -m srgan_core.pack), then runs tools/gpu_train.py; everything it
# prints also goes to OUTDIR/console.log. Set PYTHON to choose the interpreter (default python3).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 BUNDLE OUTDIR [--budget SECONDS] [more tools/gpu_train.py flags]" >&2
  exit 2
fi
mkdir -p "$2"
bundle=$(realpath "$1") out=$(realpath "$2")
shift 2
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "nvidia-smi: not found (no NVIDIA GPU here)"
  echo "cpus: $(nproc)"
  "$python" -m srgan_core.pack --verify "$bundle"
  "$python" -m tools.gpu_train "$bundle" "$out" "$@"
} 2>&1 | tee "$out/console.log"
