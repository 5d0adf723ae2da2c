#!/usr/bin/env bash
# Download the wheels the GPU check needs and the GPU machine lacks (its python3 is 3.12 with torch and
# lightning but no audio packages, and it has no network) into .whl/ (git-ignored, < 64 MiB).
#   bash benchmarks/gpu_wheels.sh
# pesq has no wheel (source only), so the GPU check scores SI-SDR, selection and ESTOI, not PESQ.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
for pkg in soundfile soxr pystoi espeakng-loader cffi pycparser; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$pkg"
done
du -sh .whl
