#!/usr/bin/env bash
# Per-speaker focused extractor (FocusedSpeakerExtractor workflow): slice -> train -> extract -> score.
# One DPTNet per target speaker, no enrollment, full-band audio (44.1 kHz by default).
#
#   recipes/focused/run.sh                          # the tiny synthetic example, all stages (CPU, minutes)
#   recipes/focused/run.sh --stage 2 --stop_stage 2 --config conf/focused/default.yaml \
#       --speaker alice --data datasets --exp exp/focused_alice
#
# Stages
#   0  demo corpus: one espeak-ng target voice's long recordings + other voices/noise/music as
#      dirty material (recipes/focused/local/make_demo.py); skipped with --demo false
#   1  slice the long recordings <data>/raw/<speaker>/{train,valid}.wav into 5-15 s clips
#      <data>/clean/<speaker>/{train,valid}/ (slicer.py --mode target)
#   2  train (train.py --config <config> --out_dir <exp>)
#   3  extract the test folder (infer.py --input_dir, chunked overlap-add, tree mirrored)
#   4  score against the references, and the unprocessed mixtures as the baseline (calc_metrics.py)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

stage=0
stop_stage=4
config=conf/focused/tiny.yaml
speaker=demo_target
data=datasets/demo_focused      # <data>/raw, <data>/clean, <data>/dirty, <data>/test/{mixture,target}
exp=exp/focused_tiny
demo=true                       # false: skip stage 0 (bring your own <data>/raw and <data>/test)
chunk_seconds=4
overlap_seconds=1
device=cpu
seed=0
. tools/parse_options.sh
[ $# -eq 0 ] || { echo "error: unexpected argument '$1' (options are --name value; see --help)" >&2; exit 2; }

python="$(tools/setup_env.sh)"
log() { echo "[focused $(date +%H:%M:%S)] $*"; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ] && [ "$demo" = true ]; then
  log "stage 0: synthetic demo corpus -> $data"
  if [ -f "$data/raw/$speaker/train.wav" ]; then
    log "  $data/raw/$speaker/train.wav exists; keeping it"
  else
    "$python" recipes/focused/local/make_demo.py --out_dir "$data" --speaker "$speaker" --seed "$seed"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: slice $data/raw/$speaker/{train,valid}.wav -> $data/clean/$speaker/"
  for set in train valid; do
    "$python" slicer.py "$data/raw/$speaker/$set.wav" --out_dir "$data/clean/$speaker/$set" \
      --mode target --target_min 5 --target_max 15 --overwrite \
      --report "$exp/slice_$set.json"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: train $config -> $exp"
  "$python" train.py --config "$config" --out_dir "$exp" seed="$seed" \
    data.train.root="$data" data.valid.root="$data" \
    data.train.speaker="$speaker" data.valid.speaker="$speaker"
fi

ckpt="$exp/checkpoints/last.ckpt"
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: extract $data/test/mixture -> $exp/extracted/test"
  "$python" infer.py --ckpt "$ckpt" --input_dir "$data/test/mixture" --out_dir "$exp/extracted/test" \
    --chunk_seconds "$chunk_seconds" --overlap_seconds "$overlap_seconds" --device "$device" --overwrite
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: score"
  "$python" calc_metrics.py --gt_dir "$data/test/target" --enhanced_dir "$data/test/mixture" \
    --out_dir "$exp/scores/test_mixture" --metrics si_sdr --title "mixture (no processing)" --overwrite --quiet
  "$python" calc_metrics.py --gt_dir "$data/test/target" --enhanced_dir "$exp/extracted/test" \
    --mix_dir "$data/test/mixture" --out_dir "$exp/scores/test" --metrics si_sdr,si_sdri \
    --title "$(basename "$exp")" --overwrite
  "$python" - "$exp" <<'PY'
import json, sys
from pathlib import Path
exp = Path(sys.argv[1])
mix = json.loads((exp / "scores/test_mixture/summary.json").read_text())
est = json.loads((exp / "scores/test/summary.json").read_text())
print(json.dumps({"mixture": mix, "extracted": est}, indent=1)[:2000])
PY
fi
log "done"
