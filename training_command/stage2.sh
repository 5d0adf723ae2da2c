#!/usr/bin/env bash
# DDTSE stage 2: starts from stage 1's weights and EMA (not its optimiser or epoch), lr 5e-5, and
# emulates inference (tau = min(epoch / 100, 0.5)).
#   training_command/stage2.sh LIBRIMIX_ROOT EXP_DIR [key=value ...]   (EXP_DIR as for stage1.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 2 ] || { echo "usage: $0 LIBRIMIX_ROOT EXP_DIR [key=value ...]" >&2; exit 2; }
root=$1 exp=$2; shift 2
stage1="$exp/stage1/checkpoints/last.ckpt"
[ -f "$stage1" ] || { echo "error: no stage-1 checkpoint at $stage1; run training_command/stage1.sh first" >&2; exit 2; }
python="$(bash tools/setup_env.sh)"
exec "$python" train.py --config conf/ddtse_stage2.yaml --out_dir "$exp/stage2" system.init_from="$stage1" \
    data.train.root="$root" data.valid.root="$root" data.test.root="$root" "$@"
