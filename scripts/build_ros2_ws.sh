#!/usr/bin/env bash
# Build ros2_ws (carpose_msgs) with colcon against the ROS 2 Kilted PyPI wheels in the venv.
#   bash scripts/build_ros2_ws.sh [VENV]      (default .venv; skipped when nothing changed)
# The wheels were built in a manylinux container: their exported CMake files name that container's
# Python and numpy include dirs. We point them at this venv's (idempotent), set the ament/CMake
# prefix to the venv, and build without tests (the ament lint tools are not on PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
PY="$VENV/bin/python"
WS=ros2_ws
stamp="$WS/install/.carpose-src.sha1"
want=$(find "$WS/src" -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "[ros2_ws] up to date"
  exit 0
fi

py_inc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_inc=$("$PY" -c "import numpy; print(numpy.get_include())")
mapfile -t files < <(grep -rl "/opt/python/cp311-cp311" "$VENV/share" --include='*.cmake' || true)
if [ "${#files[@]}" -gt 0 ]; then
  echo "[ros2_ws] rewriting manylinux include paths in ${#files[@]} CMake files"
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "${files[@]}"
fi

export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
export PATH="$VENV/bin:$PATH"
rm -rf "$WS/build" "$WS/install"
(cd "$WS" && "$VENV/bin/colcon" --log-base log build --event-handlers console_direct- \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
  -DCMAKE_BUILD_TYPE=Release)
echo "$want" > "$stamp"
echo "[ros2_ws] built: $WS/install"
