#!/usr/bin/env bash
# Libri2Mix target speech extraction recipe (Kaldi style: --stage N --stop_stage M).
#
#   0  check the tree, write enrollment maps and lists        (data/prepare_libri2mix.py)
#   1  speaker encoder (optional, --speaker_config; prints its test-speaker EER), then the
#      discriminative front-end (optional)                    (train.py --config $frontend_config)
#   2  DDTSE stage 1                                          (train.py --config $stage1_config)
#   3  DDTSE stage 2, from stage 1's weights and EMA          (train.py --config $stage2_config)
#   4  SGMSE+ baseline (optional)                             (train.py --config $sgmse_config)
#      flow-matching TSE (optional, --flow_config: MeanFlow-TSE or AD-FlowTSE; --mr_config first
#      trains AD-FlowTSE's mixing-ratio predictor)            (train.py --config $flow_config)
#   5  inference on the test split: front-end, DDTSE stage 1 and 2, front-end + DDTSE, SGMSE+,
#      the flow system at each --flow_nfe
#   6  scoring (SI-SDR, SI-SDRi, PESQ, ESTOI, confusion and acceptance rates; per FF/MM/FM group
#      when speaker sex is known; --score_metrics adds e.g. dnsmos_ovrl)
#   7  exp/<tag>/RESULTS.md, spectrogram PNGs and learning_curves.png (validation SI-SDRi and selection rate)
#
# Example (paper setting, 8 GPUs):
#   recipes/libri2mix/run.sh --librimix_root /data/Libri2Mix --tag ddtse_paper \
#       --train_overrides "trainer.devices=8 trainer.strategy=ddp"
# A pretrained speaker clue (as the paper's frozen speaker-verification embedding): stage 1 trains
# $exp/speaker_encoder on the training speakers and every extractor gets
# model.speaker={name: pretrained, ckpt: <its last.ckpt>, freeze: $speaker_freeze}:
#   recipes/libri2mix/run.sh ... --speaker_config conf/speaker_encoder.yaml --use_pretrained_speaker true
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

stage=0
stop_stage=7
librimix_root=
sample_rate=16000
mode=min
mixture_type=mix_both
train_split=train-100
valid_split=dev
test_split=test
tag=libri2mix
exp_root=exp
frontend_config=conf/tsb_16k.yaml
stage1_config=conf/ddtse_stage1.yaml
stage2_config=conf/ddtse_stage2.yaml
sgmse_config=conf/sgmse.yaml
flow_config=          # flow-matching TSE config (conf/meanflow_tse.yaml, conf/adflow_tse.yaml); empty = no flow stage
mr_config=            # AD-FlowTSE's mixing-ratio predictor config (conf/mr_predictor.yaml); empty = none
flow_nfe=1            # network calls of the flow system at inference; a list ("1 2 4") adds rows
speaker_config=       # speaker-encoder config (e.g. conf/speaker_encoder.yaml); empty = no speaker-encoder stage
use_pretrained_speaker=false  # true: the extractors' speaker clue is $exp/speaker_encoder (model.speaker=pretrained)
speaker_freeze=true   # pretrained clue frozen (true) or fine-tuned with the extractor (false)
speaker_overrides=    # extra overrides of the speaker-encoder training only
train_overrides=
K=10                  # DDTSE re-noise steps; a list ("3 10") adds stage-2 rows for the others
t_start=1.0
seed=100
test_limit=
baseline_limit=
device=auto
jobs=
score_metrics=si_sdr,si_sdri,pesq,estoi,si_sdr_interferer,selected,confusion,accepted
plots=3
. tools/parse_options.sh

[ -n "$librimix_root" ] || { echo "error: --librimix_root is required (the folder holding wav8k/ or wav16k/)" >&2; exit 2; }
[ -d "$librimix_root" ] || { echo "error: Libri2Mix root not found: $librimix_root" >&2; exit 2; }
read -r -a K_list <<< "$K"
[ "${#K_list[@]}" -ge 1 ] || { echo "error: --K needs at least one value" >&2; exit 2; }
for k in "${K_list[@]}"; do
  [[ "$k" =~ ^[0-9]+$ ]] || { echo "error: --K takes non-negative integers, got '$k'" >&2; exit 2; }
done
K=${K_list[0]}; more_K=("${K_list[@]:1}")
read -r -a flow_nfe_list <<< "$flow_nfe"
for n in "${flow_nfe_list[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "error: --flow_nfe takes positive integers, got '$n'" >&2; exit 2; }
done
[ -z "$flow_config" ] || [ -f "$flow_config" ] || { echo "error: --flow_config not found: $flow_config" >&2; exit 2; }
[ -z "$mr_config" ] || [ -n "$flow_config" ] || { echo "error: --mr_config trains AD-FlowTSE's predictor: give --flow_config too" >&2; exit 2; }
flow_name=$( [ -n "$flow_config" ] && basename "$flow_config" .yaml || true )
python="$(bash tools/setup_env.sh)"
exp="$exp_root/$tag"
lists="$exp/data"
split_dir="$librimix_root/wav$((sample_rate / 1000))k/$mode/$test_split"
mkdir -p "$exp/logs"
. tools/command_log.sh

data_overrides=()
for s in train valid test; do
  data_overrides+=("data.$s.root=$librimix_root" "data.$s.mode=$mode" "data.$s.mixture_type=$mixture_type"
                   "data.$s.lists_dir=$lists")
done
data_overrides+=("data.train.split=$train_split" "data.valid.split=$valid_split" "data.test.split=$test_split"
                 "data.sample_rate=$sample_rate")
read -r -a extra <<< "$train_overrides"
read -r -a speaker_extra <<< "$speaker_overrides"
declare -a clue=()  # the extractors' speaker clue override
case "$use_pretrained_speaker" in
  true) clue=("model.speaker={name: pretrained, ckpt: '$exp/speaker_encoder/checkpoints/last.ckpt', freeze: $speaker_freeze}") ;;
  false) ;;
  *) echo "error: --use_pretrained_speaker is true or false, got '$use_pretrained_speaker'" >&2; exit 2 ;;
esac

train() {  # train NAME CONFIG [overrides...]
  local name=$1 config=$2; shift 2
  run "$python" train.py --config "$config" --out_dir "$exp/$name" "${data_overrides[@]}" "${clue[@]}" "$@" "${extra[@]}"
}

speaker_sources() {  # speaker_sources SPLIT: the speaker_utterances source list of a Libri2Mix split
  echo "[{type: librimix, root: '$librimix_root', split: $1, mode: $mode}]"
}

map="$lists/$test_split/map_mixture2enrollment"
infer() {  # infer NAME LIMIT ARGS...
  local name=$1 limit=$2; shift 2
  local out="$exp/extracted/$test_split/$name"
  run "$python" infer.py "$@" --split "$split_dir" --mixture_type "$mixture_type" --enrollment_map "$map" \
      --out_dir "$out" --overwrite --seed "$seed" --device "$device" ${limit:+--limit "$limit"}
}

score() {  # score NAME [extra calc_metrics args]
  local name=$1; shift
  run "$python" calc_metrics.py --split "$split_dir" --mixture_type "$mixture_type" \
      --out_dir "$exp/scores/$test_split/$name" --overwrite --allow_missing --title "$name" ${jobs:+--jobs "$jobs"} \
      --metrics "$score_metrics" "$@"
}

ckpt() { echo "$exp/$1/checkpoints/last.ckpt"; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: check $librimix_root, write enrollment maps and lists to $lists"
  run "$python" data/prepare_libri2mix.py --root "$librimix_root" --out_dir "$lists" --split "$train_split" "$valid_split" \
      "$test_split" --sample_rate "$sample_rate" --mode "$mode" --types "$mixture_type" --overwrite
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ] && [ -n "$speaker_config" ]; then
  echo "== stage 1: speaker encoder ($speaker_config)"
  run "$python" train.py --config "$speaker_config" --out_dir "$exp/speaker_encoder" \
      "data.sample_rate=$sample_rate" "model.sample_rate=$sample_rate" "data.train.sources=$(speaker_sources "$train_split")" \
      "data.valid.sources=$(speaker_sources "$valid_split")" "${extra[@]}" "${speaker_extra[@]}"
  run "$python" -m ddtse.cli.evaluate_speaker --ckpt "$(ckpt speaker_encoder)" --data "$librimix_root" \
      --split "$test_split" --mode "$mode" --trials "$exp/speaker_encoder/trials_$test_split.txt" \
      --output "$exp/speaker_encoder/eer_$test_split.json" --device "$device"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ] && [ -n "$frontend_config" ]; then
  echo "== stage 1: front-end ($frontend_config)"
  train frontend "$frontend_config"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: DDTSE stage 1 ($stage1_config)"
  train ddtse_stage1 "$stage1_config"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "== stage 3: DDTSE stage 2 ($stage2_config)"
  train ddtse_stage2 "$stage2_config" "system.init_from=$(ckpt ddtse_stage1)"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ -n "$sgmse_config" ]; then
  echo "== stage 4: SGMSE+ baseline ($sgmse_config)"
  train sgmse "$sgmse_config"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ -n "$flow_config" ]; then
  if [ -n "$mr_config" ]; then
    echo "== stage 4: mixing-ratio predictor ($mr_config)"
    run "$python" train.py --config "$mr_config" --out_dir "$exp/mr_predictor" "${data_overrides[@]}" "${extra[@]}"
  fi
  echo "== stage 4: flow-matching TSE ($flow_config)"
  train "$flow_name" "$flow_config"
fi

flow_opts=()
[ -n "$mr_config" ] && flow_opts=(--opt "mr_predictor=$exp/mr_predictor/checkpoints/last.ckpt")

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  echo "== stage 5: inference on $split_dir"
  if [ -n "$frontend_config" ]; then
    infer frontend "$test_limit" --ckpt "$(ckpt frontend)"
    infer frontend+ddtse "$test_limit" --ckpt "$(ckpt frontend)" --refine_ckpt "$(ckpt ddtse_stage2)" \
        --t_start "$t_start" --K "$K"
  fi
  infer ddtse_stage1 "$test_limit" --ckpt "$(ckpt ddtse_stage1)" --K "$K"
  infer ddtse_stage2 "$test_limit" --ckpt "$(ckpt ddtse_stage2)" --K "$K"
  for k in "${more_K[@]}"; do
    infer "ddtse_stage2_K$k" "$test_limit" --ckpt "$(ckpt ddtse_stage2)" --K "$k"
  done
  [ -n "$sgmse_config" ] && infer sgmse "${baseline_limit:-$test_limit}" --ckpt "$(ckpt sgmse)"
  if [ -n "$flow_config" ]; then
    for n in "${flow_nfe_list[@]}"; do
      infer "${flow_name}_nfe$n" "$test_limit" --ckpt "$(ckpt "$flow_name")" --opt "nfe=$n" "${flow_opts[@]}"
    done
  fi
fi

systems=(ddtse_stage1 ddtse_stage2)
for k in "${more_K[@]}"; do systems+=("ddtse_stage2_K$k"); done
[ -n "$frontend_config" ] && systems=(frontend "${systems[@]}" frontend+ddtse)
[ -n "$sgmse_config" ] && systems+=(sgmse)
if [ -n "$flow_config" ]; then
  for n in "${flow_nfe_list[@]}"; do systems+=("${flow_name}_nfe$n"); done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  echo "== stage 6: scoring"
  if [ -n "$test_limit" ]; then  # score the mixture on the same items as the systems
    score mixture --enhanced_dir "$exp/extracted/$test_split/ddtse_stage2" --score_mixture
  else
    score mixture --score_mixture
  fi
  for name in "${systems[@]}"; do
    score "$name" --enhanced_dir "$exp/extracted/$test_split/$name"
  done
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  echo "== stage 7: results table"
  label() { case $1 in
      frontend) echo "front-end ($(basename "$frontend_config" .yaml))";;
      ddtse_stage1) echo "DDTSE stage 1 (K=$K)";; ddtse_stage2) echo "DDTSE stage 2 (K=$K)";;
      ddtse_stage2_K*) echo "DDTSE stage 2 (K=${1#ddtse_stage2_K})";;
      frontend+ddtse) echo "front-end + DDTSE (t_start=$t_start)";; sgmse) echo "SGMSE+ baseline (PC, N=30)";;
      meanflow_tse*_nfe*) echo "MeanFlow-TSE (NFE=${1##*_nfe})";; adflow_tse*_nfe*) echo "AD-FlowTSE (NFE=${1##*_nfe})";;
      *) echo "$1";; esac; }
  rows=(--row "mixture|scores/$test_split/mixture")
  for name in "${systems[@]}"; do
    note=""
    [ "$name" = sgmse ] && [ -n "$baseline_limit" ] && note="fixed subset: first $baseline_limit items"
    rows+=(--row "$(label "$name")|scores/$test_split/$name|extracted/$test_split/$name|$note")
  done
  curves=()
  for name in frontend ddtse_stage1 ddtse_stage2 sgmse ${flow_name:+"$flow_name"}; do
    [ -f "$exp/$name/training_curves.json" ] && curves+=(--curve "$name|$name")
  done
  header="Libri2Mix-$( [ "$mixture_type" = mix_both ] && echo noisy || echo clean ) ($mixture_type), \
$((sample_rate / 1000)) kHz, $mode, split $test_split${test_limit:+ (first $test_limit items)}; PESQ \
$( [ "$sample_rate" = 8000 ] && echo NB || echo WB ); data: $librimix_root; device: $device."
  "$python" -m ddtse.cli.report --exp_dir "$exp" "${rows[@]}" --title "Results: $tag" --header "$header" \
      --commands "$commands" --plots "$plots" --split "$split_dir" --mixture_type "$mixture_type" \
      --enrollment_map "$map" "${curves[@]}"
fi
