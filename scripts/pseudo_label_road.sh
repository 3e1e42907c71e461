#!/usr/bin/env bash
# Step 1 of scripts/make_det_model.sh, also used by scripts/finetune_pose_model.sh (stage 3): the road
# photos of ../shared/real_unlabelled (without openalpr's close-ups of car ends; hard links into
# $OUT/bg_road) labelled by the previous shipped detector (a45a3c5) at 960 px with test-time
# augmentation: $PSEUDO/teacher_2 (every box >= 0.25 with its score), the bands for the detector's
# self-training (>= 0.55 labels, 0.25-0.55 and the camera's own car greyed) and label_2 for inpainting.
# About 2.5 min on 2 cores; skipped when $PSEUDO/pseudo.json exists.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-data/det}
SHARED=${CARPOSE_SHARED:-../shared}
INIT=${INIT:-$OUT/init_det.onnx}
PSEUDO=${PSEUDO:-$OUT/pseudo}
mkdir -p "$OUT/bg_road"
[ -f "$INIT" ] || git show a45a3c5:models/carpose_det.onnx > "$INIT"
for d in "$SHARED/real_unlabelled"/*/; do
  [ "$(basename "$d")" = openalpr ] || cp -rlu "$d" "$OUT/bg_road/" 2>/dev/null || cp -ru "$d" "$OUT/bg_road/"
done
[ -f "$PSEUDO/pseudo.json" ] || carpose-pseudo-label "$OUT/bg_road" --teacher "$INIT" --out "$PSEUDO" \
  --imgsz 960 --keep 0.55 --ignore 0.25 --quiet
