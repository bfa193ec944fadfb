#!/usr/bin/env bash
# The three training schemes at one budget (docs/RESULTS.md, "Three schemes, one budget").
#
#   scripts/compare_schemes.sh OUT_ROOT [STEPS]
#
# Each scheme trains a fresh fusion net and an ImageNet-initialised task net for STEPS iterations
# (default 400) on 256x224 crops of the MSRS train split, batch 4, then is exported and evaluated on
# MSRS val with the same `fusion-perception evaluate` (+ the teacher judge). The reconstruction
# scheme is also scored on RoadScene and TNO (fusion metrics only). Wall times go to OUT_ROOT/times.txt.
# Datasets: $FUSION_PERCEPTION_DATA (default <repository>/../shared/datasets; as in
# fusion_perception/data_root.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?usage: scripts/compare_schemes.sh OUT_ROOT [STEPS]}
STEPS=${2:-400}
FP=${FP:-"$ROOT/.venv/bin/fusion-perception"}
DATA=${FUSION_PERCEPTION_DATA:-$ROOT/../shared/datasets}
COMMON=(--no-progress --set steps="$STEPS" --set data.crop_width=256 --set data.crop_height=224
        --set data.batch_size=4 --set data.msrs_root="$DATA/msrs" --set warmup_steps=50)
mkdir -p "$OUT"
for scheme in bilevel tdfusion refusion; do
  t0=$SECONDS
  "$FP" train --config "$ROOT/config/train_$scheme.yaml" "${COMMON[@]}" --set out_dir="$OUT/$scheme" \
    $( [ "$scheme" = bilevel ] || echo --dump-loss-weights "$OUT/$scheme/loss_weights" )
  echo "[compare] $scheme train: $((SECONDS - t0)) s" | tee -a "$OUT/times.txt"
  "$FP" export "$OUT/$scheme/last.pt" --out-dir "$OUT/$scheme/model"
  "$FP" evaluate "$DATA/msrs" --split val --checkpoint "$OUT/$scheme/last.pt" --judge --json "$OUT/$scheme/val.json"
done
for folder in roadscene tno; do
  "$FP" evaluate "$DATA/$folder" --fusion-only --checkpoint "$OUT/refusion/last.pt" --json "$OUT/refusion/$folder.json"
done
# The discriminator ablation (docs/RESULTS.md, "The discriminator in the bi-level step"): bi-level with
# the discriminator's hypergradient in the upper step, same budget.
"$FP" train --config "$ROOT/config/train_bilevel.yaml" "${COMMON[@]}" --set out_dir="$OUT/bilevel_disc" \
  --set "bilevel_modules=[seg,det,disc]"
"$FP" evaluate "$DATA/msrs" --split val --checkpoint "$OUT/bilevel_disc/last.pt" --judge --json "$OUT/bilevel_disc/val.json"
