#!/usr/bin/env bash
# Discriminative front-ends on the 8 kHz demo corpus: TD-SpeakerBeam, +ASA, +ASA-MP (Libri2Mix
# layout, mix_both) and +IPD (two-microphone reverberant dynamic mixtures of the same voices).
#
#   0  build the 8 kHz demo corpus (data/make_demo_corpus.py)
#   1  train each variant (train.py --config conf/demo/<variant>.yaml)
#   2  extract + score the test split (one-channel variants; FF/MM/FM groups) and score the IPD
#      variant on two-microphone test mixtures (python -m ddtse.cli.evaluate)
#   3  exp/<tag>/RESULTS.md
#
#   bash recipes/frontends/run.sh [--variants "tsb tsb_asa"] [--train_overrides "trainer.max_epochs=5"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

stage=0
stop_stage=3
corpus_dir=data/demo_corpus_8k/Libri2Mix
mixtures="train-100=800,dev=40,test=40"
speakers="train-100=32,dev=8,test=8"
exp_root=exp
tag=frontends_demo
variants="tsb tsb_asa tsb_asa_mp tsb_ipd"
train_overrides=
ipd_test_items=80
seed=0
score_metrics=si_sdr,si_sdri,pesq,estoi,si_sdr_interferer,selected,confusion,accepted
. tools/parse_options.sh

python="$(bash tools/setup_env.sh)"
exp="$exp_root/$tag"
split_dir="$corpus_dir/wav8k/min"
mkdir -p "$exp"
. tools/command_log.sh
read -r -a extra <<< "$train_overrides"

data_overrides() {  # the corpus location for a variant's config
  if [ "$1" = tsb_ipd ]; then
    echo "data.train.source.path=$split_dir/train-100 data.valid.source.path=$split_dir/dev data.test.source.path=$split_dir/test"
  else
    echo "data.train.root=$corpus_dir data.valid.root=$corpus_dir data.test.root=$corpus_dir"
  fi
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ] && [ ! -f "$corpus_dir/.complete" ]; then
  echo "== stage 0: 8 kHz demo corpus in $corpus_dir"
  rm -rf "$corpus_dir"
  run "$python" data/make_demo_corpus.py --out_dir "$corpus_dir" --mixtures "$mixtures" --speakers "$speakers" \
      --rates 8000 --seed "$seed" --processes 2
  touch "$corpus_dir/.complete"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  for v in $variants; do
    echo "== stage 1: train $v"
    read -r -a d <<< "$(data_overrides "$v")"
    run "$python" train.py --config "conf/demo/$v.yaml" --out_dir "$exp/$v" "${d[@]}" "${extra[@]}"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: extract and score"
  run "$python" calc_metrics.py --split "$split_dir/test" --score_mixture --out_dir "$exp/scores/mixture" \
      --overwrite --quiet --title mixture --metrics "$score_metrics"
  for v in $variants; do
    ckpt="$exp/$v/checkpoints/last.ckpt"
    if [ "$v" = tsb_ipd ]; then
      read -r -a d <<< "$(data_overrides "$v")"
      run "$python" -m ddtse.cli.evaluate --ckpt "$ckpt" --config "conf/demo/$v.yaml" --split test \
          --limit "$ipd_test_items" --out_dir "$exp/scores/$v" --title "$v" "${d[@]}"
    else
      run "$python" infer.py --ckpt "$ckpt" --split "$split_dir/test" --out_dir "$exp/extracted/$v" \
          --overwrite --quiet --batch_size 4
      run "$python" calc_metrics.py --split "$split_dir/test" --enhanced_dir "$exp/extracted/$v" \
          --out_dir "$exp/scores/$v" --overwrite --quiet --title "$v" --metrics "$score_metrics"
    fi
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  rows=(--row "mixture (Libri2Mix-layout test, mix_both)|scores/mixture")
  for v in $variants; do
    if [ "$v" = tsb_ipd ]; then
      rows+=(--row "TSB + IPD (2-mic reverberant dynamic mixtures)|scores/$v||$ipd_test_items two-mic mixtures of the test voices; SI-SDRi against their own mixtures")
    else
      rows+=(--row "$v|scores/$v|extracted/$v")
    fi
  done
  "$python" -m ddtse.cli.report --exp_dir "$exp" "${rows[@]}" --title "Front-ends on the 8 kHz demo corpus" \
      --header "Demo corpus (synthetic espeak-ng voices), 8 kHz, min; PESQ NB. Configs: conf/demo/tsb*.yaml." \
      --commands "$commands"
  for v in $variants; do
    [ -f "$exp/scores/$v/summary.md" ] && { echo; cat "$exp/scores/$v/summary.md"; } >> "$exp/RESULTS.md"
  done
fi
