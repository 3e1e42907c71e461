#!/usr/bin/env bash
# Stage 6 of the pose model (issue 40; the shipped file since 2026-12-07): the stage-5 model
# (scripts/finetune_pose_model.sh; shipped at c245167) fine-tuned on labelled real car photos beside the
# renders, twice (seeds 0 and 1), chosen on three real sources, and averaged in weight space with the
# stage-5 model itself.
#   0. Data (about 6 min on 2 cores):
#      - layers: 9,000 mesh cars + 4,500 procedural cars rendered without background (seeds 110 / 120),
#        composited onto the road photos of ../shared/real_unlabelled (data/bg_road) while training;
#      - real crops: the TRAINING part of ../shared/real/stanford_cars (its classes split off by
#        carpose.eval.photo_labels; the validation quarter, stanford_val, is never read here; 6,179 photos)
#        made into road-camera crops by carpose-real-crops, 3 per photo: 20-120 px cars, road / smeared /
#        grey context, low light, blur, noise, JPEG, detector box jitter (18,537 crops, 58 % of the rows).
#   1. carpose-train from the stage-5 ONNX (BatchNorms calibrated on the first composites), 3 epochs at lr
#      2.5e-4, flip penalty 1, the stage-5 composites (neighbour cars, nearer cars greyed); nuscenes_front,
#      kitti_val and stanford_val scored after every epoch, best.pt the best balanced Acc@30 over the three
#      (seed 0: epoch 3, seed 1: epoch 1). Run twice, --seed 0 and --seed 1.
#   2. carpose-export --soup 0.25 0.25 0.5: one network whose weights are the mean of the two fine-tuned
#      networks (a quarter each) and the stage-5 network (half): fine-tuning on web photos moves KITTI's
#      blurred rear views by a few cars either way from seed to seed; the weight-space mean with the model
#      it started from (WiSE-FT) kept the web photos' gain and gave the fewest flips on every source
#      (docs/experiments/pose.md, issue 40). Mirror TTA on, then carpose-benchmark on every source.
# About 2 x 12 min of training on 2 quiet cores (150-180 crops/s).
# The levers measured and not kept (sector-balanced real crops, frame-edge cuts, self-labelled road crops,
# each seed alone, other soups): docs/experiments/pose.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SHARED=${CARPOSE_SHARED:-../shared}
R=${RUNS:-runs}
L=${LAYERS:-data/layers7}
REAL=${REAL:-data/pose_real/stanford_train.h5}
INIT=${INIT:-$R/pose_stage5.onnx}
OUT=${OUT:-models/carpose_pose.onnx}
mkdir -p "$R" data/bg_road "$(dirname "$REAL")"
[ -f "$INIT" ] || git show c245167:models/carpose_pose.onnx > "$INIT"
for d in "$SHARED"/real_unlabelled/*/; do  # road photos without openalpr's close-ups of car ends
  [ "$(basename "$d")" = openalpr ] || cp -rlu "$d" data/bg_road/ 2>/dev/null || cp -ru "$d" data/bg_road/
done
[ -f "$L/train_mesh.h5" ] || carpose-render layers --out "$L/train_mesh.h5" --models "$SHARED/cars" \
  --models "$SHARED/cars_more" --procedural 0 --split train --count 9000 --seed 110 --workers 2 --quiet
[ -f "$L/train_proc.h5" ] || carpose-render layers --out "$L/train_proc.h5" --procedural 200 --split train \
  --count 4500 --seed 120 --workers 2 --quiet
[ -f "$REAL" ] || carpose-real-crops "$SHARED/real/stanford_cars" --out "$REAL" --backgrounds data/bg_road \
  --copies 3 --seed 0 --quiet
for seed in 0 1; do
  [ -f "$R/ft_stage6_s$seed/best.pt" ] || carpose-train --init "$INIT" --train "$L/train_mesh.h5" "$L/train_proc.h5" \
    "$REAL" --composite-backgrounds data/bg_road --neighbours 0.5 --neighbour-front-height 1.0 2.2 \
    --neighbour-max-cover 0.8 --grey-nearer --epochs "${EPOCHS:-3}" --lr 2.5e-4 --aug default --flip-weight 1.0 \
    --real nuscenes_front kitti_val stanford_val --workers 1 --seed "$seed" --quiet --out "$R/ft_stage6_s$seed"
done
carpose-export "$R/ft_stage6_s0/best.pt" "$R/ft_stage6_s1/best.pt" "$INIT" --soup 0.25 0.25 0.5 --out "$OUT" \
  --mirror-tta --parity "$REAL"
carpose-benchmark --pose-model "$OUT" --out "$R/benchmark_stage6" --quiet
