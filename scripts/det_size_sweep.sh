#!/usr/bin/env bash
# AP against detector input size and CPU time (models/README.md, "Car detector"): export the trained
# weights at several fixed inputs, score each on the real validation set with carpose-det-eval, and
# print one table. Usage: bash scripts/det_size_sweep.sh [WEIGHTS.pt] [OUT]
# Times are ONNX Runtime on this machine's CPU (median per frame, 1600x900 frames); run it on a
# quiet machine. FRAMES=25:50 scores only the frames never used as render backgrounds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
WEIGHTS=${1:-runs/det_road/train/weights/last.pt}
OUT=${2:-runs/det_sizes}
REAL=data/real/nuscenes_front
IMAGES=${CARPOSE_SHARED:-../shared}/real/nuscenes_front/image_2
SIZES=${SIZES:-"320 480 640 288x512 384x640 544x960"}
mkdir -p "$OUT"
frames=()
[ -n "${FRAMES:-}" ] && frames=(--frames "$FRAMES")
for s in $SIZES; do
  onnx="$OUT/det_$s.onnx"
  if [ ! -f "$onnx" ]; then
    python - "$WEIGHTS" "$onnx" "$s" <<'PY'
import sys
from training.detector.train import export_onnx
w, dest, s = sys.argv[1:]
size = tuple(int(v) for v in s.split("x")) if "x" in s else int(s)
export_onnx(w, dest, size)
PY
  fi
  carpose-det-eval "$REAL" --images "$IMAGES" --det-model "$onnx" "${frames[@]}" --out "$OUT/eval_$s" --quiet \
    > "$OUT/eval_$s.txt" 2>&1
done
python - "$OUT" $SIZES <<'PY'
import json, sys
out, sizes = sys.argv[1], sys.argv[2:]
print("| input (h x w) | AP@0.5 >= 15 px | AP@0.5 >= 40 px | precision | recall >= 40 px | detector ms/frame |")
print("|---|---:|---:|---:|---:|---:|")
for s in sizes:
    r = json.load(open(f"{out}/eval_{s}/det_eval.json"))
    hw = s if "x" in s else f"{s} x {s}"
    print(f"| {hw} | {r['ap50']:.3f} | {r['tall']['ap50']:.3f} | {r['precision']:.3f} | {r['tall']['recall']:.3f} "
          f"| {r['detect_ms']['median']:.1f} |")
PY
