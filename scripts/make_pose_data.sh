#!/usr/bin/env bash
# Render the pose CNN's training and evaluation data (the shipped model's recipe, models/README.md).
# Realistic renders (PBR paint mix, sun/sky/shadows, road-camera geometry, docs/realism.md) of every
# mesh source (../shared/cars + ../shared/cars_more, docs/car_sources.md) and of procedural cars,
# on unlabelled real road photos of many cities and cameras (../shared/real_unlabelled, road sources) plus
# procedural backgrounds. Validation frames are never backgrounds (carpose.eval.real_sources refuses
# them; the shipped pose model's data was rendered over the nuScenes validation frames, at a45a3c5). Car models are split by name into train and held-out sets (whole models from every
# source); the "random" files show the *training* cars again from new viewpoints. Meshes and
# procedural cars go to separate files so training can weight them.
# Scale with COUNT (default 36000 training crops); SEED0 shifts every seed (a second, distinct set of
# renders: SEED0=20 gives seeds 30/40 for the training files); resumable: run it again after an
# interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-data/pose}
COUNT=${COUNT:-36000}
S=${SEED0:-0}
WORKERS=${WORKERS:-2}
SHARED=${CARPOSE_SHARED:-../shared}
mkdir -p "$OUT"
bg=()
# Backgrounds: the road photos of real_unlabelled, without openalpr (300 close-ups of real car fronts
# and rears: a real car's end behind a rendered one contradicts the label). Hard links, no copies.
if [ -d "$SHARED/real_unlabelled" ]; then
  mkdir -p data/bg_road
  for d in "$SHARED"/real_unlabelled/*/; do
    [ "$(basename "$d")" = openalpr ] || cp -rlu "$d" data/bg_road/ 2>/dev/null || cp -ru "$d" data/bg_road/
  done
  bg=(--backgrounds data/bg_road)
fi
r() { carpose-render crops --workers "$WORKERS" --quiet "${bg[@]}" "$@"; }
test_n=$((COUNT / 24))
models=()
for d in "$SHARED/cars" "$SHARED/cars_more"; do [ -d "$d" ] && models+=(--models "$d"); done
if [ ${#models[@]} -gt 0 ]; then
  mesh=("${models[@]}" --procedural 0)
  r --out "$OUT/train_mesh.h5"   "${mesh[@]}" --split train   --count $((COUNT * 2 / 3)) --seed $((S + 10))
  r --out "$OUT/heldout_mesh.h5" "${mesh[@]}" --split heldout --count "$test_n" --seed $((S + 11))
  r --out "$OUT/random_mesh.h5"  "${mesh[@]}" --split train   --count "$test_n" --seed $((S + 12))
  proc_n=$((COUNT - COUNT * 2 / 3))
else
  echo "[make_pose_data] no meshes in $SHARED: procedural cars only"
  proc_n=$COUNT
fi
proc=(--procedural 200)
r --out "$OUT/train_proc.h5"   "${proc[@]}" --split train   --count "$proc_n" --seed $((S + 20))
r --out "$OUT/heldout_proc.h5" "${proc[@]}" --split heldout --count "$test_n" --seed $((S + 21))
r --out "$OUT/random_proc.h5"  "${proc[@]}" --split train   --count "$test_n" --seed $((S + 22))
for f in "$OUT"/*.h5; do carpose-render info "$f" | head -3; done
