#!/usr/bin/env bash
# The detector's GPU recipe (issue 42): many road scenes rendered, the shipped YOLO11n widened into a
# YOLO11s-width network that gives the same boxes (carpose-det-widen) or a YOLO11s from random weights
# (INIT=scratch), trained for many epochs, and exported exactly as the shipped file is (one class,
# height and width free, frames fitted into 352 x 640, provenance in the metadata).
#
#   bash scripts/gpu_train_det.sh                 # where a GPU is: DEVICE=0, the sizes below
#   TOY=1 bash scripts/gpu_train_det.sh           # on a CPU in about a minute: 6 scenes, 1 epoch, 160 px
#
# Settings (environment): RUNS (run folder, outside the repository; default ~/carpose_runs/gpu_det),
# DATA (renders; default RUNS/data), INIT (widen | scratch | a .pt / .onnx of a YOLO11s to go on from,
# such as an earlier session's weights), SOURCE (the detector widened; default the shipped one), NOISE (carpose-det-widen --noise: copies of a channel get identical gradients and stay
# copies without it), COUNT / COUNT2 (16:9 / wide scenes), EPOCHS or HOURS (a timed run: the LR
# schedule fits the time), IMGSZ, BATCH, WORKERS, DEVICE, LR0 (warm start's AdamW rate), PSEUDO (pseudo-
# label folders joining the training images, space-separated; default data/det/pseudo_v three times
# where it exists, as step 13 of make_det_model.sh), REAL (1: choose the epoch on the real validation
# sources, carpose-det-select, as every shipped run; default where ../shared/real is), EXPORT (the ONNX
# path; default RUNS/carpose_det_s.onnx), PARTS (a folder: the exported file and the final EMA
# weights are also written there cut into 15 MiB parts, the largest files a device call brings back).
#
# Runs longer than a session: everything lives under RUNS, outside the repository; a second call with
# the same RUNS finds the renders and the widened network made, and an interrupted training
# (RUNS/train/weights/last.pt without RUNS/det_train.json) is resumed with its own settings
# (carpose-train-det --resume: ultralytics' resume, optimizer and epoch count included). A finished run
# is not trained again: remove RUNS/det_train.json, or use another RUNS, to train more.
#
# The widened network starts as an exported ONNX file: carpose-train-det --init reads it back and
# calibrates its BatchNorms on the training images (training.detector.warm_start), as every shipped run
# started; uncalibrated (identity) BatchNorms would rescale every layer at the first training step.
#
# On the device tool's GPU machines (/work/.library/device/README.md; untested here: no GPU was lent to
# the session that wrote this). The machine has torch but not ultralytics, trimesh or pyrender, no
# ../shared, and takes at most 64 MiB of working tree with what is carried (the tracked files are about
# 32 MB): build the wheels here once (`echo /.whl/ >> .git/info/exclude`, then the README's `pip download`
# of ultralytics==8.4.190 ultralytics-thop trimesh pyrender PyOpenGL freetype-py pyglet==1.5.31) and carry
# `.whl` (this script installs them when ultralytics is missing; polars is stubbed, below), the README's
# `.gl` EGL libraries for the renderer, plus a few meshes / photos copied into an excluded folder named by
# MODELS / BACKGROUNDS. One command may run 10 minutes and a session has 15
# minutes of device time: use HOURS (e.g. 0.1) and PARTS="$OUT". A full last.pt (optimizer state: about 4x
# the weights) cannot travel back, so a next session goes on from the weights instead of resuming:
# `cat last_weights.pt.part* > w.pt`, carried, INIT=w.pt (a new LR schedule, the weights kept).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
if [ -x .venv/bin/python ]; then
  source scripts/env.sh
else  # a bare machine (the device tool's): its python3, the repository on the path, carried wheels
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} YOLO_OFFLINE=1 PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl}
  if ! python3 -c "import ultralytics" 2>/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/carpose_site .whl/*.whl
    export PYTHONPATH=$PYTHONPATH:/tmp/carpose_site
  fi
  if ! python3 -c "import polars" 2>/dev/null; then
    # polars (a 40 MB wheel) does not fit the 64 MiB a device call carries; ultralytics' trainer only
    # reads results.csv back with it, inside a try: a stub whose read_csv fails keeps training going.
    mkdir -p /tmp/carpose_site/polars
    echo 'def read_csv(*args, **kwargs): raise RuntimeError("polars is not on this machine")' \
      > /tmp/carpose_site/polars/__init__.py
    export PYTHONPATH=$PYTHONPATH:/tmp/carpose_site
  fi
fi
tool() {  # tool NAME ARGS...: carpose's console script, or its module where none is installed
  local name=$1 mod
  shift
  if command -v "$name" >/dev/null; then "$name" "$@"; return; fi
  case $name in
    carpose-render) mod=training.render.cli ;;
    carpose-train-det) mod=training.detector.train ;;
    carpose-det-widen) mod=training.detector.widen ;;
    *) echo "gpu_train_det: unknown tool $name" >&2; return 2 ;;
  esac
  python3 -m "$mod" "$@"
}

SHARED=${CARPOSE_SHARED:-../shared}
RUNS=${RUNS:-$HOME/carpose_runs/gpu_det}
DATA=${DATA:-$RUNS/data}
INIT=${INIT:-widen}
SOURCE=${SOURCE:-models/carpose_det.onnx}
EXPORT=${EXPORT:-$RUNS/carpose_det_s.onnx}
if [ "${TOY:-0}" = 1 ]; then  # plumbing only: every step, at a size a CPU runs in about a minute
  COUNT=${COUNT:-6} COUNT2=${COUNT2:-0} EPOCHS=${EPOCHS:-1} IMGSZ=${IMGSZ:-160} BATCH=${BATCH:-4}
  WORKERS=${WORKERS:-0} DEVICE=${DEVICE:-cpu} W16=320 H16=192 WW=512 WH=160 MAX_CARS=6 REAL=${REAL:-0}
  PSEUDO=${PSEUDO:-} BACKGROUNDS=${BACKGROUNDS:-} MODELS=${MODELS:-} TOY_RENDER=(--procedural 6)
else
  COUNT=${COUNT:-6000} COUNT2=${COUNT2:-2000} EPOCHS=${EPOCHS:-60} IMGSZ=${IMGSZ:-640} BATCH=${BATCH:-64}
  WORKERS=${WORKERS:-$(nproc)} W16=640 H16=360 WW=1024 WH=320 MAX_CARS=14 TOY_RENDER=(--procedural 60)
  DEVICE=${DEVICE:-$(python3 -c "import torch; print(0 if torch.cuda.is_available() else 'cpu')")}
  [ -d "$SHARED/real" ] && REAL=${REAL:-1}
  BACKGROUNDS=${BACKGROUNDS-data/det/bg_road}
  MODELS=${MODELS-"$SHARED/cars $SHARED/cars_more"}
  if [ -z "${PSEUDO+x}" ] && [ -f data/det/pseudo_v/pseudo.json ]; then
    PSEUDO="data/det/pseudo_v data/det/pseudo_v data/det/pseudo_v"
  fi
fi
REAL=${REAL:-0} PSEUDO=${PSEUDO:-}
mkdir -p "$RUNS" "$DATA"

# 1. Road scenes as step 13 of make_det_model.sh draws them (cross streets, parking lots, cars cut by the
#    frame), over real photos with their cars inpainted where BACKGROUNDS and its labels exist.
models=()
for d in $MODELS; do [ -d "$d" ] && models+=(--models "$d"); done
[ ${#models[@]} -gt 0 ] && TOY_RENDER=()
negs=()
[ -d "$SHARED/distractors" ] && negs=(--negative-models "$SHARED/distractors")
bg=()
if [ -n "$BACKGROUNDS" ] && [ -d "$BACKGROUNDS" ]; then
  bg=(--backgrounds "$BACKGROUNDS" --procedural-backgrounds 0.15)
  labels=()
  for d in data/det/pseudo/label_2 data/det/pseudo_v/label_2; do [ -d "$d" ] && labels+=("$d"); done
  [ ${#labels[@]} -gt 0 ] && bg+=(--background-labels "${labels[@]}")
fi
SIDE=(--cross-street 0.9 --cross-street-m 4 60 --parking-lot 0.8 --edge-margin 25 --side-first --skip-negative box_van)
render() {  # render OUT COUNT SEED WIDTH HEIGHT HFOV_MIN HFOV_MAX
  [ "$2" -gt 0 ] || return 0
  [ -f "$1" ] || tool carpose-render scenes --out "$1" --count "$2" --seed "$3" --layout road --negatives 4 \
    "${negs[@]}" "${models[@]}" "${TOY_RENDER[@]}" --max-cars "$MAX_CARS" --width "$4" --height "$5" \
    --hfov "$6" "$7" "${bg[@]}" "${SIDE[@]}" --workers "$(nproc)" --block-size 50 --quiet
}
render "$DATA/road.h5" "$COUNT" 420 "$W16" "$H16" 55 75
render "$DATA/wide.h5" "$COUNT2" 421 "$WW" "$WH" 70 90
scenes=("$DATA/road.h5")
[ "$COUNT2" -gt 0 ] && scenes+=("$DATA/wide.h5")

# 2. The network training starts from.
init=()
lr=()
if [ "$INIT" = widen ]; then
  WIDE=$RUNS/widened_s.onnx
  [ -f "$WIDE" ] || tool carpose-det-widen "$SOURCE" --out "$RUNS/widened_s.pt" --noise "${NOISE:-0.001}" \
    --export "$WIDE"
  init=(--init "$WIDE")
  lr=(--lr0 "${LR0:-0.0005}")  # a gentle AdamW fine-tuning, as the shipped detector's rounds
elif [ -f "$INIT" ]; then  # an earlier run's YOLO11s weights
  init=(--init "$INIT")
  lr=(--lr0 "${LR0:-0.0005}")
elif [ "$INIT" != scratch ]; then
  echo "gpu_train_det: INIT is widen, scratch or a weights file, not $INIT" >&2
  exit 2
fi

# 3. Training (resumed where a run was cut off), the epoch chosen on the real sources where REAL=1, and
#    the export as the shipped file's (carpose-det-soup --operate-at then moves its operating point).
pseudo=()
for d in $PSEUDO; do pseudo+=(--pseudo "$d"); done
real=()
[ "$REAL" = 1 ] && real=(--real)
length=(--epochs "$EPOCHS")
[ -n "${HOURS:-}" ] && length=(--hours "$HOURS")
resume=()  # a run cut off (no det_train.json yet) goes on with its own settings
[ -f "$RUNS/train/weights/last.pt" ] && resume=(--resume)
if [ ! -f "$RUNS/det_train.json" ]; then
  tool carpose-train-det "${scenes[@]}" "${pseudo[@]}" --out "$RUNS" --arch yolo11s.yaml "${init[@]}" "${lr[@]}" \
    "${length[@]}" --imgsz "$IMGSZ" --batch "$BATCH" --workers "$WORKERS" --device "$DEVICE" --boxes amodal \
    "${resume[@]}" "${real[@]}" --export-hw 352 640 --dynamic --export "$EXPORT"
fi

# 4. Files a device call can bring back (each at most 16 MiB).
if [ -n "${PARTS:-}" ]; then
  mkdir -p "$PARTS"
  split -b 15M -d "$EXPORT" "$PARTS/$(basename "$EXPORT").part"
  python3 - "$RUNS/train/weights/last.pt" "$PARTS/last_weights.pt" <<'PY'
import sys

import torch  # the EMA weights alone (FP16, no optimizer): what a next session goes on from (INIT)

ckpt = torch.load(sys.argv[1], weights_only=False, map_location="cpu")
keep = {k: ckpt.get(k) for k in ("train_args", "date", "version")}
torch.save(keep | {"model": ckpt.get("ema") or ckpt["model"]}, sys.argv[2])
PY
  split -b 15M -d "$PARTS/last_weights.pt" "$PARTS/last_weights.pt.part" && rm "$PARTS/last_weights.pt"
fi
echo "gpu_train_det: $EXPORT"
