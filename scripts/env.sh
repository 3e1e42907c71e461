# Source me: `source scripts/env.sh` puts carpose's venv, the built ROS 2 interfaces (ros2_ws) and
# the carpose CLIs on this shell's paths. Safe to source twice.
_carpose_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
_carpose_venv=${CARPOSE_VENV:-$_carpose_root/.venv}
case "$_carpose_venv" in /*) ;; *) _carpose_venv=$_carpose_root/$_carpose_venv ;; esac
if [ ! -x "$_carpose_venv/bin/python" ]; then
  echo "carpose: no venv at $_carpose_venv; run: bash scripts/setup.sh" >&2
  return 1 2>/dev/null || exit 1
fi
_carpose_msgs=$_carpose_root/ros2_ws/install/carpose_msgs
_carpose_prepend() {  # _carpose_prepend VAR DIR: put DIR first in VAR once
  local cur="${!1:-}"
  case ":$cur:" in *":$2:"*) ;; *) export "$1=$2${cur:+:$cur}" ;; esac
}
export VIRTUAL_ENV=$_carpose_venv
_carpose_prepend PATH "$_carpose_venv/bin"
_carpose_prepend AMENT_PREFIX_PATH "$_carpose_venv"
if [ -d "$_carpose_msgs" ]; then
  _carpose_prepend AMENT_PREFIX_PATH "$_carpose_msgs"
  _carpose_prepend PYTHONPATH "$_carpose_msgs/lib/python3.11/site-packages"
  _carpose_prepend LD_LIBRARY_PATH "$_carpose_msgs/lib"
fi
export PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl}
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# HD camera images over Fast DDS: a 32 MB shared-memory segment per process (README, "Cameras and
# DDS"). Every process started from this shell gets it, a camera driver too; a Fast DDS setup of
# your own (this variable, FASTRTPS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS) is kept.
if [ "$RMW_IMPLEMENTATION" = rmw_fastrtps_cpp ] && [ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ] \
   && [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ] && [ -z "${FASTDDS_BUILTIN_TRANSPORTS:-}" ] \
   && [ -z "${CARPOSE_NO_DDS_DEFAULTS:-}" ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE=$_carpose_root/config/fastdds_large_images.xml
fi
# ultralytics: never phone home, never try to download fonts/weights at import.
export YOLO_OFFLINE=${YOLO_OFFLINE:-1}
unset -f _carpose_prepend
