"""DDS transport settings that let HD camera images through, for the node and its neighbours.

Why: Fast DDS (ROS 2's default RMW) puts a sample into the *publisher's* shared-memory segment
(512 KB by default) or, when it does not fit, into ~64 KB UDP fragments. A 1600x900 bgr8 frame is
4.3 MB: with a best-effort camera stream one lost fragment loses the frame, and measured on one
host 0-1 frames in 60 arrived (Fast DDS's ``LARGE_DATA`` builtin transports did no better here).
``config/fastdds_large_images.xml`` gives every participant a 32 MB shared-memory segment and
16 MB UDP socket buffers: every frame arrives. Fast DDS reads the file when a process creates its
participant, so it must be in the environment before ``rclpy.init`` of *each* process, the camera
driver's above all: the node sets it for itself (:func:`apply_recommended`, for its own large
outputs such as ``~/debug_image``), ``scripts/env.sh`` and ``launch/pose.launch.py`` set it for the
processes started from them. A user's own Fast DDS configuration and other RMWs are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from carpose.shipped import find_shipped

PROFILES_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
#: Variables through which a user has already configured Fast DDS: then carpose changes nothing.
_USER_FASTDDS = (PROFILES_VAR, "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
#: Set to 1 to keep the RMW's own transport defaults.
NO_DDS_DEFAULTS = "CARPOSE_NO_DDS_DEFAULTS"
PROFILE_NAME = "fastdds_large_images.xml"
_FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp", "rmw_fastdds_cpp")


def profile_path() -> str:
    """The shipped Fast DDS profile (package share, install prefix or source tree)."""
    return str(find_shipped("config", PROFILE_NAME))


def recommended_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to ``env`` (default: this process's) for large images: the shipped
    Fast DDS profile when Fast DDS is the RMW, Fast DDS is not configured already, and
    ``CARPOSE_NO_DDS_DEFAULTS`` is not set. Empty when nothing should change."""
    env = os.environ if env is None else env
    if env.get(NO_DDS_DEFAULTS, "") not in ("", "0") or any(env.get(k) for k in _USER_FASTDDS):
        return {}
    if env.get("RMW_IMPLEMENTATION", "") not in _FASTDDS_RMWS:
        return {}
    return {PROFILES_VAR: profile_path()}


def apply_recommended(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put :func:`recommended_env` into ``env`` (default: ``os.environ``); returns what was set."""
    env = os.environ if env is None else env
    add = recommended_env(env)
    env.update(add)
    return add
