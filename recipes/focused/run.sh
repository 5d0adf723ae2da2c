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
#   5  train the full-band DDTSE refiner (train.py --config <refiner_config>; enrollment-free, 44.1 kHz)
#   6  extract DPTNet + DDTSE (infer.py --ckpt <dptnet> --refine_ckpt <refiner> --t_start <t_start>)
#   7  score DPTNet alone against DPTNet + DDTSE (SI-SDR, SI-SDRi, PESQ on a 16 kHz downsample,
#      DNSMOS OVRL) -> <exp>/RESULTS.md; --refiner_config "" skips 5-7
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

stage=0
stop_stage=7
config=conf/focused/tiny.yaml
refiner_config=conf/focused/ddtse_refiner_tiny.yaml
t_start=0.5
K=3
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
refiner="$exp/ddtse_refiner/checkpoints/last.ckpt"
if [ -n "$refiner_config" ] && [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: train the full-band DDTSE refiner $refiner_config -> $exp/ddtse_refiner"
  "$python" train.py --config "$refiner_config" --out_dir "$exp/ddtse_refiner" seed="$seed" \
    data.train.root="$data" data.valid.root="$data" \
    data.train.speaker="$speaker" data.valid.speaker="$speaker"
fi

if [ -n "$refiner_config" ] && [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: DPTNet + DDTSE (t_start $t_start, K $K) -> $exp/extracted/test_refined"
  "$python" infer.py --ckpt "$ckpt" --refine_ckpt "$refiner" --t_start "$t_start" --K "$K" --seed 100 \
    --input_dir "$data/test/mixture" --out_dir "$exp/extracted/test_refined" \
    --chunk_seconds "$chunk_seconds" --overlap_seconds "$overlap_seconds" --device "$device" --overwrite
fi

if [ -n "$refiner_config" ] && [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "stage 7: DPTNet alone against DPTNet + DDTSE -> $exp/RESULTS.md"
  metrics=si_sdr,si_sdri,pesq,dnsmos_ovrl
  for name in test test_refined; do
    "$python" calc_metrics.py --gt_dir "$data/test/target" --enhanced_dir "$exp/extracted/$name" \
      --mix_dir "$data/test/mixture" --out_dir "$exp/scores/full_$name" --metrics "$metrics" --overwrite --quiet
  done
  "$python" calc_metrics.py --gt_dir "$data/test/target" --enhanced_dir "$data/test/mixture" \
    --mix_dir "$data/test/mixture" --out_dir "$exp/scores/full_mixture" --metrics "$metrics" --overwrite --quiet
  "$python" -m ddtse.cli.report --exp_dir "$exp" --title "Focused extractor at 44.1 kHz: DPTNet and DPTNet + DDTSE" \
    --header "Test folder $data/test (44.1 kHz; PESQ on a 16 kHz downsample, wide band). Configs: $config, $refiner_config." \
    --row "mixture (no processing)|scores/full_mixture" --row "DPTNet|scores/full_test|extracted/test" \
    --row "DPTNet + DDTSE (t_start $t_start, K $K)|scores/full_test_refined|extracted/test_refined"
  cat "$exp/RESULTS.md"
fi
log "done"
