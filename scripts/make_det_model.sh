#!/usr/bin/env bash
# The shipped car detector's recipe (models/README.md, "Car detector"): road scenes, then training.
#
# 1. Road scenes (training/render/scenes.py, layout "road"): kerb rows, parking lots and lane
#    traffic in a road camera's perspective (hfov 55-75 deg, 1.35-1.95 m up, 4-80 m), realistic
#    look, up to 4 unlabelled negatives a scene (lorries, trailers, buses, box vans, poles, bollards,
#    barriers, fences, trees; training/render/negatives.py, plus ../shared/distractors), on WHOLE
#    unlabelled real road photos of many cities and cameras (../shared/real_unlabelled, 85 %) or
#    procedural backgrounds. Validation frames are never backgrounds (carpose.eval.real_sources
#    refuses them). NOTE: the shipped detector was made by this script at commit a45a3c5 with
#    nuScenes validation frames 0-24 as backgrounds (their labelled cars inpainted away); that leak
#    is refused now, and unlabelled photos still hold unlabelled cars (issue 22 works on both).
# 2. YOLO11n, ultralytics' trainer (mosaic, HSV, scale, flips), 512 px, 5 epochs, starting from
#    the previous shipped detector (INIT, taken from git); every epoch's weights are scored on both
#    real validation sources (carpose-train-det --real: nuScenes + KITTI, mean AP@0.5 over sources)
#    and the chosen one is exported to ONNX at 288 x 512 (scripts/det_size_sweep.sh chose the size).
# About 20 min of rendering and 80 min of training on 2 cores. COUNT / COUNT2 / EPOCHS / INIT override.
# Resume an interrupted training: carpose-train-det "$OUT/road.h5" "$OUT/road2.h5" --out "$RUNS" --resume
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-data/det}
RUNS=${RUNS:-runs/det_road}
SHARED=${CARPOSE_SHARED:-../shared}
mkdir -p "$OUT"
models=()
for d in "$SHARED/cars" "$SHARED/cars_more"; do [ -d "$d" ] && models+=(--models "$d"); done
bg=()
[ -d "$SHARED/real_unlabelled" ] && bg=(--backgrounds "$SHARED/real_unlabelled" --procedural-backgrounds 0.15)
negs=()
[ -d "$SHARED/distractors" ] && negs=(--negative-models "$SHARED/distractors")
# The shipped model's road.h5 (2200 scenes, seed 40) was rendered at commit da42e26, before the cross
# street, angled lots and more turning cars were added (more side views); road2.h5 (900, seed 41)
# with them. Rendering both with today's code gives the same kind of data, not the same pixels.
scenes() {  # scenes OUT COUNT SEED
  carpose-render scenes --out "$1" --count "$2" --seed "$3" --layout road --negatives 4 "${negs[@]}" \
    "${models[@]}" --procedural 60 --max-cars 14 --width 640 --height 360 "${bg[@]}" \
    --workers "${WORKERS:-2}" --block-size 50
}
scenes "$OUT/road.h5" "${COUNT:-2200}" 40
scenes "$OUT/road2.h5" "${COUNT2:-900}" 41
INIT=${INIT:-$OUT/init_det.onnx}
# the previous shipped detector (YOLO11n from scratch, 20 epochs at 320 px on 1,200 random scenes), as in git 2d589aa
[ -f "$INIT" ] || git show 2d589aa:models/carpose_det.onnx > "$INIT"
# 5 epochs (about 80 min on 2 cores). The shipped run asked for --hours 1.35, which ultralytics turned
# into the same 5-epoch schedule after epoch 1 (and stopped 65 % into epoch 5); --epochs makes the
# schedule independent of the machine's speed.
carpose-train-det "$OUT/road.h5" "$OUT/road2.h5" --out "$RUNS" --imgsz 512 --batch 16 --epochs "${EPOCHS:-5}" \
  --init "$INIT" --real --export-hw 288 512 --export models/carpose_det.onnx
