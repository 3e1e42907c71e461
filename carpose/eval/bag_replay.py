"""Replaying a bag through carpose: live through the real node, or offline through the Pipeline.

Why apart from scoring and report: this is the only part that runs models and ROS; it hands back
one :class:`RunResult` per mode (what carpose said about each frame, and when), which
carpose.eval.bag_scoring scores and carpose.eval.bag_report draws without running anything.
How live and offline replay differ (rates, back-pressure, QoS): carpose.eval.bag_eval.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from carpose.eval.node_process import NodeError, NodeProcess, NodeStartError
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL
from carpose.results import CarPoseResult
from carpose.ros.bag import (
    AUTO,
    CAR_POSE_ARRAY,
    CARS_TOPIC,
    GT_TOPIC,
    POSE_ARRAY,
    BagReader,
    BagWriter,
    car_pose_array_to_results,
    gt_msgs,
    publish_staged,
    remove_bag,
    staging_path,
    stamp_ns,
)

NO_DETECTOR = "none"
#: ``--det-model gt`` (offline only): the ground-truth boxes replace the detector, to see the pose
#: CNN's error on its own.
GT_BOXES = "gt"


@dataclass
class EvalConfig:
    """One evaluation's settings, as ``carpose-bag-eval`` takes them: the replay reads the models,
    thresholds and timing, the report records them all."""

    bag: str
    image_topic: str | None = None
    gt_topic: str | None = AUTO
    mode: str = "live"
    rate: float = 1.0
    out: str = "runs/bag_eval"
    pose_model: str = str(DEFAULT_POSE_MODEL)
    det_model: str = str(DEFAULT_DET_MODEL)  # 'none': every frame is one car (the node's pre-cropped mode)
    det_conf: float = 0.35
    det_iou: float = 0.5
    det_imgsz: int = 0  # 0: the detector's own input size
    frame_timeout_s: float = 10.0
    start_timeout_s: float = 180.0
    domain_id: int | None = None
    max_frames: int | None = None
    video: bool = True
    fallback_offline: bool = False
    progress: bool = True
    qos: str = "best_effort"  # the replayed stream's reliability, like a camera driver's


@dataclass
class FrameOut:
    """What one run said about one input frame."""

    index: int
    cars: list[CarPoseResult]
    latency_ms: float  # live: receive - header stamp; offline: pipeline total
    pipeline_ms: float  # the pipeline's own total (node: CarPoseArray.total_ms)


@dataclass
class RunResult:
    """One replay (live or offline): every processed frame's output, what was published, how long
    it took; the only thing scoring and report see of a run."""

    mode: str
    frames_total: int
    published: int
    outputs: dict[int, FrameOut] = field(default_factory=dict)
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


# ---- offline ----------------------------------------------------------------------------------------
def _whole_frame(img: np.ndarray) -> np.ndarray:
    return np.array([[0.0, 0.0, img.shape[1], img.shape[0]]])


def make_pipeline(cfg: EvalConfig) -> Any:
    """The Pipeline the node builds from the same parameters (carpose.ros.node._load_pipeline)."""
    from carpose.pipeline import Pipeline, PipelineConfig

    det = None if cfg.det_model.lower() in (NO_DETECTOR, GT_BOXES) else cfg.det_model
    pipe = Pipeline(PipelineConfig(pose_model=cfg.pose_model, detector_weights=det, det_conf=cfg.det_conf,
                                   det_iou=cfg.det_iou, det_imgsz=cfg.det_imgsz))
    grey = np.full((240, 320, 3), 114, np.uint8)  # warm-up, like the node: first-call cost out of frame 0
    pipe.process(grey, boxes=np.array([[100.0, 60.0, 220.0, 180.0]]))
    if pipe.detector is not None:
        pipe.process(grey)
    return pipe


def run_offline(cfg: EvalConfig, reader: BagReader, n: int) -> RunResult:
    from tqdm import tqdm

    pipe = make_pipeline(cfg)
    res = RunResult("offline", n, 0)
    t0 = time.perf_counter()
    for f in tqdm(reader.frames(), total=n, desc="offline", unit="frame", disable=not cfg.progress, leave=False):
        if f.index >= n:
            break
        if cfg.det_model.lower() == GT_BOXES:
            boxes = np.array([g.box_xyxy for g in f.gt or [] if not g.ignore]).reshape(-1, 4)
        else:
            boxes = None if pipe.detector is not None else _whole_frame(f.image)
        r = pipe.process(f.image, boxes=boxes)
        res.outputs[f.index] = FrameOut(f.index, r.cars, r.timings_ms["total"], r.timings_ms["total"])
        res.published += 1
    res.wall_s = time.perf_counter() - t0
    return res


# ---- live -------------------------------------------------------------------------------------------
def _domain_id(cfg: EvalConfig) -> int:
    if cfg.domain_id is not None:
        return cfg.domain_id
    env = os.environ.get("CARPOSE_EVAL_DOMAIN_ID")
    return int(env) if env else 20 + os.getpid() % 80  # 20..99: away from the default 0 and the tests' 101+


def _node_args(cfg: EvalConfig, reader: BagReader) -> tuple[list[str], str]:
    """ROS arguments for the node and the topic to publish on."""
    topic = reader.image_topic
    det = NO_DETECTOR if cfg.det_model.lower() == NO_DETECTOR else Path(cfg.det_model).resolve()
    args = ["-p", "debug_image:=false",  # the node's default image QoS: it adapts to the publisher
            "-p", f"pose_model:={Path(cfg.pose_model).resolve()}", "-p", f"detector_weights:={det}",
            "-p", f"det_conf:={float(cfg.det_conf)!r}", "-p", f"det_iou:={float(cfg.det_iou)!r}",
            "-p", f"det_imgsz:={int(cfg.det_imgsz)}"]
    if reader.compressed:  # the node subscribes <image>/compressed
        base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
        args += ["-p", "compressed:=true", "-r", f"image:={base}"]
        topic = base + "/compressed"
    else:
        args += ["-r", f"image:={topic}"]
    return args, topic


def run_live(cfg: EvalConfig, reader: BagReader, n: int, out: Path) -> RunResult:
    """Replay through the real node; see carpose.eval.bag_eval's module docstring."""
    try:
        import rclpy
        from carpose_msgs.msg import CarPoseArray
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import CompressedImage, Image
    except ImportError as exc:  # no ROS 2 here: the node could not run either
        raise NodeStartError(f"ROS 2 Python packages are not importable ({exc}); `source scripts/env.sh` "
                             f"(and build ros2_ws with scripts/build_ros2_ws.sh)") from exc

    domain = _domain_id(cfg)
    ros_args, topic = _node_args(cfg, reader)
    node = NodeProcess(ros_args, out / "node.log", domain)
    res = RunResult("live", n, 0, extra={"domain_id": domain, "node_log": str(out / "node.log"),
                                         "image_topic_published": topic, "rate": cfg.rate})
    old_range = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # read at init, like the node's
    ctx = Context()
    result_tmp = staging_path(out / "result_bag")
    writer: BagWriter | None = None
    complete = False
    try:
        res.extra["node_start_s"] = round(node.wait_active(cfg.start_timeout_s), 2)
        rclpy.init(context=ctx, domain_id=domain)
        client = rclpy.create_node("carpose_bag_eval", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(client)
        msg_cls = CompressedImage if reader.compressed else Image
        # like a camera driver: sensor-data QoS (best effort) unless --qos reliable
        pub = client.create_publisher(msg_cls, topic, QoSProfile(depth=10, reliability=(
            ReliabilityPolicy.RELIABLE if cfg.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT)))
        stamp_to_index: dict[int, int] = {}
        received: dict[int, tuple[int, Any]] = {}
        writer = BagWriter(result_tmp, "mcap")
        diag: dict[str, str] = {}

        def on_cars(msg: Any) -> None:
            t = time.time_ns()
            s = stamp_ns(msg.header)
            received[s] = (t, msg)
            writer.write(CARS_TOPIC, CAR_POSE_ARRAY, t, serialize_message(msg))

        def on_diag(msg: Any) -> None:
            for st in msg.status:
                if st.hardware_id == "/carpose":
                    diag.clear()
                    diag.update({kv.key: kv.value for kv in st.values})

        sub = client.create_subscription(CarPoseArray, CARS_TOPIC, on_cars, QoSProfile(depth=100))
        client.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

        def spin_until(pred: Any, timeout: float) -> bool:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if pred():
                    return True
                executor.spin_once(timeout_sec=min(0.01, max(0.0, end - time.monotonic())))
            return pred()

        if not spin_until(lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0, 30.0):
            raise NodeStartError(f"the node is active but never connected to {topic} / {CARS_TOPIC} "
                                 f"(domain {domain}); its log: {node.log}")
        # Matched on both ends is not yet delivered: Fast DDS can still lose the first reliable sample
        # while the handshake finishes (a live replay once processed 5 of 6 frames); let it settle.
        spin_until(lambda: False, 0.5)
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"live x{cfg.rate:g}" if cfg.rate > 0 else "live (back-pressure)", unit="frame",
                   disable=not cfg.progress, leave=False)
        gt = reader.ground_truth()
        t_start, log0 = time.monotonic(), None
        t_wall0 = time.perf_counter()
        for i, (log_ns, bag_stamp, raw) in enumerate(reader.raw_images()):
            if i >= n:
                break
            msg = deserialize_message(raw, msg_cls)
            if cfg.rate > 0:
                log0 = log_ns if log0 is None else log0
                target = t_start + (log_ns - log0) / 1e9 / cfg.rate
                spin_until(lambda target=target: time.monotonic() >= target, max(0.0, target - time.monotonic()))
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
            stamp_to_index[now] = i
            pub.publish(msg)
            res.published += 1
            bar.update(1)
            if gt is not None:  # GT re-stamped like the frame, so the result bag scores on its own
                arr, poses = gt_msgs(reader.gt_for(bag_stamp) or [], now, msg.header.frame_id,
                                     *_size(msg, reader))
                writer.write(GT_TOPIC, CAR_POSE_ARRAY, now, arr)
                writer.write(GT_TOPIC + "/poses", POSE_ARRAY, now, poses)
            if cfg.rate <= 0:
                spin_until(lambda now=now: now in received or node.proc.poll() is not None, cfg.frame_timeout_s)
            if node.proc.poll() is not None:
                raise NodeError(f"the node exited with status {node.proc.returncode} during the replay (frame {i}); "
                                f"its log ({node.log}) ends:\n{node.output()[-2000:]}")
        bar.close()
        # Drain: wait for answers still on their way, until all are in or none came for a while.
        last, quiet_since = len(received), time.monotonic()
        while len(received) < res.published and time.monotonic() - quiet_since < max(2.0, cfg.frame_timeout_s / 2):
            executor.spin_once(timeout_sec=0.05)
            if len(received) != last:
                last, quiet_since = len(received), time.monotonic()
        # From the first publish to the last answer (not the drain's waiting for answers that never come).
        first = min(stamp_to_index, default=0)
        res.wall_s = (max(t for t, _ in received.values()) - first) / 1e9 if received else \
            time.perf_counter() - t_wall0
        spin_until(lambda: False, 1.2)  # one more /diagnostics period
        for s, (t_recv, msg) in received.items():
            i = stamp_to_index.get(s)
            if i is not None:
                res.outputs[i] = FrameOut(i, car_pose_array_to_results(msg), (t_recv - s) / 1e6, float(msg.total_ms))
        res.extra["node_diagnostics"] = {k: v for k, v in diag.items() if k.startswith("frames_") or "_ms_" in k}
        executor.shutdown()
        client.destroy_node()
        complete = True
    finally:
        rclpy.try_shutdown(context=ctx)
        if old_range is None:
            os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = old_range
        rc = node.stop()
        res.extra["node_exit"] = rc
        if writer is not None:
            writer.close()
        if complete:
            res.extra["result_bag"] = str(publish_staged(result_tmp, out / "result_bag"))
        else:
            remove_bag(result_tmp.parent)
    return res


def _size(msg: Any, reader: BagReader) -> tuple[int, int]:
    if not reader.compressed:
        return int(msg.width), int(msg.height)
    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    return (img.shape[1], img.shape[0]) if img is not None else (0, 0)

