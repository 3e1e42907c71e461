"""Where the shipped files (models, config) are found, from any kind of install.

Why a search and not one path: carpose runs from a source checkout (the README's editable venv),
from a colcon install (``install/carpose``: the models are data files in ``share/carpose/models``)
and from a plain ``pip install .`` (``<prefix>/share/carpose/models``). A path relative to the
source tree only exists in the first, which is how ``ros2 launch`` once died on a missing model.

Order: the ROS package share (``ament_index``: what ``ros2 launch`` users have sourced), the
``share/carpose/models`` of the prefix this package is installed in and of ``sys.prefix`` (installed
package data, found even with no ROS environment sourced), then the source tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "carpose"
POSE_MODEL = "carpose_pose.onnx"
DET_MODEL = "carpose_det.onnx"
#: The detector with 8-bit convolutions, run instead of DET_MODEL on a CPU (carpose.pipeline.detector_file).
DET_MODEL_INT8 = "carpose_det_int8.onnx"
#: The source checkout this module lives in (its models/ folder exists only in a checkout).
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _ament_share() -> Path | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return None


def _install_prefix() -> Path | None:
    """``<prefix>`` when this module sits in ``<prefix>/lib/pythonX.Y/site-packages/carpose``."""
    here = Path(__file__).resolve().parent
    if here.parent.name in ("site-packages", "dist-packages") and here.parents[2].name == "lib":
        return here.parents[3]
    return None


def share_dirs(folder: str) -> list[Path]:
    """Every place that may hold the shipped ``folder`` (models, config), in the order they are
    tried (no duplicates)."""
    dirs: list[Path] = []
    share = _ament_share()
    if share is not None:
        dirs.append(share / folder)
    for prefix in (_install_prefix(), Path(sys.prefix)):
        if prefix is not None:
            dirs.append(prefix / "share" / PACKAGE / folder)
    dirs.append(SOURCE_ROOT / folder)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def model_dirs() -> list[Path]:
    return share_dirs("models")


def find_shipped(folder: str, name: str) -> Path:
    """The first existing ``folder/name`` of :func:`share_dirs`; FileNotFoundError naming every
    place tried."""
    tried = [d / name for d in share_dirs(folder)]
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(f"shipped {folder} file {name} not found; tried: " + ", ".join(str(p) for p in tried))


def find_shipped_model(name: str) -> Path:
    return find_shipped("models", name)


def default_model_path(name: str) -> Path:
    """Like :func:`find_shipped_model`, but never raises: where none exists, the source-tree path,
    so CLI defaults can be shown; loading it then fails with :func:`missing_model_message`."""
    try:
        return find_shipped_model(name)
    except FileNotFoundError:
        return SOURCE_ROOT / "models" / name


def missing_model_message(path: Path) -> str:
    """Why ``path`` cannot be loaded; for a shipped model's name, every place it was looked for."""
    msg = f"model {path} does not exist"
    if path.name in (POSE_MODEL, DET_MODEL, DET_MODEL_INT8):
        tried = ", ".join(str(d / path.name) for d in model_dirs())
        msg += f" (the shipped {path.name} is looked for in: {tried})"
    return msg
