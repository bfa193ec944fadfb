#!/usr/bin/env bash
# The default model's training recipe, sized for two CPU cores (docs/RESULTS.md has the wall times).
#
#   scripts/recipe.sh OUT_ROOT [PHASE ...]
#       phases: fusion tasks bilevel tasks2 bilevel2 baselines export (default: all, in that order)
#
# Phases (each a `fusion-perception train` run over config/train_bilevel.yaml with overrides):
#   fusion    the fusion net alone on the plain fusion loss L_f, 256x224 crops.
#   tasks     fusion net frozen (its fused images computed once and cached), the pretrained task net
#             trained on whole 640x480 images, the deployment size; every 4th batch comes from the
#             teacher-labelled RoadScene / TNO / LLVIP folders (distillation, data/teacher_labels).
#   bilevel   bi-level dual-task fine-tuning of both: the fusion net takes hypergradient steps from the
#             segmentation and detection modules, evaluated on the held-out pairs.
#   tasks2, bilevel2  a second round of the two (lower level on the new fused images, then upper):
#             the shipped model is bilevel2 (docs/RESULTS.md has what each round gained).
#   baselines the task net on IR-only and visible-only input for as many task-net steps as the two
#             tasks phases together (900 + 1500): the fair comparison.
#   export    ONNX of the final model at 640x480 and 384x288 (the node's network_size), each with its
#             INT8 sibling (calibrated on the training split), then the
#             report: MSRS val scored once, with the fixed judge and the baselines where OUT_ROOT has them;
#             RoadScene and TNO fusion metrics (OUT_ROOT/roadscene.json, tno.json).
# SCHEME picks how the fusion net learns (docs/DESIGN.md "Training schemes"), at the same budget:
#   bilevel   (default, the shipped model) the phases above.
#   tdfusion, refusion  the fusion phase trains with that scheme's learnable loss (config/train_SCHEME.yaml)
#             for as many iterations as bilevel's phases that train the fusion net together (fusion +
#             bilevel + bilevel2: 600 + 240 + 400), on the same crops and MSRS pairs; then one `tasks`
#             phase as long as bilevel's two (900 + 1500): a fresh pretrained task net on the frozen
#             fused images; then export. Default phases: fusion tasks export (the single-source
#             baselines do not depend on the scheme: run them once, or copy tasks_ir/ and
#             tasks_visible/ into OUT_ROOT for the report).
# The task net runs at the network input's full resolution (model.tasks.task_scale 1: detection
# strides 8 and 16 px, segmentation at stride 4). Task phases augment (scale jitter 0.4, so the
# one model also serves the node's 384x288 network_size; photometric 0.2), score segmentation on
# bilinearly upsampled logits and draw the pairs that carry a segmentation map 3 times in 10
# (data.map_share 0.3); task and bi-level phases fill box-derived segmentation masks on each box's
# centre half only. All chosen on the development split (docs/RESULTS.md, "Levers on dev"). The
# learnable-loss schemes' fusion phases keep their configs' labels (whole boxes) in the task loss
# they meta-learn from, and their inner task net at half resolution with a stride-4 level (8 px of
# the input; 3.3x cheaper per meta step than full resolution): the task net they deploy is the
# `tasks` phase's, trained like bi-level's.
# Every phase resumes from its OUT_ROOT/<phase>/last.pt: a run cut short (a session's end) goes on
# where it stopped when the same command is started again; a finished phase returns at once.
# Environment: DEVICE (cpu|cuda, default cpu), SEED (default 0), THREADS (torch CPU threads, default
# 2), SCALE (multiplies every phase's steps, default 1), SPLIT (the MSRS split the phases train on,
# default train; `fit` for a development run scored on `dev`), FUSION_PERCEPTION_DATA (the datasets
# folder, default <repository>/../shared/datasets; as in fusion_perception/data_root.py).
set -euo pipefail
SCHEME=${SCHEME:-bilevel}
case $SCHEME in
  bilevel) DEFAULT_PHASES="fusion tasks bilevel tasks2 bilevel2 baselines export"; FINAL=bilevel2 ;;
  tdfusion | refusion) DEFAULT_PHASES="fusion tasks export"; FINAL=tasks ;;
  *) echo "unknown SCHEME $SCHEME (bilevel tdfusion refusion)" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?usage: scripts/recipe.sh OUT_ROOT [PHASE ...]}
shift
PHASES=${*:-$DEFAULT_PHASES}
DEVICE=${DEVICE:-cpu}
SEED=${SEED:-0}
SCALE=${SCALE:-1}
SPLIT=${SPLIT:-train}
FP=${FP:-"$ROOT/.venv/bin/fusion-perception"}
DATA=${FUSION_PERCEPTION_DATA:-$ROOT/../shared/datasets}
MSRS=$DATA/msrs
steps() { python3 -c "print(max(1, round($1 * $SCALE)))"; }
train() {  # train NAME [--set ...]; CONFIG: the scheme's config file (default train_bilevel.yaml)
  local name=$1; shift
  local t0=$SECONDS
  "$FP" train --config "${CONFIG:-$ROOT/config/train_bilevel.yaml}" --no-progress --resume --device "$DEVICE" \
    --set out_dir="$OUT/$name" --set data.msrs_root="$MSRS" --set data.train_split="$SPLIT" \
    --set seed="$SEED" --set threads="${THREADS:-2}" --set "model.tasks={task_scale: 1}" "$@"
  echo "[recipe] $name: $((SECONDS - t0)) s" | tee -a "$OUT/times.txt"
}
WHOLE=(--set data.crop_width=640 --set data.crop_height=480 --set data.batch_size=4)
# Distillation: teacher (NanoDet-g) boxes on the folders without human labels, scores as box weights.
PSEUDO="[$DATA/roadscene=$ROOT/data/teacher_labels/roadscene.json,$DATA/tno=$ROOT/data/teacher_labels/tno.json,\
$DATA/llvip_samples/train=$ROOT/data/teacher_labels/llvip_samples_train.json]"
# The task net's segmentation labels: the maps, and box-derived masks on each box's centre half
# where a pair has no map (data.seg_box_core; "Levers on dev").
SEG_LABELS=(--set data.seg_box_core=0.5)
MAPS=(--set data.map_share=0.3)
TASKS=(--set scheme=plain --set lower_lr=0.001 --set data.pseudo_labelled="$PSEUDO" "${WHOLE[@]}" "${SEG_LABELS[@]}"
       --set loss.seg_upsampled=true --set data.scale_jitter=0.4 --set data.photometric=0.2 "${MAPS[@]}")
BILEVEL=(--set scheme=bilevel --set upper_every=2 --set warmup_steps=0 --set fusion_lr=0.0002 --set lower_lr=0.0003
         --set data.crop_width=320 --set data.crop_height=256 --set data.batch_size=4 "${SEG_LABELS[@]}")
mkdir -p "$OUT"
for phase in $PHASES; do
  if [[ $SCHEME != bilevel && $phase =~ ^(bilevel|tasks2|bilevel2)$ ]]; then
    echo "phase $phase belongs to SCHEME=bilevel; SCHEME=$SCHEME trains fusion, tasks, export" >&2; exit 2
  fi
  case $SCHEME:$phase in
    tdfusion:fusion | refusion:fusion)  # the task net inside the meta step: half resolution, 3 levels
      CONFIG=$ROOT/config/train_$SCHEME.yaml train fusion --set steps="$(steps 1240)" --set ema_decay=0.0 \
        --set "model.tasks={det_levels: [4, 8, 16]}" \
        --set data.crop_width=256 --set data.crop_height=224 --set data.batch_size=4 --set "data.extra_pair_roots=[]" \
        --dump-loss-weights "$OUT/fusion/loss_weights" ;;
    tdfusion:tasks | refusion:tasks)
      train tasks --set freeze_fusion=true --set init_from="$OUT/fusion/last.pt" --set init_tasks=false \
        --set steps="$(steps 2400)" "${TASKS[@]}" ;;
    *:fusion) train fusion --set scheme=plain --set train_tasks=false --set upper_every=1 --set steps="$(steps 600)" \
              --set data.crop_width=256 --set data.crop_height=224 --set data.batch_size=4 --set ema_decay=0.0 ;;
    *:tasks) train tasks --set freeze_fusion=true --set init_from="$OUT/fusion/last.pt" --set steps="$(steps 900)" \
             "${TASKS[@]}" ;;
    *:bilevel) train bilevel --set init_from="$OUT/tasks/last.pt" --set steps="$(steps 240)" "${BILEVEL[@]}" ;;
    *:tasks2) train tasks2 --set freeze_fusion=true --set init_from="$OUT/bilevel/last.pt" --set steps="$(steps 1500)" \
              "${TASKS[@]}" ;;
    *:bilevel2) train bilevel2 --set init_from="$OUT/tasks2/last.pt" --set steps="$(steps 400)" "${BILEVEL[@]}" ;;
    *:baselines)
      for modality in ir visible; do
        train "tasks_$modality" --set input_modality="$modality" --set steps="$(steps 2400)" "${TASKS[@]}"
      done ;;
    *:export)
      for size in 640x480 384x288; do  # the node's network_size: the default and the 384x288 sibling
        name=$([ $size = 640x480 ] && echo model || echo model_$size)
        "$FP" export "$OUT/$FINAL/last.pt" --out-dir "$OUT/model" --name "$name" --size $size
        "$FP" quantize "$OUT/model/$name.onnx" --calib "$MSRS" --split "$SPLIT"
      done
      report=$([ "$SPLIT" = train ] && echo val || echo dev)
      baselines=()
      for modality in ir visible; do
        [ -e "$OUT/tasks_$modality/last.pt" ] && baselines+=(--baseline "$modality=$OUT/tasks_$modality/last.pt")
      done
      "$FP" evaluate "$MSRS" --split "$report" --checkpoint "$OUT/$FINAL/last.pt" --json "$OUT/$report.json" \
        --judge "${baselines[@]}"
      for folder in roadscene tno; do  # other rigs, no labels: fusion metrics beside average, max, pyramid
        "$FP" evaluate "$DATA/$folder" --fusion-only --checkpoint "$OUT/$FINAL/last.pt" --json "$OUT/$folder.json"
      done ;;
    *) echo "unknown phase $phase (fusion tasks bilevel tasks2 bilevel2 baselines export)" >&2; exit 2 ;;
  esac
done
