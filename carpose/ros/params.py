"""The node's parameters: names, defaults and descriptors (README "Run it (ROS 2)"), validation with
a reason, and what they make: the :class:`carpose.pipeline.PipelineConfig` of the next configure
and the changes a running pipeline takes at once (the *dynamic* ones).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from carpose.pipeline import REPO, Pipeline, PipelineConfig
from carpose.pose import BACKENDS
from carpose.ros.convert import DEFAULT_HFOV_DEG
from carpose.shipped import DET_MODEL, POSE_MODEL, find_shipped_model

#: detector_weights value that runs without a detector: every frame is one car (pre-cropped input).
NO_DETECTOR = "none"
#: Parameters applied to the running pipeline at once; the others wait for the next configure
#: (models, device, sizes) or the next activate (topic, QoS).
DYNAMIC = ("det_conf", "det_iou", "smoothing", "publish_probs", "row_prior", "min_box_px", "debug_image",
           "camera_hfov_deg")
ON_ACTIVATE = ("image_topic", "compressed", "qos_reliable", "image_reliability", "camera_info_topic")
RELIABILITY = ("auto", "best_effort", "reliable")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _frange(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


def _irange(lo: int, hi: int, step: int = 1) -> list[IntegerRange]:
    return [IntegerRange(from_value=lo, to_value=hi, step=step)]


# name -> (default, description, extra descriptor fields)
PARAMETERS: dict[str, tuple[Any, str, dict]] = {
    "pose_model": ("", "pose CNN (.onnx, .engine or .pt); '' = the shipped models/carpose_pose.onnx", {}),
    "pose_backend": ("auto", f"one of {', '.join(BACKENDS)}", {}),
    "device": ("auto", "auto | cpu | cuda | cuda:N", {}),
    "detector_weights": ("", "YOLO weights (.pt/.onnx/...); '' = the shipped models/carpose_det.onnx; "
                             f"'{NO_DETECTOR}' = no detector, every frame is one car (pre-cropped input)", {}),
    "det_conf": (0.35, "detector confidence threshold (dynamic)", {"floating_point_range": _frange(0.0, 1.0)}),
    "det_iou": (0.5, "detector NMS IoU threshold (dynamic)", {"floating_point_range": _frange(0.0, 1.0)}),
    "det_imgsz": (0, "detector input: 0 = the model's own (the shipped one: frames fitted into 352 x 640, "
                     "padded to a multiple of 32); else the long side in pixels (multiple of 32)",
                  {"integer_range": _irange(0, 4096, 32)}),
    "det_int8": (False, "true: on a CPU, run the shipped detector's INT8 twin (models/carpose_det_int8.onnx: "
                        "about 0.7x the time, AP within 0.01 on the real validation frames)", {}),
    "max_cars": (64, "at most this many cars per frame (highest scores kept)", {"integer_range": _irange(1, 1000)}),
    "min_box_px": (6.0, "skip boxes narrower or lower than this (dynamic)",
                   {"floating_point_range": _frange(0.0, 10000.0)}),
    "publish_probs": (False, "fill CarPose.azimuth_probs with the bin probabilities (dynamic)", {}),
    "smoothing": (False, "per-track temporal smoothing of the azimuth, fills track_id (dynamic)", {}),
    "row_prior": (True, "a car hidden behind a nearer one mixes in that car's heading by the share hidden "
                        "(carpose.row_prior; dynamic)", {}),
    "image_reliability": ("auto", "image subscription reliability: auto (reliable when every publisher of the "
                                  "topic is reliable, else best effort; re-checked every second) | best_effort | "
                                  "reliable", {}),
    "qos_reliable": (False, "legacy: true forces a reliable image subscription (image_reliability:=reliable)", {}),
    "image_topic": ("image", "input topic (or remap 'image')", {}),
    "compressed": (False, "subscribe sensor_msgs/CompressedImage on <image_topic>/compressed", {}),
    "camera_info_topic": ("", "sensor_msgs/CameraInfo for orientation and markers; '' = camera_info beside the "
                              "image topic", {}),
    "camera_hfov_deg": (DEFAULT_HFOV_DEG, "horizontal field of view used when no CameraInfo arrives (dynamic)",
                        {"floating_point_range": _frange(1.0, 179.0)}),
    "autostart": (True, "configure and activate at start-up (false: wait for a lifecycle manager)",
                  {"read_only": True}),
    "debug_image": (True, "publish ~/debug_image while it has subscribers (dynamic)", {}),
}


def resolve_model(value: str, shipped_name: str) -> Path:
    """'' -> the shipped model (searched in every install location, carpose.shipped; a missing one
    names each place tried); relative paths are tried from the working directory, then the repo."""
    if not value:
        return find_shipped_model(shipped_name)
    p = Path(value).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        return REPO / p
    return p


def parameter_error(name: str, v: Any) -> str:
    """Why ``v`` is not a valid value for parameter ``name`` ('' when it is)."""
    if name in ("det_conf", "det_iou") and not (isinstance(v, float) and 0.0 <= v <= 1.0):
        return f"{name} must be a float in [0, 1], got {v!r}"
    if name == "pose_backend" and v not in BACKENDS:
        return f"pose_backend must be one of {BACKENDS}, got {v!r}"
    if name == "device" and not _DEVICE_RE.match(str(v)):
        return f"device must be auto, cpu, cuda or cuda:N, got {v!r}"
    if name == "image_topic" and not str(v).strip():
        return "image_topic must not be empty"
    if name == "image_reliability" and v not in RELIABILITY:
        return f"image_reliability must be one of {', '.join(RELIABILITY)}, got {v!r}"
    if name == "camera_hfov_deg" and not (isinstance(v, float) and 0.0 < v < 180.0):
        return f"camera_hfov_deg must be in (0, 180), got {v!r}"
    return ""


def declare_parameters(node: Any) -> None:
    """Declare every parameter on ``node`` with its descriptor. Raises ValueError for a bad value:
    overrides from the command line / YAML bypass the set-parameters callback."""
    for name, (default, description, extra) in PARAMETERS.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description, **extra))
        reason = parameter_error(name, node.get_parameter(name).value)
        if reason:
            raise ValueError(reason)


def pipeline_config(param: Callable[[str], Any]) -> PipelineConfig:
    """The pipeline the parameters ask for (``param(name)`` -> value); models resolved."""
    det = str(param("detector_weights")).strip()
    return PipelineConfig(
        pose_model=resolve_model(str(param("pose_model")).strip(), POSE_MODEL),
        pose_backend=param("pose_backend"), device=param("device"),
        detector_weights=None if det.lower() == NO_DETECTOR else resolve_model(det, DET_MODEL),
        det_conf=param("det_conf"), det_iou=param("det_iou"), det_imgsz=param("det_imgsz"),
        det_int8=param("det_int8"), max_cars=param("max_cars"), min_box_px=param("min_box_px"),
        return_probs=param("publish_probs"), smoothing=param("smoothing"), row_prior=param("row_prior"))


def apply_dynamic(pipe: Pipeline, name: str, value: Any) -> str:
    """Apply a changed parameter to the running pipeline when it is one that changes it now; else
    return when it takes effect ('' for the dynamic ones read per frame: debug_image, camera_hfov_deg)."""
    if name in ("det_conf", "det_iou"):
        pipe.set_thresholds(**{name.removeprefix("det_"): float(value)})
    elif name == "smoothing":
        pipe.set_smoothing(bool(value))
    elif name == "publish_probs":
        pipe.config.return_probs = bool(value)
    elif name == "row_prior":
        pipe.config.row_prior = bool(value)
    elif name == "min_box_px":
        pipe.config.min_box_px = float(value)
    elif name not in DYNAMIC:
        when = "activate" if name in ON_ACTIVATE else "configure"
        return f"{name} = {value!r} takes effect at the next {when}"
    return ""
