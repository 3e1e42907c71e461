#!/usr/bin/env bash
# Render the pose CNN's training and evaluation data (the shipped model's recipe, models/README.md).
# Car models are split by name into train and held-out sets; the "random" files show the *training*
# cars again from new viewpoints (the seed project's random split). Meshes and procedural cars go to
# separate files so training can weight them (3 ShapeNet meshes would be 2 % of a mixed file).
# Scale with COUNT (default 24000 training crops); resumable: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-data/pose}
COUNT=${COUNT:-24000}
WORKERS=${WORKERS:-2}
SHARED=${CARPOSE_SHARED:-../shared}
mkdir -p "$OUT"
bg=()
[ -d "$SHARED/real/nuscenes_front/image_2" ] && bg=(--backgrounds "$SHARED/real/nuscenes_front/image_2")
r() { carpose-render crops --workers "$WORKERS" --quiet "${bg[@]}" "$@"; }
test_n=$((COUNT / 16))
if [ -d "$SHARED/cars" ]; then
  mesh=(--models "$SHARED/cars" --procedural 0)
  r --out "$OUT/train_mesh.h5"   "${mesh[@]}" --split train   --count $((COUNT / 3)) --seed 10
  r --out "$OUT/heldout_mesh.h5" "${mesh[@]}" --split heldout --count "$test_n" --seed 11
  r --out "$OUT/random_mesh.h5"  "${mesh[@]}" --split train   --count "$test_n" --seed 12
  proc_n=$((COUNT - COUNT / 3))
else
  echo "[make_pose_data] no $SHARED/cars: procedural cars only"
  proc_n=$COUNT
fi
proc=(--procedural 200)
r --out "$OUT/train_proc.h5"   "${proc[@]}" --split train   --count "$proc_n" --seed 20
r --out "$OUT/heldout_proc.h5" "${proc[@]}" --split heldout --count "$test_n" --seed 21
r --out "$OUT/random_proc.h5"  "${proc[@]}" --split train   --count "$test_n" --seed 22
for f in "$OUT"/*.h5; do carpose-render info "$f" | head -3; done
