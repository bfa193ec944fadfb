#!/usr/bin/env bash
# Continue the default model and the two single-modality detectors from 1500 to STEPS (same budget
# for all three; the cosine schedule restarts from the new length for each alike), then evaluate.
#   scripts/continue_runs.sh [STEPS]   (default 3000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FP=.venv/bin/fusion-perception
MSRS=${MSRS:-../shared/datasets/msrs}
STEPS=${1:-3000}
cont() {  # source run, target run, extra overrides
  local src=$1 dst=$2; shift 2
  mkdir -p "runs/$dst"
  [ -f "runs/$dst/last.pt" ] || cp "runs/$src/last.pt" "runs/$dst/last.pt"
  $FP train --config config/train_bilevel.yaml --no-progress --resume --set "out_dir=runs/$dst" \
    --set "steps=$STEPS" "$@" > "runs/$dst.log" 2>&1
}
cont bilevel_min_norm "bilevel_min_norm_$STEPS"
cont det_ir "det_ir_$STEPS" --set input_modality=ir --set scheme=plain
cont det_visible "det_visible_$STEPS" --set input_modality=visible --set scheme=plain
$FP evaluate "$MSRS" --split val --checkpoint "runs/bilevel_min_norm_$STEPS/last.pt" \
  --baseline "ir=runs/det_ir_$STEPS/last.pt" --baseline "visible=runs/det_visible_$STEPS/last.pt" \
  --json "runs/bilevel_min_norm_$STEPS/val.json" > "runs/bilevel_min_norm_$STEPS.eval.log" 2>&1
