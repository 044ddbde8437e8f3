#!/usr/bin/env bash
# Packs cuEquivariance for the offline GPU machine: downloads the wheels that the device
# image lacks (Python 3.12, x86-64), unpacks them, drops what the benchmark never loads
# (GTest archives, Triton caches of other GPU generations) and writes .cue/cue.tar.xz,
# which benchmarks/gpu.sh unpacks onto PYTHONPATH.  Needs the network (run it here, not there).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${CUE_VERSION:-0.13.0}"
work=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 -d "$work/wheels" \
  "cuequivariance==$VERSION" "cuequivariance-torch==$VERSION" \
  "cuequivariance-ops-cu13==$VERSION" "cuequivariance-ops-torch-cu13==$VERSION" platformdirs
mkdir -p "$work/site" .cue
for wheel in "$work"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$work/site"; done
rm -rf "$work/site/lib64"
find "$work/site" -path '*triton/cache/*.json' ! -name '*.9.0.json' -delete
tar cf - -C "$work/site" . | xz -T0 -7 > .cue/cue.tar.xz
rm -rf "$work"
grep -qx '/.cue/' .git/info/exclude 2>/dev/null || echo /.cue/ >> .git/info/exclude
ls -l .cue/cue.tar.xz
