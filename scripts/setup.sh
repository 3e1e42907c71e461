#!/usr/bin/env bash
# One-time (and idempotent) setup on a fresh Debian/Ubuntu machine, as root or with sudo:
#   - Debian EGL/Mesa libraries for headless rendering,
#   - .venv with the pinned Python stack (requirements/*.txt),
#   - carpose itself (editable) and the ROS 2 interface package (colcon build in ros2_ws).
# Re-running is quick: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CARPOSE_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
if ! dpkg -s $APT_PKGS >/dev/null 2>&1; then
  say "installing Debian packages: $APT_PKGS"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_PKGS >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.carpose-requirements.sha1"
want=$(cat requirements/*.txt | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing pinned Python packages into $VENV (first time: a few minutes, ~6 GB with CUDA torch)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/base.txt -r requirements/dev.txt \
    -r requirements/ros.txt 2>&1 | grep -v "^WARNING: Location" || true
  # ultralytics and pyrender without their declared dependencies (requirements/no-deps.txt says why).
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements/no-deps.txt 2>&1 \
    | grep -v "^WARNING: Location" || true
  # One OpenCV: a venv set up before that rule also holds opencv-python (it shared the cv2 folder with
  # the headless build). Remove any other OpenCV distribution, then lay the pinned headless files again.
  stray=$("$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
names = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
print(" ".join(sorted(n for n in names if n.startswith("opencv") and n != "opencv-python-headless")))
EOF
)
  if [ -n "$stray" ]; then
    say "removing $stray: opencv-python-headless is the one OpenCV"
    "$VENV/bin/pip" uninstall -q -y $stray
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall \
      "$(grep -i '^opencv-python-headless==' requirements/base.txt)"
  fi
  "$VENV/bin/python" -c "import torch, ultralytics, pyrender, h5py, cv2, rclpy" \
    || { echo "[setup] import check failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

if ! "$VENV/bin/python" -c "import carpose, training" 2>/dev/null \
   || [ ! -x "$VENV/bin/carpose-render" ] || [ setup.py -nt "$VENV/bin/carpose-render" ]; then
  say "installing carpose (editable)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
fi

say "building ros2_ws (carpose_msgs)"
bash scripts/build_ros2_ws.sh "$VENV"
say "done. Use it:  source scripts/env.sh"
