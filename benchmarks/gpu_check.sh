#!/usr/bin/env bash
# The one prepared GPU check (run it through the device tool; budget: under 8 minutes on one GPU).
#
#   1. renders the demo corpus (the CPU demo's sizes),
#   2. runs the demo recipe at GPU scale (recipes/demo/run.sh --size gpu: the demo's systems with
#      larger batches and more steps on CUDA) and scores 40+ test items per system,
#   3. measures the paper configs' training step time and peak GPU memory at fp32 and bf16-mixed
#      (benchmarks/bench_training.py), and the inference speed of the paper-size NCSN++,
#   4. copies every table into $OUT (the device tool brings it back) and benchmarks/results/gpu/.
#
# The GPU machine has torch and lightning but none of the audio packages and no network: carry them
# as wheels. Once, on the development machine, from the repo root:
#   bash benchmarks/gpu_wheels.sh          # downloads the cp312 wheels into .whl/ (git-ignored)
# Then, through the device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
export PYTHONUNBUFFERED=1
start=$(date +%s)
elapsed() { echo "[gpu_check] $(( $(date +%s) - start )) s: $*"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "error: installing the carried wheels failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export DDTSE_PYTHON="${DDTSE_PYTHON:-$(command -v python3)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$DDTSE_PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name(0))' \
  || exit 1

elapsed "demo recipe at GPU scale"
timeout 330 bash recipes/demo/run.sh --size gpu --corpus_dir /tmp/gpu_corpus/Libri2Mix --exp_root /tmp/gpu_exp \
  || echo "[gpu_check] the GPU demo did not finish (exit $?)"
cp /tmp/gpu_exp/demo_gpu/RESULTS.md "$out/demo_gpu_RESULTS.md" 2>/dev/null || true
cp /tmp/gpu_exp/demo_gpu/learning_curves.png "$out/demo_gpu_learning_curves.png" 2>/dev/null || true

elapsed "paper-config training step time and peak memory (fp32, bf16-mixed)"
timeout 60 "$DDTSE_PYTHON" benchmarks/bench_training.py --device cuda --configs demo paper --out_dir "$out" \
  || echo "[gpu_check] fp32 training benchmark failed"
timeout 60 "$DDTSE_PYTHON" benchmarks/bench_training.py --device cuda --configs demo paper --bf16 --out_dir "$out" \
  || echo "[gpu_check] bf16 training benchmark failed"

elapsed "inference speed of the paper-size network"
timeout 60 "$DDTSE_PYTHON" benchmarks/bench_inference.py --device cuda --preset ncsnpp_paper --out_dir "$out" \
  || echo "[gpu_check] inference benchmark failed"

mkdir -p benchmarks/results/gpu
[ "$out" = benchmarks/results/gpu ] || cp "$out"/*.md "$out"/*.json benchmarks/results/gpu/ 2>/dev/null || true
elapsed "done; results in $out"
