#!/usr/bin/env bash
# The main job on the built-in defaults (no GPU, no downloads, no ../shared needed): render a short
# synthetic drive into a rosbag2 bag (procedural cars the pose model never saw, with ground truth),
# replay it through the ROS 2 node with the shipped models, and print the evaluation summary and
# where the report and the annotated video are. If the node cannot start, the same evaluation runs
# offline (the Pipeline in-process) and says so. FRAMES / WIDTH / HEIGHT / RATE override the defaults
# (RATE=1 replays in real time, frames the node cannot keep up with are dropped; the default 0 waits
# for the node's answer to each frame so every frame is scored).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${CARPOSE_DEMO_DIR:-data/demo}
mkdir -p "$OUT"
for m in models/carpose_pose.onnx models/carpose_det.onnx; do
  if [ ! -f "$m" ]; then
    echo "demo: $m is missing: the shipped models come with the repository (models/README.md), or are" >&2
    echo "      rebuilt by scripts/train_pose_model.sh and scripts/make_det_model.sh" >&2
    exit 1
  fi
done
start=$(date +%s)
carpose-make-bag "$OUT/drive_bag" --frames "${FRAMES:-40}" --fps 10 --width "${WIDTH:-640}" \
  --height "${HEIGHT:-480}" --storage mcap --seed 0 --overwrite --quiet
carpose-bag-eval "$OUT/drive_bag" --mode live --rate "${RATE:-0}" --out "$OUT/bag_eval" --fallback-offline --quiet
echo "demo finished in $(( $(date +%s) - start )) s; bag: $OUT/drive_bag"
