#!/usr/bin/env bash
# Extract the Libri2Mix test split with the stage-2 DDTSE model (1 + K network calls) and score it.
#   inference_command/stage2.sh LIBRIMIX_ROOT EXP_DIR [infer.py options]
# For X+DDTSE (a front-end refined by DDTSE) see recipes/libri2mix/run.sh, stage 5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=stage2 exec bash inference_command/stage1.sh "$@"
