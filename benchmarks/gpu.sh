#!/usr/bin/env bash
# The GPU figures in one run, on a machine with a CUDA device (`make bench-gpu`):
#   1. the GPU tests (pytest -m gpu: maps equal the CPU's, memory comes back, service, audit);
#   2. `make bench` on CUDA: grad_cam / forward, the six methods vs captum, occlusion exact and
#      approximate vs captum on three models, bf16 autocast and channels_last against fp32,
#      batch scaling 1 -> 64, and the service under 16 clients vs one at a time.
# Results go to benchmarks/results/gpu-bench/ (device.txt, tests.txt, latest.{json,md}), and
# are copied under $OUT when it is set. Exits 3 without a CUDA device, 1 when a step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    PY=python3
    [ -x .venv/bin/python ] && PY=.venv/bin/python
fi
RESULTS=benchmarks/results/gpu-bench
FIGURES=baselines,grad_cam,six_methods,occlusion,approx,gpu_options,batch_scaling,service

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "no CUDA device: the GPU figures need one" >&2
    exit 3
fi
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
{
    nvidia-smi || true
    "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
              torch.cuda.get_device_name(0))'
} > "$RESULTS/device.txt" 2>&1

failed=0
echo "== GPU tests"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$RESULTS/tests.txt" \
    || failed=1
echo "== make bench on CUDA: $FIGURES"
timeout 420 "$PY" -m benchmarks.run --cuda-only --skip-slow --figures "$FIGURES" \
    --out "$RESULTS" 2>&1 | tee "$RESULTS/bench.log" || failed=1

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/gpu-bench" && cp "$RESULTS"/* "$OUT/gpu-bench/"
fi
exit $failed
