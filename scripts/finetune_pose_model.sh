#!/usr/bin/env bash
# The shipped pose model's recipe since issue 21 (models/README.md, "Pose CNN"): fine-tune the earlier
# shipped model (models/carpose_pose.onnx at commit a45a3c5, itself from scripts/train_pose_model.sh)
# on leak-free renders, choose the epoch on both real validation sources, export with mirror TTA.
#   0. Data: scripts/make_pose_data.sh with COUNT=21000 into data/pose3, and again with SEED0=20 into
#      data/pose4 (distinct renders: number plates on every mesh, gazebo_suv the right way round, road
#      photos of ../shared/real_unlabelled as backgrounds; about 20 min each with 2 workers). The
#      synthetic val / held-out files may be any make_pose_data.sh output.
#   1. carpose-train --init <the a45a3c5 ONNX>: its folded BatchNorms are recovered and calibrated on
#      training crops (training/pose/warm_start.py), then STAGE1_EPOCHS epochs at lr 1e-3 with the flip
#      penalty (--flip-weight 1: probability mass half a turn from the label), default augmentation.
#   2. STAGE2_EPOCHS more epochs from stage 1's best.pt at lr 5e-4 on BOTH render sets (42,000 crops),
#      same augmentation and penalty; its best.pt was epoch 1 of 3 (models/README.md: the same stage on
#      data/pose3 alone, or with --aug strong, scored lower on the real sources).
#   Both stages score nuscenes_front and kitti_val after every epoch (never a gradient) and keep the
#   epoch with the best balanced Acc@30 (best.pt).
#   3. carpose-export --mirror-tta; carpose-benchmark on both sources.
# About 17 min of training on 2 cores (7.4 + 9.4). No BatchNorm re-estimation on real photos: measured on
# real_unlabelled crops it halved the rear-read-as-front flips on KITTI but cost Acc@30 elsewhere
# (lever table in models/README.md), so the shipped model keeps its training statistics.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
D=${DATA:-data/pose3}
D2=${DATA2:-data/pose4}
V=${VAL:-data/pose2}
R=${RUNS:-runs}
INIT=${INIT:-$R/pose_a45a3c5.onnx}
mkdir -p "$R"
[ -f "$INIT" ] || git show a45a3c5:models/carpose_pose.onnx > "$INIT"
[ -f "$D/train_mesh.h5" ] || COUNT=21000 OUT="$D" bash scripts/make_pose_data.sh
[ -f "$D2/train_mesh.h5" ] || COUNT=21000 OUT="$D2" SEED0=20 bash scripts/make_pose_data.sh
shopt -s nullglob
train=("$D"/train_*.h5); train2=("$D2"/train_*.h5); val=("$V"/random_mesh.h5); held=("$V"/heldout_*.h5)
[ ${#val[@]} -gt 0 ] || val=("$D"/random_mesh.h5)
[ ${#held[@]} -gt 0 ] || held=("$D"/heldout_*.h5)
common=(--val "${val[@]}" --heldout "${held[@]}" --real nuscenes_front kitti_val
        --flip-weight 1.0 --workers 1 --quiet)
carpose-train --init "$INIT" --train "${train[@]}" --epochs "${STAGE1_EPOCHS:-3}" --lr 1e-3 --aug default \
  "${common[@]}" --out "$R/ft_stage1"
carpose-train --init "$R/ft_stage1/best.pt" --train "${train[@]}" "${train2[@]}" --epochs "${STAGE2_EPOCHS:-3}" \
  --lr 5e-4 --aug default "${common[@]}" \
  --out "$R/ft_stage2"
carpose-export "$R/ft_stage2/best.pt" --out models/carpose_pose.onnx --mirror-tta --parity "${held[0]}"
carpose-benchmark --out "$R/benchmark" --quiet
