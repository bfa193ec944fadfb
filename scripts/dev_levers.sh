#!/usr/bin/env bash
# Task-net levers under the development protocol (docs/RESULTS.md "Protocol"): train on `fit`,
# score on `dev`, never on val.
#
#   scripts/dev_levers.sh OUT_ROOT LEVER SEED [STEPS]
#       LEVER: base | seg_up | aug | aug_seg_up   (what each sets: the case below)
#
# Every run trains a fresh task net (ImageNet init) on the fused images of one fixed fusion net
# (FUSION, default: the bundled default model's), with the recipe's task-phase settings
# (scripts/recipe.sh, phase `tasks`) for STEPS steps (default 1200), then scores it on dev:
# OUT_ROOT/LEVER_sSEED/dev.json. The fixed fusion net saw the train split's images (dev included)
# in its own training but no task net trained here sees a dev label.
# Environment as scripts/recipe.sh: DEVICE, FUSION_PERCEPTION_DATA; THREADS (torch threads, default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?usage: scripts/dev_levers.sh OUT_ROOT LEVER SEED [STEPS]}
LEVER=${2:?lever: base | seg_up | aug | aug_seg_up}
SEED=${3:?seed}
STEPS=${4:-1200}
FP=${FP:-"$ROOT/.venv/bin/fusion-perception"}
DATA=${FUSION_PERCEPTION_DATA:-$ROOT/../shared/datasets}
FUSION=${FUSION:-$ROOT/fusion_perception/assets/default.pt}
PSEUDO="[$DATA/roadscene=$ROOT/data/teacher_labels/roadscene.json,$DATA/tno=$ROOT/data/teacher_labels/tno.json,\
$DATA/llvip_samples/train=$ROOT/data/teacher_labels/llvip_samples_train.json]"
AUG=(--set data.scale_jitter=0.3 --set data.photometric=0.2)
case $LEVER in
  base) EXTRA=(--set loss.seg_upsampled=false) ;;
  seg_up) EXTRA=(--set loss.seg_upsampled=true) ;;
  aug) EXTRA=(--set loss.seg_upsampled=false "${AUG[@]}") ;;
  aug_seg_up) EXTRA=(--set loss.seg_upsampled=true "${AUG[@]}") ;;
  *) echo "unknown lever $LEVER (base seg_up aug aug_seg_up)" >&2; exit 2 ;;
esac
RUN=$OUT/${LEVER}_s$SEED
mkdir -p "$RUN"
t0=$SECONDS
"$FP" train --config "$ROOT/config/train_bilevel.yaml" --no-progress --device "${DEVICE:-cpu}" \
  --set out_dir="$RUN" --set data.msrs_root="$DATA/msrs" --set data.train_split=fit \
  --set seed="$SEED" --set threads="${THREADS:-2}" --set steps="$STEPS" \
  --set scheme=plain --set freeze_fusion=true --set init_from="$FUSION" --set init_tasks=false \
  --set lower_lr=0.001 --set data.pseudo_labelled="$PSEUDO" \
  --set data.crop_width=640 --set data.crop_height=480 --set data.batch_size=4 "${EXTRA[@]}"
echo "[levers] $LEVER seed $SEED: $((SECONDS - t0)) s train" | tee -a "$OUT/times.txt"
"$FP" evaluate "$DATA/msrs" --split dev --checkpoint "$RUN/last.pt" --json "$RUN/dev.json"
