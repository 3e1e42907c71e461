"""``carpose-bag-eval``: replay a rosbag2 bag through carpose and score it against ground truth.

    carpose-bag-eval data/drive_bag --mode live --rate 1.0 --out runs/bag_eval
    carpose-bag-eval data/drive_bag --mode both --rate 0      # node and Pipeline must agree
    carpose-bag-eval some_recording/ --image-topic /cam/front/image_raw/compressed   # no GT: timing + video

Modes:

- ``live``: starts the real node (``python -m carpose.ros.node``) as a subprocess on a private
  ROS_DOMAIN_ID (localhost discovery only) with a reliable image subscription, publishes the bag's
  images on their topic with fresh header stamps (set at publish time), collects ``/carpose/cars``
  and records it into ``<out>/result_bag``. ``--rate R`` replays at R x the recorded rate (frames the
  node cannot keep up with are dropped by its latest-frame-only mailbox, as with a camera);
  ``--rate 0`` publishes the next frame once the node answered the previous one (or
  ``--frame-timeout`` passed), so every frame is processed.
- ``offline``: runs :class:`carpose.pipeline.Pipeline` over the frames in this process (no ROS).
- ``both``: live, then offline, and checks that they give the same cars and azimuths on every
  frame both processed (same models, same thresholds: the numbers must agree).

Scoring (carpose.eval.scoring, the same code as ``carpose-det-eval``): predictions are matched to
ground truth by IoU >= 0.5 per frame; 'DontCare' ground truth is an ignore region. Detection
precision/recall (at the node's threshold) and AP@0.5 over its published detections; azimuth MedErr /
Acc@30 / Acc@15 on matched cars, also by distance and by 30-degree azimuth bins; latency
p50/p95/p99 (live: receive time - input header stamp; offline: pipeline time); processed vs dropped
frames. Writes ``report.md``, ``report.json``, PNG plots and ``replay.mp4`` (annotated) to ``--out``.
Only processed frames are scored; a dropped frame is counted as dropped, not as missed cars.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL, REPO
from carpose.results import CarPoseResult
from carpose.ros.bag import (
    AUTO,
    CAR_POSE_ARRAY,
    CARS_TOPIC,
    GT_TOPIC,
    POSE_ARRAY,
    BagError,
    BagReader,
    BagWriter,
    GtCar,
    car_pose_array_to_results,
    gt_msgs,
    publish_staged,
    remove_bag,
    staging_path,
    stamp_ns,
)

MODES = ("live", "offline", "both")
DIST_EDGES = (0.0, 10.0, 20.0, 30.0, 50.0, math.inf)
#: Azimuths of node and Pipeline must agree to this (the node sends float32 degrees).
AGREE_TOL_DEG = 0.01
NO_DETECTOR = "none"
#: ``--det-model gt`` (offline only): the ground-truth boxes replace the detector, to see the pose
#: CNN's error on its own.
GT_BOXES = "gt"


class NodeError(RuntimeError):
    """The node failed; the message has the reason and the end of its log."""


class NodeStartError(NodeError):
    """The node did not come up (``--fallback-offline`` then evaluates in-process)."""


@dataclass
class EvalConfig:
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
    det_imgsz: int = 640
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


class NodeProcess:
    """The node as a process with its output in a log file (no pipe to fill up): by default
    ``python -m carpose.ros.node`` from this source tree; ``command`` runs another executable (an
    installed ``lib/carpose/carpose_node``) with ``env`` (full environment) in ``cwd``."""

    def __init__(self, ros_args: list[str], log: Path, domain: int, command: list[str] | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        if env is None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env = dict(env, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                   PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen([*(command or [sys.executable, "-m", "carpose.ros.node"]), "--ros-args",
                                          *ros_args], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         cwd=cwd or REPO)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_active(self, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if "]: active:" in self.output():
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise NodeStartError(f"the node exited with status {self.proc.returncode} before it was active; "
                                     f"its log ({self.log}) ends:\n{self.output()[-2000:]}")
            time.sleep(0.1)
        self.stop()
        raise NodeStartError(f"the node was not active after {timeout:g} s; its log ({self.log}) ends:\n"
                             f"{self.output()[-2000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


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
    """Replay through the real node; see the module docstring."""
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


# ---- scoring ----------------------------------------------------------------------------------------
def _pct(values: list[float] | np.ndarray) -> dict:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def score_run(run: RunResult, gt: dict[int, list[GtCar]] | None, times_s: np.ndarray) -> dict:
    """Every figure of one run (see the module docstring)."""
    from carpose.eval.scoring import azimuth_error_stats, detection_report, match_frame, matched_azimuth_errors

    processed = len(run.outputs)
    out: dict[str, Any] = {
        "mode": run.mode, "frames_total": run.frames_total, "published": run.published, "processed": processed,
        "dropped": run.published - processed, "wall_s": round(run.wall_s, 3),
        "throughput_fps": processed / run.wall_s if run.wall_s > 0 else None,
        "latency_ms": _pct([o.latency_ms for o in run.outputs.values()]),
        "pipeline_ms": _pct([o.pipeline_ms for o in run.outputs.values()]),
        "latency_definition": "receive time - input header stamp (stamped at publish)" if run.mode == "live"
        else "Pipeline.process total", **run.extra}
    if gt is None:
        return out
    matches, pairs, gts = [], [], []  # gts: (distance, gt azimuth, found) of every countable GT car
    for i in sorted(run.outputs):
        cars = run.outputs[i].cars
        g = gt.get(i, [])
        valid = [c for c in g if not c.ignore]
        ign = [c for c in g if c.ignore]
        m = match_frame(np.array([c.box_xyxy for c in cars]).reshape(-1, 4), np.array([c.score for c in cars]),
                        np.array([c.box_xyxy for c in valid]).reshape(-1, 4),
                        np.array([c.box_xyxy for c in ign]).reshape(-1, 4), 0.5)
        matches.append(m)
        err = matched_azimuth_errors(m, np.array([c.azimuth_deg for c in cars]),
                                     np.array([c.azimuth_deg for c in valid]))
        found = set(m.gt_index[m.outcome == 1].tolist())
        gts += [(c.distance_m, c.azimuth_deg, j in found) for j, c in enumerate(valid)]
        for k, p in enumerate(np.flatnonzero(m.outcome == 1)):
            gc = valid[int(m.gt_index[p])]
            pairs.append({"frame": i, "t": float(times_s[i]), "track_id": gc.track_id, "gt_deg": gc.azimuth_deg,
                          "pred_deg": float(cars[p].azimuth_deg), "err_deg": float(err[k]),
                          "distance_m": gc.distance_m, "confidence": float(cars[p].azimuth_confidence)})
    rep = detection_report(matches, 0.0)
    out["detection"] = {"iou": 0.5, "precision": rep.precision, "recall": rep.recall, "ap50": rep.ap,
                        "tp": rep.tp, "fp": rep.fp, "fn": rep.fn,
                        "note": "over the published detections (score >= det_conf)"}
    err = np.array([p["err_deg"] for p in pairs])
    out["azimuth"] = azimuth_error_stats(err)
    dist = np.array([p["distance_m"] for p in pairs])
    gd, ga, gf = (np.array([g[k] for g in gts]) for k in range(3))

    def recall(sel: np.ndarray) -> dict:
        return {"gt": int(sel.sum()), "recall": float(gf[sel].mean()) if sel.any() else None}

    out["by_distance"] = [{"from_m": lo, "to_m": None if math.isinf(hi) else hi,
                           **azimuth_error_stats(err[(dist >= lo) & (dist < hi)]), **recall((gd >= lo) & (gd < hi))}
                          for lo, hi in itertools.pairwise(DIST_EDGES)]
    if len(gts) and not np.all(np.isfinite(gd)):
        out["by_distance_note"] = f"{int(np.sum(~np.isfinite(gd)))} ground-truth cars without a distance"
    gaz = np.array([p["gt_deg"] for p in pairs])
    out["by_azimuth"] = [{"from_deg": lo, "to_deg": lo + 30, **azimuth_error_stats(err[(gaz >= lo) & (gaz < lo + 30)]),
                          **recall((ga >= lo) & (ga < lo + 30))} for lo in range(0, 360, 30)]
    out["matched"] = pairs
    return out


def agreement(live: RunResult, offline: RunResult) -> dict:
    """Do node and Pipeline give the same cars and azimuths on the frames both processed?"""
    from carpose.convention import angular_error
    from carpose.track import iou_matrix

    common = sorted(set(live.outputs) & set(offline.outputs))
    max_az, min_iou, count_diff, cars = 0.0, 1.0, 0, 0
    for i in common:
        a, b = live.outputs[i].cars, offline.outputs[i].cars
        if len(a) != len(b):
            count_diff += 1
        if not a or not b:
            continue
        iou = iou_matrix(np.array([c.box_xyxy for c in a]), np.array([c.box_xyxy for c in b]))
        for r in range(len(a)):
            j = int(np.argmax(iou[r]))
            min_iou = min(min_iou, float(iou[r, j]))
            max_az = max(max_az, float(angular_error(a[r].azimuth_deg, b[j].azimuth_deg)))
            cars += 1
    ok = bool(common) and count_diff == 0 and max_az <= AGREE_TOL_DEG and min_iou >= 0.99
    return {"frames_compared": len(common), "cars_compared": cars, "frames_with_different_car_count": count_diff,
            "max_azimuth_diff_deg": max_az, "min_box_iou": min_iou, "tolerance_deg": AGREE_TOL_DEG, "agree": ok}


# ---- outputs ----------------------------------------------------------------------------------------

def _histogram(series: dict[str, list[float]], bins, xlabel: str, ylabel: str, path: Path, legend_size: int) -> Path:
    """One overlaid histogram per labelled series, saved as PNG."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in series.items():
        ax.hist(values, bins=bins, alpha=0.6, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plots(out: Path, scores: dict[str, dict], gt: dict[int, list[GtCar]] | None, times_s: np.ndarray) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    marks = {"live": ("o", "tab:red"), "offline": ("x", "tab:blue")}
    if gt is not None:
        tracks = sorted({c.track_id for g in gt.values() for c in g})
        if tracks:
            fig, axes = plt.subplots(len(tracks), 1, figsize=(8, 1.9 * len(tracks) + 0.6), sharex=True, squeeze=False)
            for ax, tid in zip(axes[:, 0], tracks, strict=True):
                pts = [(times_s[i], c.azimuth_deg, c.ignore) for i, g in gt.items() for c in g if c.track_id == tid]
                pts.sort()
                t = np.array([p[0] for p in pts])
                a = np.array([p[1] for p in pts])
                jumps = np.flatnonzero(np.abs(np.diff(a)) > 180) + 1  # break the line where it wraps
                ax.plot(np.insert(t, jumps, np.nan), np.insert(a, jumps, np.nan), "k-", lw=1.5, label="ground truth")
                ig = np.array([p[2] for p in pts])
                if ig.any():
                    ax.plot(t[ig], a[ig], "k.", ms=3, alpha=0.4, label="GT (DontCare)")
                for mode, s in scores.items():
                    pm = [(p["t"], p["pred_deg"]) for p in s.get("matched", []) if p["track_id"] == tid]
                    if pm:
                        mk, col = marks.get(mode, ("+", "tab:green"))
                        ax.plot([p[0] for p in pm], [p[1] for p in pm], mk, color=col, ms=4, label=mode)
                ax.set_ylim(-5, 365)
                ax.set_yticks(range(0, 361, 90))
                ax.set_ylabel(f"car {tid}\naz (deg)", fontsize=8)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=6, loc="upper right")
            axes[-1, 0].set_xlabel("time (s)")
            fig.suptitle("azimuth over time per ground-truth car", fontsize=10)
            fig.tight_layout()
            paths["azimuth_over_time"] = out / "azimuth_over_time.png"
            fig.savefig(paths["azimuth_over_time"], dpi=90)
            plt.close(fig)
        paths["error_histogram"] = _histogram(
            {f"{mode} (n={len(e)})": e for mode, s in scores.items()
             if (e := [p["err_deg"] for p in s.get("matched", [])])},
            np.arange(0, 185, 5), "azimuth error (deg)", "matched cars", out / "error_histogram.png", 8)
    paths["latency_histogram"] = _histogram(
        {f"{mode}: {s['latency_definition']}": lat for mode, s in scores.items()
         if (lat := list(s.get("_latencies", [])))},
        30, "latency (ms)", "frames", out / "latency_histogram.png", 6)
    return paths


def write_video(path: Path, reader: BagReader, n: int, run: RunResult, gt: dict[int, list[GtCar]] | None,
                fps: float) -> Path | None:
    """Annotated replay: ground truth as thin white boxes, predictions by carpose.draw.annotate."""
    from carpose.draw import annotate

    writer = None
    try:
        for f in reader.frames():
            if f.index >= n:
                break
            o = run.outputs.get(f.index)
            img = f.image.copy()  # decoded straight from the bag's buffer: read-only
            for g in (gt or {}).get(f.index, []):
                b = np.round(g.box_xyxy).astype(int)
                col = (150, 150, 150) if g.ignore else (255, 255, 255)
                cv2.rectangle(img, (b[0], b[1]), (b[2], b[3]), col, 1, cv2.LINE_AA)
            img = annotate(img, o.cars if o is not None else [])
            if o is None:
                cv2.putText(img, "dropped", (4, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
                if not writer.isOpened():
                    return None
            writer.write(img)
    finally:
        if writer is not None:
            writer.release()
    return path if writer is not None else None


def _f(v: Any, fmt: str = "{:.3f}", pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else fmt.format(v)


def summary_table(scores: dict[str, dict]) -> str:
    """The markdown table carpose-bag-eval prints and puts at the top of report.md."""
    modes = list(scores)
    rows = [("frames processed / published", lambda s: f"{s['processed']} / {s['published']}"),
            ("frames dropped", lambda s: str(s["dropped"]))]
    if any("detection" in s for s in scores.values()):
        rows += [("detection precision @IoU0.5", lambda s: _f(s["detection"]["precision"])),
                 ("detection recall @IoU0.5", lambda s: _f(s["detection"]["recall"])),
                 ("detection AP@0.5", lambda s: _f(s["detection"]["ap50"])),
                 ("matched cars", lambda s: str(s["azimuth"]["n"])),
                 ("azimuth MedErr (deg)", lambda s: _f(s["azimuth"]["med_err_deg"], "{:.1f}")),
                 ("azimuth Acc@30", lambda s: _f(s["azimuth"]["acc_30"], pct=True)),
                 ("azimuth Acc@15", lambda s: _f(s["azimuth"]["acc_15"], pct=True))]
    rows += [("latency p50 / p95 / p99 (ms)", lambda s: " / ".join(_f(s["latency_ms"].get(k), "{:.0f}")
                                                                  for k in ("p50", "p95", "p99"))),
             ("pipeline p50 (ms)", lambda s: _f(s["pipeline_ms"].get("p50"), "{:.0f}")),
             ("throughput (frames/s)", lambda s: _f(s["throughput_fps"], "{:.2f}"))]
    lines = ["| metric | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for name, fn in rows:
        cells = []
        for m in modes:
            try:
                cells.append(fn(scores[m]))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _bins_table(scores: dict[str, dict], key: str, label: Any) -> str:
    modes = [m for m in scores if key in scores[m]]
    if not modes:
        return ""
    lines = [f"| {key.replace('by_', '')} | " + " | ".join(f"{m}: GT cars / recall / matched / MedErr / Acc@30"
                                                          for m in modes) + " |", "|---|" + "---|" * len(modes)]
    for j, b in enumerate(scores[modes[0]][key]):
        cells = []
        for m in modes:
            x = scores[m][key][j]
            cells.append(f"{x['gt']} / {_f(x['recall'], pct=True)} / {x['n']} / {_f(x['med_err_deg'], '{:.1f}')} / "
                         f"{_f(x['acc_30'], pct=True)}")
        lines.append(f"| {label(b)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, cfg: EvalConfig, reader: BagReader, n: int, scores: dict[str, dict],
                 agree: dict | None, files: dict[str, Path | None]) -> tuple[Path, Path]:
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    md = [f"# carpose bag evaluation: {reader.path.name}", "",
          f"Bag `{reader.path}` ({reader.storage}), image topic `{reader.image_topic}` ({n} frames), ground truth "
          f"`{reader.gt_topic or 'none'}`. Pose model `{cfg.pose_model}`, detector `{cfg.det_model}` "
          f"(conf {cfg.det_conf}, IoU {cfg.det_iou}, imgsz {cfg.det_imgsz}). Mode {cfg.mode}"
          + (f", rate {cfg.rate:g}" + (" (back-pressure)" if cfg.rate <= 0 else " x recorded")
             if cfg.mode != "offline" else "") + ".", "", summary_table(scores), ""]
    if reader.gt_topic is None:
        md += ["No ground truth topic: throughput, latency and video only.", ""]
    if agree is not None:
        md += [f"**Live vs offline**: {agree['frames_compared']} frames, {agree['cars_compared']} cars compared; "
               f"max azimuth difference {agree['max_azimuth_diff_deg']:.4f} deg, min box IoU "
               f"{agree['min_box_iou']:.4f}, frames with a different car count "
               f"{agree['frames_with_different_car_count']}: **{'agree' if agree['agree'] else 'DISAGREE'}**.", ""]
    t = _bins_table(scores, "by_distance", lambda b: f"{b['from_m']:.0f}-{b['to_m']:.0f} m" if b["to_m"] is not None
                    else f">= {b['from_m']:.0f} m")
    if t:
        md += ["## Azimuth error by distance", "", t, ""]
    t = _bins_table(scores, "by_azimuth", lambda b: f"{b['from_deg']}-{b['to_deg']} deg")
    if t:
        md += ["## Azimuth error by ground-truth azimuth", "", t, ""]
    md += ["## Files", ""]
    for name, p in files.items():
        if p is not None:
            md.append(f"- {name}: [{rel(p)}]({rel(p)})")
            if str(p).endswith(".png"):
                md.append(f"\n  ![{name}]({rel(p)})\n")
    md += ["", "Only processed frames are scored. 'DontCare' ground truth (tiny, hidden or truncated cars) "
           "is an ignore region. Definitions: carpose/eval/bag_eval.py."]
    report_md = out / "report.md"
    report_md.write_text("\n".join(md) + "\n")
    js = {"bag": str(reader.path), "storage": reader.storage, "image_topic": reader.image_topic,
          "gt_topic": reader.gt_topic, "frames": n, "config": {k: v for k, v in vars(cfg).items()},
          "runs": {m: {k: v for k, v in s.items() if not k.startswith("_")} for m, s in scores.items()},
          "agreement": agree, "files": {k: str(v) for k, v in files.items() if v is not None}}
    report_json = out / "report.json"
    report_json.write_text(json.dumps(js, indent=1, default=float))
    return report_md, report_json


def evaluate(cfg: EvalConfig) -> dict:
    """Run the evaluation; returns the report dict (also written to ``cfg.out``)."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    reader = BagReader(cfg.bag, cfg.image_topic, cfg.gt_topic)
    for name, p in (("pose model", cfg.pose_model), ("detector", cfg.det_model)):
        if p.lower() not in (NO_DETECTOR, GT_BOXES) and not Path(p).is_file():
            raise FileNotFoundError(f"{name} {p} does not exist" + (
                " (the shipped models are made by scripts/train_pose_model.sh and scripts/make_det_model.sh)"
                if Path(p).resolve() in (DEFAULT_POSE_MODEL.resolve(), DEFAULT_DET_MODEL.resolve()) else ""))
    if cfg.det_model.lower() == GT_BOXES and (cfg.mode != "offline" or reader.gt_topic is None):
        raise ValueError("--det-model gt needs --mode offline and a bag with ground truth")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    n = reader.num_frames if cfg.max_frames is None else min(cfg.max_frames, reader.num_frames)
    if n == 0:
        raise BagError(f"{reader.image_topic} in {reader.path} has no messages")
    stamps, times = [], []
    for log_ns, st, _ in reader.raw_images():
        stamps.append(st)
        times.append(log_ns)
    times_s = (np.array(times, np.float64) - times[0]) / 1e9
    gt_by_stamp = reader.ground_truth()
    gt = None if gt_by_stamp is None else {i: reader.gt_for(s) or [] for i, s in enumerate(stamps[:n])}
    runs: dict[str, RunResult] = {}
    notes = []
    if cfg.mode in ("live", "both"):
        try:
            runs["live"] = run_live(cfg, reader, n, out)
        except NodeStartError as exc:
            if not cfg.fallback_offline:
                raise
            notes.append(f"live mode failed, evaluated offline instead: {exc}")
            print(f"carpose-bag-eval: the node could not start, falling back to offline mode:\n{exc}", file=sys.stderr)
    if cfg.mode in ("offline", "both") or ("live" not in runs):
        runs["offline"] = run_offline(cfg, reader, n)
    scores = {m: score_run(r, gt, times_s) for m, r in runs.items()}
    for m, r in runs.items():
        scores[m]["_latencies"] = [o.latency_ms for o in r.outputs.values()]
    agree = agreement(runs["live"], runs["offline"]) if len(runs) == 2 else None
    files: dict[str, Path | None] = {}
    files.update(_plots(out, scores, gt, times_s))
    if cfg.video:
        shown = runs.get("live") or runs["offline"]
        files["video"] = write_video(out / "replay.mp4", reader, n, shown, gt, 1.0 / reader.frame_period_s())
    if "live" in runs and runs["live"].extra.get("result_bag"):
        files["result_bag"] = Path(runs["live"].extra["result_bag"])
    report_md, report_json = write_report(out, cfg, reader, n, scores, agree, files)
    return {"scores": scores, "agreement": agree, "report_md": report_md, "report_json": report_json,
            "files": files, "notes": notes, "table": summary_table(scores)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-bag-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    p.add_argument("--image-topic", help="default: /camera/image_raw, or the bag's only image topic")
    p.add_argument("--gt-topic", default=AUTO,
                   help=f"carpose_msgs/CarPoseArray ground truth (default: {GT_TOPIC} if present; 'none': ignore)")
    p.add_argument("--mode", choices=MODES, default="live")
    p.add_argument("--rate", type=float, default=1.0,
                   help="live replay speed relative to the recording; 0 = next frame when the node answered")
    p.add_argument("--out", default="runs/bag_eval")
    p.add_argument("--pose-model", default=str(DEFAULT_POSE_MODEL))
    p.add_argument("--det-model", default=str(DEFAULT_DET_MODEL),
                   help="'none': every frame is one car; 'gt' (offline): ground-truth boxes, the pose CNN alone")
    p.add_argument("--det-conf", type=float, default=0.35)
    p.add_argument("--det-iou", type=float, default=0.5)
    p.add_argument("--det-imgsz", type=int, default=640)
    p.add_argument("--max-frames", type=int, help="only the first N frames")
    p.add_argument("--frame-timeout", type=float, default=10.0, help="back-pressure wait per frame (s)")
    p.add_argument("--start-timeout", type=float, default=180.0, help="wait for the node to become active (s)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID for the node and the replay (default: private)")
    p.add_argument("--fallback-offline", action="store_true", help="if the node cannot start, evaluate offline")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--qos", choices=("best_effort", "reliable"), default="best_effort",
                   help="reliability of the replayed image stream (default: best effort, like camera drivers)")
    a = p.parse_args(argv)
    cfg = EvalConfig(a.bag, a.image_topic, None if a.gt_topic.lower() == "none" else a.gt_topic, a.mode, a.rate,
                     a.out, a.pose_model, a.det_model, a.det_conf, a.det_iou, a.det_imgsz, a.frame_timeout,
                     a.start_timeout, a.domain_id, a.max_frames, not a.no_video, a.fallback_offline, not a.quiet, a.qos)
    try:
        r = evaluate(cfg)
    except NodeError as exc:
        print(f"carpose-bag-eval: {exc}", file=sys.stderr)
        return 3
    except (BagError, FileNotFoundError, ValueError) as exc:
        print(f"carpose-bag-eval: {exc}", file=sys.stderr)
        return 2
    print(r["table"])
    if r["agreement"] is not None:
        ag = r["agreement"]
        print(f"live vs offline: max azimuth difference {ag['max_azimuth_diff_deg']:.4f} deg over "
              f"{ag['cars_compared']} cars: {'agree' if ag['agree'] else 'DISAGREE'}")
    for note in r["notes"]:
        print(f"note: {note.splitlines()[0]}")
    print(f"report: {r['report_md']}\njson:   {r['report_json']}")
    for name, path in r["files"].items():
        if path is not None:
            print(f"{name}: {path}")
    return 0 if r["agreement"] is None or r["agreement"]["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
