#!/usr/bin/env bash
# The one-command CPU demo: build the synthetic-voice demo corpus (Libri2Mix layout), then run the
# Libri2Mix recipe on it with small configs: speaker encoder (the pretrained speaker clue), front-end,
# DDTSE stage 1 and 2, front-end + DDTSE, SGMSE+ baseline, scoring, exp/<tag>/RESULTS.md, spectrogram
# PNGs and learning curves.
#
#   bash recipes/demo/run.sh                 # about 30 minutes on 2 idle CPU cores (configs: conf/demo/)
#   bash recipes/demo/run.sh --size tiny     # a two-minute plumbing check (what the test suite runs)
#   bash recipes/demo/run.sh --size long     # about 100 minutes on 2 CPU cores (conf/demo/long/); writes
#                                            # docs/results/demo_long.md and its learning-curve PNG
#   bash recipes/demo/run.sh --size gpu      # a few minutes on one GPU (conf/demo/gpu/; benchmarks/gpu_check.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

size=default          # default | tiny | long | gpu
corpus_dir=data/demo_corpus/Libri2Mix
exp_root=exp
tag=
stage=0
stop_stage=7
seed=0
pretrained_speaker=true   # false: every extractor learns its speaker clue jointly (no speaker-encoder stage)
threads=2             # torch threads (results depend on it at the last bit; the demo is sized for 2 cores)
. tools/parse_options.sh

# Seeded end to end; a thread count of its own keeps a rerun's numbers identical on any machine.
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
python="$(bash tools/setup_env.sh)"
mixtures="train-100=800,dev=40,test=40"; speakers="train-100=80,dev=8,test=8"
conf=conf/demo; device=cpu; overrides=""; speaker_overrides=""
test_limit=40; baseline_limit=12; plots=3; publish=""; K="3 0"
case "$size" in
  default) ;;
  long) conf=conf/demo/long; baseline_limit=40; K="3 0 10"; publish=docs/results/demo_long.md ;;
  gpu) conf=conf/demo/gpu; device=cuda; baseline_limit=40; K="3 0 10" ;;
  tiny)
    mixtures="train-100=12,dev=2,test=2"; speakers="train-100=4,dev=2,test=2"
    test_limit=2; baseline_limit=1; plots=1; K="3 0 10"
    overrides="trainer.max_epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1 \
data.batch_size=2 data.valid.max_items=1 system.val_metric_items=1 trainer.enable_progress_bar=false"
    speaker_overrides="system.val_trials=20 data.batch_size=4" ;;
  *) echo "error: --size is default, tiny, long or gpu, got '$size'" >&2; exit 2 ;;
esac
tag="${tag:-demo_$size}"
case "$pretrained_speaker" in
  true) speaker_args=(--speaker_config "$conf/speaker_encoder.yaml" --use_pretrained_speaker true) ;;
  false) speaker_args=() ;;
  *) echo "error: --pretrained_speaker is true or false, got '$pretrained_speaker'" >&2; exit 2 ;;
esac

stamp="$corpus_dir/.demo_corpus_$(echo "${mixtures}_${speakers}_$seed" | tr -c 'A-Za-z0-9_\n' -)"
if [ "$stage" -le 0 ] && [ ! -f "$stamp" ]; then
  echo "== building the demo corpus in $corpus_dir ($mixtures; speakers $speakers)"
  rm -rf "$corpus_dir"
  "$python" data/make_demo_corpus.py --out_dir "$corpus_dir" --mixtures "$mixtures" --speakers "$speakers" \
      --rates 16000 --seed "$seed" --processes 2
  touch "$stamp"
fi

start=$(date +%s)
bash recipes/libri2mix/run.sh --librimix_root "$corpus_dir" --sample_rate 16000 --tag "$tag" --exp_root "$exp_root" \
    --stage "$stage" --stop_stage "$stop_stage" "${speaker_args[@]}" --speaker_overrides "$speaker_overrides" \
    --frontend_config "$conf/tsb_16k.yaml" --stage1_config "$conf/ddtse_stage1.yaml" \
    --stage2_config "$conf/ddtse_stage2.yaml" --sgmse_config "$conf/sgmse.yaml" \
    --train_overrides "$overrides" --test_limit "$test_limit" --baseline_limit "$baseline_limit" \
    --plots "$plots" --device "$device" --K "$K"
echo "demo finished in $(( $(date +%s) - start )) s (after the corpus); results: $exp_root/$tag/RESULTS.md"
if [ -n "$publish" ]; then
  cp "$exp_root/$tag/RESULTS.md" "$publish"
  cp "$exp_root/$tag/learning_curves.png" "${publish%.md}_curves.png"
  echo "published $publish and ${publish%.md}_curves.png"
fi
