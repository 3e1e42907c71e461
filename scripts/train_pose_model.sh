#!/usr/bin/env bash
# Train, score and export the shipped pose model and the seed baseline (models/README.md).
# Needs the data of scripts/make_pose_data.sh. CPU by default (the --quick profile); a GPU is used
# when present. EPOCHS / SEED_EPOCHS / SEED_LIMIT override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
D=${DATA:-data/pose}
R=${RUNS:-runs}
shopt -s nullglob
train=("$D"/train_*.h5); val=("$D"/random_*.h5); held=("$D"/heldout_*.h5)
carpose-train --arch posenet --quick ${EPOCHS:+--epochs $EPOCHS} --train "${train[@]}" --val "${val[@]}" \
  --heldout "${held[@]}" --out "$R/posenet" --workers 1 --quiet
carpose-export "$R/posenet/best.pt" --out models/carpose_pose.onnx --parity "${held[0]}"
# The seed's network at 224 px costs ~5x ours per image on a CPU: by default it sees the same files
# but the first SEED_LIMIT rows of each file (default 4000, so 8000 crops) for SEED_EPOCHS epochs.
carpose-train --arch seed4 --epochs "${SEED_EPOCHS:-4}" --limit "${SEED_LIMIT:-4000}" --train "${train[@]}" \
  --val "${val[@]}" --heldout "${held[@]}" --out "$R/seed4" --workers 1 --quiet
