#!/usr/bin/env bash
# DDTSE stage 1 (as the original release's training_command/stage1.sh), on a Libri2Mix tree.
#   training_command/stage1.sh LIBRIMIX_ROOT EXP_DIR [key=value ...]
# e.g. training_command/stage1.sh /data/Libri2Mix exp/ddtse trainer.devices=8 trainer.strategy=ddp
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 2 ] || { echo "usage: $0 LIBRIMIX_ROOT EXP_DIR [key=value ...]" >&2; exit 2; }
root=$1 exp=$2; shift 2
python="$(bash tools/setup_env.sh)"
exec "$python" train.py --config conf/ddtse_stage1.yaml --out_dir "$exp/stage1" \
    data.train.root="$root" data.valid.root="$root" data.test.root="$root" "$@"
