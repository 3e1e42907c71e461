#!/usr/bin/env bash
# Render detector training scenes and train + export the shipped car detector (models/README.md).
# Procedural backgrounds on purpose: the real road photos in ../shared contain unlabelled cars, which
# would teach the detector that real cars are background. COUNT / EPOCHS / IMGSZ override defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-data/det}
SHARED=${CARPOSE_SHARED:-../shared}
mkdir -p "$OUT"
models=()
[ -d "$SHARED/cars" ] && models=(--models "$SHARED/cars")
carpose-render scenes --out "$OUT/scenes.h5" --count "${COUNT:-1200}" "${models[@]}" --procedural 200 \
  --width 640 --height 480 --max-cars 8 --workers "${WORKERS:-2}" --seed 30 --quiet
carpose-train-det "$OUT/scenes.h5" --out "${RUNS:-runs}/det" --epochs "${EPOCHS:-30}" --imgsz "${IMGSZ:-416}" \
  --export models/carpose_det.onnx
