#!/usr/bin/env bash
# The runs behind docs/RESULTS.md, in order; each writes runs/<name>/last.pt and a val-split report.
#   scripts/run_experiments.sh [BUDGET_ABLATION]   (default 400 steps per ablation run)
# The default model itself: fusion-perception train --config config/train_bilevel.yaml
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FP=.venv/bin/fusion-perception
MSRS=${MSRS:-../shared/datasets/msrs}
ABL=${1:-400}
MAIN_STEPS=$(grep -E '^steps:' config/train_bilevel.yaml | awk '{print $2}')

run() {  # name, then --set overrides
  local name=$1; shift
  [ -f "runs/$name/last.pt" ] && [ -f "runs/$name/val.json" ] && return 0
  $FP train --config config/train_bilevel.yaml --no-progress --set "out_dir=runs/$name" "$@" > "runs/$name.log" 2>&1
}
evaluate() {  # name, extra args
  local name=$1; shift
  $FP evaluate "$MSRS" --split val --checkpoint "runs/$name/last.pt" --json "runs/$name/val.json" "$@" \
    > "runs/$name.eval.log" 2>&1
}

mkdir -p runs
# Fair-protocol detector baselines: same architecture and budget as the default model, one modality.
run det_ir --set input_modality=ir --set scheme=plain
run det_visible --set input_modality=visible --set scheme=plain
# Ablation at a reduced budget: aggregation rules, and bi-level vs plain fusion loss.
for agg in min_norm normalized random; do
  run "abl_${agg}" --set "steps=$ABL" --set "aggregation=$agg" --set warmup_steps=50
  evaluate "abl_${agg}"
done
run abl_plain --set "steps=$ABL" --set scheme=plain --set warmup_steps=50
evaluate abl_plain
echo "main model steps: $MAIN_STEPS"
