#!/usr/bin/env bash
# The one-command CPU demo: build the synthetic-voice demo corpus (Libri2Mix layout), then run the
# Libri2Mix recipe on it with small configs: front-end, DDTSE stage 1 and 2, front-end + DDTSE,
# SGMSE+ baseline, scoring, exp/<tag>/RESULTS.md and spectrogram PNGs.
#
#   bash recipes/demo/run.sh                 # about 15 minutes on 2 CPU cores
#   bash recipes/demo/run.sh --size tiny     # a two-minute plumbing check (what the test suite runs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

size=default          # default | tiny
corpus_dir=data/demo_corpus/Libri2Mix
exp_root=exp
tag=
stage=0
stop_stage=7
seed=0
. tools/parse_options.sh

python="$(bash tools/setup_env.sh)"
case "$size" in
  default)
    mixtures="train-100=800,dev=40,test=40"; speakers="train-100=32,dev=8,test=8"
    test_limit=12; baseline_limit=3; plots=3
    overrides="" ;;
  tiny)
    mixtures="train-100=12,dev=2,test=2"; speakers="train-100=4,dev=2,test=2"
    test_limit=2; baseline_limit=1; plots=1
    overrides="trainer.max_epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1 \
data.batch_size=2 data.valid.max_items=1 system.val_metric_items=1 trainer.enable_progress_bar=false" ;;
  *) echo "error: --size is default or tiny, got '$size'" >&2; exit 2 ;;
esac
tag="${tag:-demo_$size}"

stamp="$corpus_dir/.demo_corpus_${size}_$seed"
if [ "$stage" -le 0 ] && [ ! -f "$stamp" ]; then
  echo "== building the demo corpus in $corpus_dir ($mixtures)"
  rm -rf "$corpus_dir"
  "$python" data/make_demo_corpus.py --out "$corpus_dir" --mixtures "$mixtures" --speakers "$speakers" \
      --rates 16000 --seed "$seed" --processes 2
  touch "$stamp"
fi

start=$(date +%s)
bash recipes/libri2mix/run.sh --librimix_root "$corpus_dir" --sample_rate 16000 --tag "$tag" --exp_root "$exp_root" \
    --stage "$stage" --stop_stage "$stop_stage" \
    --frontend_config conf/demo/tsb_16k.yaml --stage1_config conf/demo/ddtse_stage1.yaml \
    --stage2_config conf/demo/ddtse_stage2.yaml --sgmse_config conf/demo/sgmse.yaml \
    --train_overrides "$overrides" --test_limit "$test_limit" --baseline_limit "$baseline_limit" \
    --plots "$plots" --device cpu --K "3 0 10"
echo "demo finished in $(( $(date +%s) - start )) s (after the corpus); results: $exp_root/$tag/RESULTS.md"
