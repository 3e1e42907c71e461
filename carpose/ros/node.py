"""``carpose_node``: the ROS 2 lifecycle node around :class:`carpose.pipeline.Pipeline`.

    carpose_node --ros-args -r image:=/camera/image_raw -p det_conf:=0.35

Lifecycle: ``on_configure`` loads the models and runs one warm-up frame, so a missing or
incompatible model fails at start-up with a logged reason, not at the first image;
``on_activate`` subscribes and starts the worker; ``on_deactivate`` / ``on_cleanup`` undo that.
With ``autostart`` (default) the node configures and activates itself and exits with status 1
when configuring fails; with ``autostart:=false`` a lifecycle manager drives it.

Latest frame only: the subscription callback just parks the newest message in a one-slot mailbox
(a message that is replaced before the worker took it counts as *dropped*); a worker thread takes
whatever is newest when it is free. So a camera faster than the model costs dropped frames, never
a growing queue or growing latency.

Topics (relative names, so namespaces and remapping work): subscribes ``image``
(sensor_msgs/Image, or sensor_msgs/CompressedImage on ``<image>/compressed`` with
``compressed:=true``); publishes ``~/cars`` (carpose_msgs/CarPoseArray, header of the input
image), ``~/debug_image`` (annotated bgr8, drawn only while someone subscribes), ``~/markers``
(visualization_msgs/MarkerArray, see :func:`carpose.ros.convert.frame_to_markers`) and
``/diagnostics`` (1 Hz). Service ``~/enable`` (std_srvs/SetBool) pauses and resumes inference
without tearing anything down.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from carpose_msgs.msg import CarPoseArray
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from carpose.convention import CONVENTION_VERSION
from carpose.pipeline import REPO, Pipeline, PipelineConfig
from carpose.pose import BACKENDS
from carpose.ros.convert import (
    DEFAULT_HFOV_DEG,
    compressed_imgmsg_to_cv2,
    cv2_to_imgmsg,
    encoding_of,
    frame_to_markers,
    frame_to_msg,
    imgmsg_to_cv2,
)
from carpose.ros.dds import apply_recommended
from carpose.shipped import DET_MODEL, POSE_MODEL, find_shipped_model

NODE_NAME = "carpose"
#: detector_weights value that runs without a detector: every frame is one car (pre-cropped input).
NO_DETECTOR = "none"
#: Stages whose p50/p95 latency /diagnostics reports (ms). end_to_end = received -> published.
STAGES = ("convert", "detect", "crop", "pose", "track", "pipeline", "publish", "end_to_end")
#: Parameters applied to the running pipeline at once; the others wait for the next configure
#: (models, device, sizes) or the next activate (topic, QoS).
DYNAMIC = ("det_conf", "det_iou", "smoothing", "publish_probs", "min_box_px", "debug_image", "camera_hfov_deg")
ON_ACTIVATE = ("image_topic", "compressed", "qos_reliable", "image_reliability", "camera_info_topic")
RELIABILITY = ("auto", "best_effort", "reliable")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_BAD_LOG_PERIOD_S = 10.0


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
    "det_imgsz": (640, "detector input size in pixels (multiple of 32)", {"integer_range": _irange(32, 4096, 32)}),
    "max_cars": (64, "at most this many cars per frame (highest scores kept)", {"integer_range": _irange(1, 1000)}),
    "min_box_px": (6.0, "skip boxes narrower or lower than this (dynamic)",
                   {"floating_point_range": _frange(0.0, 10000.0)}),
    "publish_probs": (False, "fill CarPose.azimuth_probs with the bin probabilities (dynamic)", {}),
    "smoothing": (False, "per-track temporal smoothing of the azimuth, fills track_id (dynamic)", {}),
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


class FrameStats:
    """Counters and recent per-stage latencies, shared by the worker and the diagnostics timer."""

    def __init__(self, window: int = 300) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = self.bad = self.paused = 0
        self.bad_by_encoding: Counter[str] = Counter()
        self.bad_since_report = 0
        self.last_bad_reason = ""
        self.cars_last_frame = 0
        self.stage_ms: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.done_at: deque[float] = deque(maxlen=window)

    def record(self, timings: dict[str, float], cars: int) -> None:
        with self.lock:
            self.processed += 1
            self.cars_last_frame = cars
            self.done_at.append(time.monotonic())
            for k, v in timings.items():
                self.stage_ms[k].append(v)

    def record_bad(self, encoding: str, reason: str) -> None:
        with self.lock:
            self.bad += 1
            self.bad_since_report += 1
            self.bad_by_encoding[encoding] += 1
            self.last_bad_reason = reason

    def fps(self, horizon_s: float = 5.0) -> float:
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.done_at if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def percentiles(self) -> dict[str, tuple[float, float]]:
        with self.lock:
            data = {k: np.asarray(v) for k, v in self.stage_ms.items() if v}
        return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for k, v in data.items()}


class ReasonLog:
    """Log each distinct reason the first time at once, then at most every ``period_s`` with a count,
    so a camera that sends a bad encoding at 30 Hz does not flood the log."""

    def __init__(self, period_s: float = _BAD_LOG_PERIOD_S) -> None:
        self.period_s = period_s
        self.seen: dict[str, list[float]] = {}  # key -> [count, last logged time]

    def should_log(self, reason: str) -> tuple[bool, int]:
        key = re.sub(r"\d+", "N", reason)  # '100 bytes' and '101 bytes' are the same problem
        now = time.monotonic()
        if key not in self.seen and len(self.seen) >= 256:  # bounded memory, whatever the input
            self.seen.clear()
        entry = self.seen.setdefault(key, [0, -1e9])
        entry[0] += 1
        if now - entry[1] >= self.period_s:
            entry[1] = now
            return True, int(entry[0])
        return False, int(entry[0])


class CarPoseNode(LifecycleNode):
    """Lifecycle node: image -> Pipeline -> CarPoseArray (+ debug image, markers, diagnostics)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, description, extra) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, **extra))
            reason = parameter_error(name, self.get_parameter(name).value)
            if reason:  # overrides from the command line / YAML bypass the set-parameters callback
                raise ValueError(reason)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.stats = FrameStats()
        self._reasons = ReasonLog()
        self._pipeline: Pipeline | None = None
        self._pipe_lock = threading.Lock()  # the worker's process() vs. dynamic parameter changes
        self._slot_cond = threading.Condition()  # guards _pending
        self._pending: tuple[Any, float] | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._enabled = True
        self._active = False
        self._sub = None
        self._sub_compressed = False
        self._sub_reliable = False
        self._input_topic = ""
        self._qos_timer = None
        self._info_sub = None
        self._info_topic = ""
        self._intrinsics: tuple[float, float, float, int] | None = None  # fx, cx, cy, width of CameraInfo
        self._said_no_info = False
        self._cars_pub = self._debug_pub = self._markers_pub = self._diag_pub = self._diag_timer = None
        self.create_service(SetBool, "~/enable", self._on_enable)

    # ---- parameters -------------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject bad values with a reason (ranges are also in the descriptors)."""
        for p in params:
            reason = parameter_error(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Dynamic parameters change the running pipeline now; others are picked up later."""
        with self._pipe_lock:
            pipe = self._pipeline
            for p in params:
                if pipe is not None and p.name in ("det_conf", "det_iou"):
                    pipe.set_thresholds(**{p.name.removeprefix("det_"): float(p.value)})
                elif pipe is not None and p.name == "smoothing":
                    pipe.set_smoothing(bool(p.value))
                elif pipe is not None and p.name == "publish_probs":
                    pipe.config.return_probs = bool(p.value)
                elif pipe is not None and p.name == "min_box_px":
                    pipe.config.min_box_px = float(p.value)
                elif p.name not in DYNAMIC and pipe is not None:
                    when = "activate" if p.name in ON_ACTIVATE else "configure"
                    self.get_logger().info(f"{p.name} = {p.value!r} takes effect at the next {when}")

    # ---- lifecycle --------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._load_pipeline()
        except Exception as exc:  # a missing / incompatible model: say so, stay unconfigured
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self._pipeline = None
            return TransitionCallbackReturn.FAILURE
        self._cars_pub = self.create_lifecycle_publisher(CarPoseArray, "~/cars", 10)
        self._debug_pub = self.create_lifecycle_publisher(Image, "~/debug_image", 2)
        self._markers_pub = self.create_lifecycle_publisher(MarkerArray, "~/markers", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        return super().on_configure(state)

    def _load_pipeline(self) -> None:
        det = str(self._param("detector_weights")).strip()
        cfg = PipelineConfig(
            pose_model=resolve_model(str(self._param("pose_model")).strip(), POSE_MODEL),
            pose_backend=self._param("pose_backend"), device=self._param("device"),
            detector_weights=None if det.lower() == NO_DETECTOR else resolve_model(det, DET_MODEL),
            det_conf=self._param("det_conf"), det_iou=self._param("det_iou"), det_imgsz=self._param("det_imgsz"),
            max_cars=self._param("max_cars"), min_box_px=self._param("min_box_px"),
            return_probs=self._param("publish_probs"), smoothing=self._param("smoothing"))
        t0 = time.perf_counter()
        pipe = Pipeline(cfg)
        # Warm-up: proves the models run (shapes, providers) now and takes the first-call cost out
        # of the first real frame.
        grey = np.full((240, 320, 3), 114, np.uint8)
        pipe.process(grey, boxes=np.array([[100.0, 60.0, 220.0, 180.0]]))
        if pipe.detector is not None:
            pipe.process(grey)
        if pipe.tracker is not None:
            pipe.set_smoothing(True)  # forget the warm-up's track
        with self._pipe_lock:
            self._pipeline = pipe
        det_name = "none (whole frame = one car)" if cfg.detector_weights is None else cfg.detector_weights
        self.get_logger().info(f"pipeline ready in {time.perf_counter() - t0:.1f} s: pose {cfg.pose_model} "
                               f"({pipe.pose.backend.name}), detector {det_name}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers first
        try:
            compressed = bool(self._param("compressed"))
            topic = str(self._param("image_topic"))
            if compressed:
                topic = self.resolve_topic_name(topic) + "/compressed"
            self._sub_compressed = compressed
            self._stop.clear()
            self._worker = threading.Thread(target=self._work, name="carpose-worker", daemon=True)
            self._worker.start()
            self._subscribe_image(topic, self._want_reliable(topic))
            if self._reliability() == "auto":
                self._qos_timer = self.create_timer(1.0, self._check_reliability)
            self._subscribe_camera_info()
        except Exception as exc:
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            self._stop_input()
            super().on_deactivate(state)  # publishers off again: the node stays inactive
            return TransitionCallbackReturn.FAILURE
        self._active = True
        kind = "CompressedImage" if compressed else "Image"
        self.get_logger().info(f"active: {kind} on {self._input_topic} -> {self.resolve_topic_name('~/cars')}")
        return ret

    # ---- input: image QoS that matches the camera, CameraInfo --------------------------------------
    def _reliability(self) -> str:
        return "reliable" if self._param("qos_reliable") else str(self._param("image_reliability"))

    def _want_reliable(self, topic: str) -> bool:
        """Reliable only when asked, or (auto) when the topic has publishers and all are reliable:
        a reliable camera then gets reliable delivery (large frames are resent, not lost), and a
        best-effort one still matches (a reliable subscription would never hear it)."""
        mode = self._reliability()
        if mode != "auto":
            return mode == "reliable"
        pubs = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
        return bool(pubs) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)

    def _subscribe_image(self, topic: str, reliable: bool) -> None:
        if self._sub is not None:
            self.destroy_subscription(self._sub)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        msg_type = CompressedImage if self._sub_compressed else Image
        self._sub = self.create_subscription(msg_type, topic, self._on_image, qos)
        self._sub_reliable = reliable
        self._input_topic = self._sub.topic_name

    def _check_reliability(self) -> None:
        if self._sub is None:
            return
        want = self._want_reliable(self._input_topic)
        if want != self._sub_reliable:
            self._subscribe_image(self._input_topic, want)
            self.get_logger().info(f"image subscription is now {'reliable' if want else 'best effort'} "
                                   f"to match the publishers of {self._input_topic}")

    def _subscribe_camera_info(self) -> None:
        topic = str(self._param("camera_info_topic")).strip()
        if not topic:  # the camera_info beside the image, as camera drivers publish it
            image = self._input_topic.removesuffix("/compressed") if self._sub_compressed else self._input_topic
            topic = image.rsplit("/", 1)[0] + "/camera_info"
        self._intrinsics, self._said_no_info = None, False
        self._info_sub = self.create_subscription(CameraInfo, topic, self._on_camera_info,
                                                  QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._info_topic = self._info_sub.topic_name

    def _on_camera_info(self, msg: CameraInfo) -> None:
        fx, cx, cy = float(msg.k[0]), float(msg.k[2]), float(msg.k[5])
        if fx > 0.0 and msg.width > 0:  # K all zero: an uncalibrated camera, keep the fallback
            if self._intrinsics is None:
                self.get_logger().info(f"using CameraInfo from {self._info_topic}: fx {fx:.1f}, cx {cx:.1f}")
            self._intrinsics = (fx, cx, cy, int(msg.width))

    def _camera_model(self, width: int) -> dict[str, float | None]:
        """fx / cx / cy for this frame's width from CameraInfo (scaled if the image was resized), or
        nothing: the messages then fall back to camera_hfov_deg, which is said once."""
        k = self._intrinsics
        if k is None:
            if not self._said_no_info:
                self._said_no_info = True
                self.get_logger().warning(f"no CameraInfo on {self._info_topic}: orientation and markers use "
                                          f"camera_hfov_deg = {self._param('camera_hfov_deg')}")
            return {"camera_fx": None, "cx": None, "cy": None}
        s = width / k[3]
        return {"camera_fx": k[0] * s, "cx": k[1] * s, "cy": k[2] * s}

    def _stop_input(self) -> None:
        """Unsubscribe and stop the worker (it finishes the frame in hand)."""
        self._active = False
        for sub in (self._sub, self._info_sub):
            if sub is not None:
                self.destroy_subscription(sub)
        self._sub = self._info_sub = None
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        self._stop.set()
        with self._slot_cond:
            self._pending = None
            self._slot_cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None

    def _release(self) -> None:
        """Drop what configure made."""
        for pub in (self._cars_pub, self._debug_pub, self._markers_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self._cars_pub = self._debug_pub = self._markers_pub = self._diag_pub = self._diag_timer = None
        with self._pipe_lock:
            self._pipeline = None

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.teardown()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def teardown(self) -> None:
        """Everything off, whatever the state (shutdown, errors, Ctrl-C)."""
        self._stop_input()
        self._release()

    # ---- enable service ---------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self._enabled = bool(req.data)
        if not self._enabled:
            with self._slot_cond:
                self._pending = None
        resp.success = True
        resp.message = "inference enabled" if self._enabled else "inference paused"
        if not self._active:
            resp.message += " (the node is not active yet)"
        self.get_logger().info(resp.message)
        return resp

    # ---- frames -----------------------------------------------------------------------------------
    def _on_image(self, msg: Any) -> None:
        """Executor thread: park the newest frame and return at once."""
        with self.stats.lock:
            self.stats.received += 1
            if not self._enabled:
                self.stats.paused += 1
                return
        with self._slot_cond:
            if self._pending is not None:
                with self.stats.lock:
                    self.stats.dropped += 1
            self._pending = (msg, time.perf_counter())
            self._slot_cond.notify()

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._slot_cond:
                while self._pending is None and not self._stop.is_set():
                    self._slot_cond.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                msg, t_recv = self._pending
                self._pending = None
            try:
                self._process(msg, t_recv)
            except Exception as exc:  # never let one frame kill the worker
                if self._stop.is_set():
                    return
                self._bad_frame(msg, exc)

    def _process(self, msg: Any, t_recv: float) -> None:
        t0 = time.perf_counter()
        img = compressed_imgmsg_to_cv2(msg) if self._sub_compressed else imgmsg_to_cv2(msg, "bgr8")
        t1 = time.perf_counter()
        with self._pipe_lock:
            pipe = self._pipeline
            if pipe is None:
                return
            boxes = None if pipe.detector is not None else np.array([[0.0, 0.0, img.shape[1], img.shape[0]]])
            res = pipe.process(img, boxes=boxes)
        t2 = time.perf_counter()
        hfov = float(self._param("camera_hfov_deg"))
        cam = self._camera_model(img.shape[1])
        self._cars_pub.publish(frame_to_msg(res, msg.header, CONVENTION_VERSION, camera_fx=cam["camera_fx"],
                                            cx=cam["cx"], hfov_deg=hfov))
        if self._markers_pub.get_subscription_count() > 0:
            self._markers_pub.publish(frame_to_markers(res, msg.header, hfov_deg=hfov, **cam))
        if self._param("debug_image") and self._debug_pub.get_subscription_count() > 0:
            from carpose.draw import annotate

            shown = annotate(img, res.cars, fps=self.stats.fps())
            self._debug_pub.publish(cv2_to_imgmsg(shown, "bgr8", header=msg.header))
        t3 = time.perf_counter()
        timings = {k: res.timings_ms.get(k, 0.0) for k in ("detect", "crop", "pose", "track")}
        timings.update(convert=(t1 - t0) * 1000, pipeline=(t2 - t1) * 1000, publish=(t3 - t2) * 1000,
                       end_to_end=(t3 - t_recv) * 1000)
        self.stats.record(timings, len(res.cars))

    def _bad_frame(self, msg: Any, exc: Exception) -> None:
        """Count it per encoding and log the reason once (then throttled); the node carries on."""
        enc = encoding_of(msg)
        reason = f"{type(exc).__name__}: {exc}"
        self.stats.record_bad(enc, reason)
        log, n = self._reasons.should_log(reason)
        if log:
            again = f" (seen {n} times)" if n > 1 else ""
            self.get_logger().warning(f"skipped a bad frame ({enc}){again}: {reason}")

    # ---- diagnostics ------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        s = self.stats
        fps = s.fps()
        pct = s.percentiles()
        with s.lock:
            counters = {"frames_received": s.received, "frames_processed": s.processed,
                        "frames_dropped": s.dropped, "frames_bad": s.bad, "frames_paused": s.paused,
                        "cars_last_frame": s.cars_last_frame}
            bad_now, s.bad_since_report = s.bad_since_report, 0
            by_enc = dict(s.bad_by_encoding)
            last_bad = s.last_bad_reason
        st = DiagnosticStatus(name=f"{self.get_name()}: pipeline", hardware_id=self.get_fully_qualified_name())
        if not self._active:
            st.level, st.message = DiagnosticStatus.WARN, "inactive"
        elif not self._enabled:
            st.level, st.message = DiagnosticStatus.WARN, "paused (~/enable)"
        elif bad_now:
            st.level, st.message = DiagnosticStatus.WARN, f"{bad_now} bad frame(s) in the last period: {last_bad}"
        else:
            st.level, st.message = DiagnosticStatus.OK, f"active, {fps:.1f} fps"
        values = {"state": "active" if self._active else "inactive", "enabled": str(self._enabled).lower(),
                  "input_topic": self._input_topic, "fps": f"{fps:.2f}",
                  "input_qos": "reliable" if self._sub_reliable else "best_effort",
                  "intrinsics": "camera_info" if self._intrinsics else
                  f"camera_hfov_deg {self._param('camera_hfov_deg')} (no CameraInfo on {self._info_topic})"}
        values.update({k: str(v) for k, v in counters.items()})
        for stage in STAGES:
            if stage in pct:
                values[f"{stage}_ms_p50"], values[f"{stage}_ms_p95"] = (f"{x:.2f}" for x in pct[stage])
        values.update({f"bad_frames[{enc}]": str(n) for enc, n in sorted(by_enc.items())})
        if last_bad:
            values["last_bad_reason"] = last_bad
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Console script ``carpose_node``; returns the exit status (1: configure/activate failed)."""
    dds = apply_recommended()  # before rclpy.init: Fast DDS reads it when the participant is made
    rclpy.init(args=args)
    node: CarPoseNode | None = None
    rc = 0
    try:
        try:
            node = CarPoseNode()
            if dds:
                node.get_logger().info("DDS settings for large images: "
                                       + ", ".join(f"{k}={v}" for k, v in dds.items()))
        except Exception as exc:  # bad parameter overrides (type, range) are reported here
            hint = " (floating-point parameters need a decimal point: 6.0, not 6)" if "expecting type 'DOUBLE'" \
                in str(exc) else ""
            print(f"carpose_node: bad parameters: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
            return 2
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("could not configure (see the error above); exiting")
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("could not activate (see the error above); exiting")
                return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # launch forwards a second SIGINT while we tear down (Ctrl-C reaches the whole process group);
        # finishing the teardown matters more than reacting to it again.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.teardown()
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


def run() -> None:
    """Console script ``carpose_node``: :func:`main`, then leave at once. Why: once the node is torn
    down, Python's own finalisation of torch (which ultralytics loads for the detector) takes 4-7 s
    on 2 cores, and ``ros2 launch`` escalates to SIGTERM after 5 s of SIGINT. Everything of ours is
    closed by then; only the output buffers need flushing."""
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    run()
