#!/usr/bin/env bash
# The GPU measurements that docs/performance.md lists under "Not measured yet", in one run:
# the search kernel against the plain loop with both limits, the MNIST ADGAN column of
# Table 1 at the paper's settings, and training throughput. Each step has a time limit and
# its output is saved under DIR (default: $OUT, else gpu-check/), with nvidia-smi's report.
#
#     bash benchmarks/gpu_check.sh [DIR]
#
# Needs a CUDA build of torch and a CUDA device; exits at once without one.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" \
  || exit 1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" \
  | tee "$out/torch.txt"

run() {  # run NAME SECONDS COMMAND...: output to DIR/NAME.log, exit status at its end
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S) UTC, limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  echo "rc=${PIPESTATUS[0]}" | tee -a "$out/$name.log"
}

run search_speed 150 python benchmarks/search_speed.py --device cuda --images 64
run table_score_time 330 python benchmarks/table_score_time.py --device cuda
run train_speed 120 python benchmarks/train_speed.py --device cuda
