#!/usr/bin/env bash
# The main job on the built-in defaults (no GPU, no downloads): make a rosbag2 bag with ground truth,
# replay it through the ROS 2 node with the shipped models, and print the evaluation summary and
# where the report and the annotated video are. Two bags:
#   DEMO=real       the 50 hand-labelled nuScenes validation frames (1600x900, labels in
#                   data/real/nuscenes_front, images in $CARPOSE_SHARED/real/nuscenes_front/image_2,
#                   CARPOSE_SHARED defaults to ../shared), via carpose-make-bag --from-kitti;
#                   the default when those images are there;
#   DEMO=synthetic  a short rendered drive (procedural cars the pose model never saw); the default
#                   otherwise, and it needs nothing outside the repository.
# The script says which one it runs, before and in its last line. If the node cannot start, the same
# evaluation runs offline (the Pipeline in-process) and the last line says so. FRAMES (real: the
# first N frames; synthetic: drive length, default 40), WIDTH / HEIGHT (synthetic) and RATE override
# the defaults (RATE=1 replays in real time, frames the node cannot keep up with are dropped; the
# default 0 waits for the node's answer to each frame so every frame is scored).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${CARPOSE_DEMO_DIR:-data/demo}
SHARED=${CARPOSE_SHARED:-../shared}
REAL_LABELS=data/real/nuscenes_front
REAL_IMAGES=$SHARED/real/nuscenes_front/image_2
if [ -z "${DEMO:-}" ]; then
  if [ -d "$REAL_IMAGES" ]; then DEMO=real; else DEMO=synthetic; fi
fi
mkdir -p "$OUT"
for m in models/carpose_pose.onnx models/carpose_det.onnx; do
  if [ ! -f "$m" ]; then
    echo "demo: $m is missing: the shipped models come with the repository (models/README.md), or are" >&2
    echo "      rebuilt by scripts/train_pose_model.sh and scripts/make_det_model.sh" >&2
    exit 1
  fi
done
start=$(date +%s)
case "$DEMO" in
  real)
    if [ ! -d "$REAL_IMAGES" ]; then
      echo "demo: DEMO=real needs the nuScenes frames in $REAL_IMAGES (set CARPOSE_SHARED to the folder" >&2
      echo "      that has real/nuscenes_front/image_2), or run DEMO=synthetic" >&2
      exit 1
    fi
    what="real frames: the hand-labelled nuScenes validation set ($REAL_LABELS, images in $REAL_IMAGES)"
    BAG=$OUT/real_bag
    echo "demo: $what"
    carpose-make-bag "$BAG" --from-kitti "$REAL_LABELS" --images "$REAL_IMAGES" ${FRAMES:+--frames "$FRAMES"} \
      --fps 10 --storage mcap --overwrite --quiet
    ;;
  synthetic)
    what="synthetic drive: ${FRAMES:-40} rendered frames ${WIDTH:-640}x${HEIGHT:-480}, procedural held-out cars"
    BAG=$OUT/drive_bag
    echo "demo: $what"
    carpose-make-bag "$BAG" --frames "${FRAMES:-40}" --fps 10 --width "${WIDTH:-640}" \
      --height "${HEIGHT:-480}" --storage mcap --seed 0 --overwrite --quiet
    ;;
  *)
    echo "demo: DEMO must be 'real' or 'synthetic', got '$DEMO'" >&2
    exit 2
    ;;
esac
EVAL=$OUT/bag_eval_$DEMO
carpose-bag-eval "$BAG" --mode live --rate "${RATE:-0}" --out "$EVAL" --fallback-offline --quiet \
  | tee "$OUT/bag_eval_$DEMO.log"
how="replayed through the ROS 2 node"
if grep -q "^note: live mode failed" "$OUT/bag_eval_$DEMO.log"; then
  how="evaluated OFFLINE (the node could not start; see above)"
fi
echo "demo ($what) $how, finished in $(( $(date +%s) - start )) s; bag: $BAG, report: $EVAL/report.md"
