#!/usr/bin/env bash
# Task-net levers under the development protocol (docs/RESULTS.md "Protocol"): train on `fit`,
# score on `dev`, never on val.
#
#   scripts/dev_levers.sh OUT_ROOT LEVER SEED [STEPS]
#       LEVER: base | seg_up | aug | aug_seg_up | stride8 | full_res | stride8_seg_balance |
#              stride8_seg_maps | stride8_seg_core | stride8_map_share | full_res_core | fusion_max |
#              fusion_saliency | fusion_warm
#              (the cases below)
#
# Every run trains a fresh task net (ImageNet init) on the fused images of one fixed fusion net
# (FUSION, default: the bundled default model's), with the recipe's task-phase settings
# (scripts/recipe.sh, phase `tasks`) for STEPS steps (default 1200), then scores it on dev:
# OUT_ROOT/LEVER_sSEED/dev.json. The fixed fusion net saw the train split's images (dev included)
# in its own training but no task net trained here sees a dev label.
# The fusion_* levers measure the fusion objective instead: a fusion net is first trained on fit
# alone (the recipe's `fusion` phase, FUSION_STEPS, default 600) with that intensity target
# (`loss.intensity_target`), then the aug_seg_up task net on its fused images; the report also
# holds the fixed judge's scores of those fused images (`evaluate --judge`).
# Both trainings pass --resume: a run cut short (a session's end) continues from its last.pt
# (saved every checkpoint_every steps) when started again with the same arguments.
# Environment as scripts/recipe.sh: DEVICE, FUSION_PERCEPTION_DATA; THREADS (torch threads, default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?usage: scripts/dev_levers.sh OUT_ROOT LEVER SEED [STEPS]}
LEVER=${2:?lever: one of the cases below}
SEED=${3:?seed}
STEPS=${4:-1200}
FP=${FP:-"$ROOT/.venv/bin/fusion-perception"}
DATA=${FUSION_PERCEPTION_DATA:-$ROOT/../shared/datasets}
FUSION=${FUSION:-$ROOT/fusion_perception/assets/default.pt}
PSEUDO="[$DATA/roadscene=$ROOT/data/teacher_labels/roadscene.json,$DATA/tno=$ROOT/data/teacher_labels/tno.json,\
$DATA/llvip_samples/train=$ROOT/data/teacher_labels/llvip_samples_train.json]"
AUG=(--set data.scale_jitter=0.3 --set data.photometric=0.2)
AUG_SEG_UP=(--set loss.seg_upsampled=true "${AUG[@]}")
STRIDE8=("${AUG_SEG_UP[@]}" --set "model.tasks={det_levels: [4, 8, 16]}")
case $LEVER in
  base) EXTRA=(--set loss.seg_upsampled=false) ;;
  seg_up) EXTRA=(--set loss.seg_upsampled=true) ;;
  aug) EXTRA=(--set loss.seg_upsampled=false "${AUG[@]}") ;;
  aug_seg_up | fusion_max | fusion_saliency | fusion_warm) EXTRA=("${AUG_SEG_UP[@]}") ;;
  # Resolution levers on top of aug_seg_up: a detection level on the stride-4 pyramid feature
  # (8 px in the 640x480 input), or the whole task branch at full input resolution.
  stride8) EXTRA=("${STRIDE8[@]}") ;;
  full_res) EXTRA=("${AUG_SEG_UP[@]}" --set "model.tasks={task_scale: 1}") ;;
  # stride8 with class-balanced segmentation weights (loss.seg_balance: (median freq / freq)^0.5).
  stride8_seg_balance) EXTRA=("${STRIDE8[@]}" --set loss.seg_balance=0.5) ;;
  # stride8 with segmentation learnt from the maps alone (no box-derived masks: data.seg_box_core 0),
  # or with box-derived masks on the centre half of each box (the object's own pixels, mostly).
  stride8_seg_maps) EXTRA=("${STRIDE8[@]}" --set data.seg_box_core=0) ;;
  stride8_seg_core) EXTRA=("${STRIDE8[@]}" --set data.seg_box_core=0.5) ;;
  # stride8_seg_core with the pairs that carry a segmentation map drawn more often (data.map_share:
  # 0.3 + 0.7 x 35/208, so 42 % of the samples instead of 17 %).
  stride8_map_share) EXTRA=("${STRIDE8[@]}" --set data.seg_box_core=0.5 --set data.map_share=0.3) ;;
  # The recipe candidate: full_res with stride8_seg_core's masks, scale jitter down to 0.6x so the
  # one model also serves the node's 384x288 network_size.
  full_res_core) EXTRA=("${AUG_SEG_UP[@]}" --set "model.tasks={task_scale: 1}" --set data.seg_box_core=0.5
                        --set data.scale_jitter=0.4) ;;
  *) echo "unknown lever $LEVER (base seg_up aug aug_seg_up stride8 full_res stride8_seg_balance stride8_seg_maps stride8_seg_core" \
          "stride8_map_share full_res_core fusion_max fusion_saliency fusion_warm)" >&2
     exit 2 ;;
esac
RUN=$OUT/${LEVER}_s$SEED
mkdir -p "$RUN"
JUDGE=()
t0=$SECONDS
if [[ $LEVER == fusion_* ]]; then
  "$FP" train --config "$ROOT/config/train_bilevel.yaml" --no-progress --resume --device "${DEVICE:-cpu}" \
    --set out_dir="$RUN/fusion" --set data.msrs_root="$DATA/msrs" --set data.train_split=fit \
    --set seed="$SEED" --set threads="${THREADS:-2}" --set steps="${FUSION_STEPS:-600}" \
    --set scheme=plain --set train_tasks=false --set upper_every=1 --set ema_decay=0.0 \
    --set loss.intensity_target="${LEVER#fusion_}" \
    --set data.crop_width=256 --set data.crop_height=224 --set data.batch_size=4
  echo "[levers] $LEVER seed $SEED: $((SECONDS - t0)) s fusion" | tee -a "$OUT/times.txt"
  FUSION=$RUN/fusion/last.pt
  JUDGE=(--judge)
  t0=$SECONDS
fi
"$FP" train --config "$ROOT/config/train_bilevel.yaml" --no-progress --resume --device "${DEVICE:-cpu}" \
  --set out_dir="$RUN" --set data.msrs_root="$DATA/msrs" --set data.train_split=fit \
  --set seed="$SEED" --set threads="${THREADS:-2}" --set steps="$STEPS" \
  --set scheme=plain --set freeze_fusion=true --set init_from="$FUSION" --set init_tasks=false \
  --set lower_lr=0.001 --set data.pseudo_labelled="$PSEUDO" \
  --set data.crop_width=640 --set data.crop_height=480 --set data.batch_size=4 "${EXTRA[@]}"
echo "[levers] $LEVER seed $SEED: $((SECONDS - t0)) s train" | tee -a "$OUT/times.txt"
"$FP" evaluate "$DATA/msrs" --split dev --checkpoint "$RUN/last.pt" --json "$RUN/dev.json" "${JUDGE[@]}"
