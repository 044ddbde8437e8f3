#!/usr/bin/env bash
# The one-shot GPU check: every CUDA test, then the GPU benchmark table (benchmarks/gpu.py).
#
#   bash benchmarks/gpu.sh            # on a CUDA machine (the device tool): < 8 minutes
#   bash benchmarks/gpu.sh --dry-run  # anywhere: the same steps on the CPU, tiny sizes
#
# Offline by design (the device image has torch + CUDA, e3nn, torch-geometric, pytest,
# hypothesis and no network): geobasis runs from this checkout (PYTHONPATH, no install,
# so nothing is fetched).  cuEquivariance (cuequivariance, cuequivariance-torch, the
# CUDA-13 ops wheels and platformdirs) travels as one xz tarball of the unpacked wheels,
# .cue/cue.tar.xz (28 MB; the wheels themselves are 74 MB, over the device tool's 64 MiB):
# make it with `bash benchmarks/gpu_wheels.sh` and carry `.cue`.  Without it the
# cuEquivariance column is skipped with a note.  Results go to $OUT when set (the device
# tool brings that folder back), else to benchmarks/results/gpu/ (a dry run: $TMPDIR).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DRY=""
if [[ "${1:-}" == "--dry-run" ]]; then DRY="--dry-run"; fi
# a dry run never overwrites the committed GPU results
if [[ -n "$DRY" ]]; then OUTDIR="${OUT:-${TMPDIR:-/tmp}/geobasis_gpu_dry_run}"
else OUTDIR="${OUT:-benchmarks/results/gpu}"; fi
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z "$DRY" && -f .cue/cue.tar.xz ]]; then
  mkdir -p /tmp/cue_site && tar xJf .cue/cue.tar.xz -C /tmp/cue_site \
    && export PYTHONPATH="$PYTHONPATH:/tmp/cue_site"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
# every CUDA test (named *cuda*; they skip without a device, here they must run)
CUDA_TESTS=(tests/test_devices.py tests/products/test_gaunt.py
            tests/products/test_clebsch_gordan.py tests/nn/conv/test_sfbc.py)
if [[ -z "$DRY" ]]; then
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs -k cuda "${CUDA_TESTS[@]}" 2>&1 \
    | tee "$OUTDIR/cuda_tests.log"
  tests_rc=${PIPESTATUS[0]}
else
  "$PY" -m pytest -q -p no:cacheprovider --collect-only -k cuda "${CUDA_TESTS[@]}" | tail -1
  tests_rc=0
fi
"$PY" benchmarks/gpu.py --out "$OUTDIR" $DRY 2>&1 | tee "$OUTDIR/gpu_benchmark.log"
bench_rc=${PIPESTATUS[0]}
echo "cuda tests exit $tests_rc, benchmark exit $bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
