#!/usr/bin/env bash
# Extract the Libri2Mix test split with the stage-1 DDTSE model and score it.
#   inference_command/stage1.sh LIBRIMIX_ROOT EXP_DIR [infer.py options, e.g. --K 10 --device cuda]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 2 ] || { echo "usage: $0 LIBRIMIX_ROOT EXP_DIR [infer.py options]" >&2; exit 2; }
root=$1 exp=$2; shift 2
stage=${STAGE:-stage1}
split="$root/wav16k/min/test"
python="$(bash tools/setup_env.sh)"
"$python" infer.py --ckpt "$exp/$stage/checkpoints/last.ckpt" --split "$split" \
    --out_dir "$exp/extracted/test/$stage" --seed 100 "$@"
"$python" calc_metrics.py --split "$split" --enhanced_dir "$exp/extracted/test/$stage" \
    --out_dir "$exp/scores/test/$stage" --overwrite
