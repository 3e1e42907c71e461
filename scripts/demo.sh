#!/usr/bin/env bash
# The main job on the built-in defaults (no GPU, no downloads, no ../shared needed): render a small
# crops dataset of procedural cars on procedural backgrounds, print its summary, write a preview.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${CARPOSE_DEMO_DIR:-data/demo}
mkdir -p "$OUT"
carpose-render crops --out "$OUT/crops.h5" --count 256 --workers 2 --overwrite
carpose-render preview "$OUT/crops.h5" --out "$OUT/crops_preview.png"
carpose-render scenes --out "$OUT/scenes.h5" --count 8 --workers 2 --overwrite
carpose-render preview "$OUT/scenes.h5" --out "$OUT/scenes_preview.png"
echo "demo outputs in $OUT/"
