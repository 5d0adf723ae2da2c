#!/usr/bin/env bash
# Absent target speaker (issue 16): the demo front-end trained with and without absent-target
# items, on the demo corpus and speaker encoder of a finished demo run (bash recipes/demo/run.sh).
#
#   1  train TD-SpeakerBeam ($config, the demo's pretrained frozen clue) twice: as the demo does
#      (or reuse the demo's own front-end, --without_exp, when it was trained with this config),
#      and with data.train.absent_target_prob=$absent_prob
#   2  evaluate both (--checkpoint best: the one best on the dev set's val/loss, or last) on the first
#      $items test items, as they are (present target: SI-SDRi, output energy) and with the target
#      removed from the same mixtures (absent: output energy re the mixture, dB)
#   3  $out (a Markdown table)
#
#   bash recipes/demo/absent_target.sh [--demo_exp exp/demo_default] [--absent_prob 0.2]
#   bash recipes/demo/absent_target.sh --demo_exp exp/demo_long --config conf/demo/long/tsb_16k.yaml \
#       --without_exp exp/demo_long/frontend        # the long demo's front-end as the one without
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

stage=1
stop_stage=3
demo_exp=exp/demo_default          # a finished demo run: its lists and its speaker encoder
corpus_dir=data/demo_corpus/Libri2Mix
exp=exp/demo_absent
absent_prob=0.2
config=conf/demo/tsb_16k.yaml      # the front-end config (the demo's: conf/demo/<size>/tsb_16k.yaml)
without_exp=                       # a front-end run trained with $config and no absent items; empty: train it
checkpoint=best                    # best (on dev, system.monitor) or last
train_overrides=""                 # extra dotted overrides for both trainings (space-separated)
threshold_db=25                    # system.absent_threshold_db (docs/results/absent_target.md: 20, 25 and 30 tried)
valid_items=40                     # dev items (half of them absent in the run with absent items)
items=40
threads=2
out=docs/results/absent_target.md
. tools/parse_options.sh

case "$checkpoint" in best|last) ;; *) echo "error: --checkpoint is best or last, got '$checkpoint'" >&2; exit 2 ;; esac
if [ -n "$without_exp" ] && [ ! -f "$without_exp/checkpoints/last.ckpt" ]; then
  echo "error: --without_exp $without_exp has no checkpoints/last.ckpt (a training run's folder, e.g. exp/demo_long/frontend)" >&2; exit 2
fi
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
python="$(bash tools/setup_env.sh)"
mkdir -p "$exp"
. tools/command_log.sh
speaker_ckpt="$demo_exp/speaker_encoder/checkpoints/last.ckpt"
[ -f "$speaker_ckpt" ] || { echo "error: $speaker_ckpt not found: run bash recipes/demo/run.sh first (or --demo_exp)" >&2; exit 2; }
data=()
for set in train valid test; do
  data+=("data.$set.root=$corpus_dir" "data.$set.mode=min" "data.$set.mixture_type=mix_both" "data.$set.lists_dir=$demo_exp/data")
done
data+=(data.train.split=train-100 data.valid.split=dev data.test.split=test data.sample_rate=16000
       "data.valid.max_items=$valid_items"
       "model.speaker={name: pretrained, ckpt: '$speaker_ckpt', freeze: true}")

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "== stage 1: train the front-end without and with absent-target items ($absent_prob)"
  # the checkpoint is picked on dev by the training objective (val/loss), which weighs absent against present items
  select=(system.monitor=val/loss system.monitor_mode=min)
  if [ -z "$without_exp" ]; then
    run "$python" train.py --config "$config" --out_dir "$exp/without" "${data[@]}" "${select[@]}" $train_overrides
  fi
  run "$python" train.py --config "$config" --out_dir "$exp/with" "${data[@]}" "${select[@]}" \
      "data.train.absent_target_prob=$absent_prob" "data.valid.absent_target_prob=0.5" \
      "system.absent_threshold_db=$threshold_db" $train_overrides
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: evaluate on $items test items, target present and absent"
  for system in without with; do
    run_dir="$exp/$system"; [ "$system" = without ] && [ -n "$without_exp" ] && run_dir="$without_exp"
    ckpt="$run_dir/checkpoints/last.ckpt"
    if [ "$checkpoint" = best ]; then
      ckpt="$("$python" -c "import sys; from ddtse.checkpoint import best_checkpoint; print(best_checkpoint(sys.argv[1]))" "$run_dir")"
    fi
    echo "$system: $ckpt"
    for case in present absent; do
      prob=0; metrics=si_sdr,si_sdri,pesq,present_energy_db; [ "$case" = absent ] && { prob=1; metrics=absent_energy_db; }
      run "$python" -m ddtse.cli.evaluate --ckpt "$ckpt" --split test --limit "$items" \
          --out_dir "$exp/scores/$system/$case" --device cpu --metrics "$metrics" "data.test.absent_target_prob=$prob" \
          "${data[@]}"
    done
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  steps=$("$python" -c "import yaml, sys; from ddtse.config import load_config
c = load_config(sys.argv[1]); print(int(c['trainer']['max_epochs']) * int(c['trainer']['limit_train_batches']))" "$config")
  "$python" - "$exp" "$items" "$absent_prob" "$threshold_db" "$out" "$config" "$steps" "$without_exp" "$checkpoint" <<'PY'
import json, sys
from pathlib import Path
exp, items, prob, thr, out = Path(sys.argv[1]), *sys.argv[2:5], Path(sys.argv[5])
config, steps, reused, which = sys.argv[6:10]
def get(system, case, metric):
    s = json.loads((exp / "scores" / system / case / "summary.json").read_text())
    return s[metric]["mean"], s[metric]["count"]
rows = ["| front-end trained | SI-SDRi, target present (dB) | PESQ, present | output energy re mixture, target present (dB) "
        "| output energy re mixture, target absent (dB) | items |", "|---|---|---|---|---|---|"]
for system, label in (("without", "as the demo (no absent items)"), ("with", f"with absent_target_prob={prob}")):
    sdri, n = get(system, "present", "si_sdri"); pesq, _ = get(system, "present", "pesq")
    level, _ = get(system, "present", "present_energy_db"); energy, m = get(system, "absent", "absent_energy_db")
    rows.append(f"| {label} | {sdri:+.2f} | {pesq:.2f} | {level:+.1f} | {energy:+.1f} | {n} present, {m} absent |")
text = ["# Absent target speaker: the demo front-end trained with and without absent-target items", "",
        f"`bash recipes/demo/absent_target.sh` (TD-SpeakerBeam of {config}, {steps} steps, the demo's frozen "
        f"pretrained speaker clue{'; the front-end without absent items is ' + reused if reused else ''}; "
        f"checkpoint: {'the best on the dev set' if which == 'best' else 'the last'}). Trained with absent items, the loss of an absent item is 10 log10(E_out/E_mix + tau), "
        f"tau = -{thr} dB, and that of a present item -SI-SDR + |10 log10(E_out/E_target)| (so that being quiet "
        f"everywhere does not pass). Absent items are the same {items} test mixtures with the target's source "
        "subtracted (the interferer and the noise remain; the enrollment is still the target's). The detection "
        "margin is the gap between the two energy columns.", ""] + rows
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("\n".join(text) + "\n")
print("\n".join(text))
PY
fi
