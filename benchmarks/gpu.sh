#!/usr/bin/env bash
# The one-shot GPU check: CUDA tests, then the GPU benchmark table (benchmarks/gpu.py).
#
#   bash benchmarks/gpu.sh            # on a CUDA machine (the device tool): < 8 minutes
#   bash benchmarks/gpu.sh --dry-run  # anywhere: the same steps on the CPU, tiny sizes
#
# Offline by design (the device image has torch + CUDA, e3nn, torch-geometric, pytest,
# hypothesis and no network): geobasis runs from this checkout (PYTHONPATH, no install,
# so nothing is fetched); cuEquivariance is used when importable (carry its wheels and
# `pip install --no-deps --no-index` them first), else its column is skipped with a note.
# Results go to $OUT when set (the device tool brings that folder back), else to
# benchmarks/results/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=""
if [[ "${1:-}" == "--dry-run" ]]; then DRY="--dry-run"; fi
OUTDIR="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [[ -z "$DRY" ]]; then
  # every CUDA test (they skip without a device; here they must run)
  python -m pytest -q -p no:cacheprovider tests/test_devices.py 2>&1 | tee "$OUTDIR/cuda_tests.log"
else
  python -m pytest -q -p no:cacheprovider --collect-only tests/test_devices.py | tail -1
fi
python benchmarks/gpu.py --out "$OUTDIR" $DRY 2>&1 | tee "$OUTDIR/gpu_benchmark.log"
