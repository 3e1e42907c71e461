"""The runtime core: image -> detect -> crop -> estimate -> (smooth) -> results, with timings.

Plain Python, no ROS import: the ROS 2 node, ``carpose-infer``, the rosbag evaluation and the
benchmarks are thin callers of :class:`Pipeline`. All crops of a frame go to the pose model in one
batch. Bad input never crashes the caller with an obscure error: a wrong image raises a
``ValueError`` that says what was expected, and boxes that cannot be used (non-finite, outside the
image, too small) are skipped and reported in ``FrameResult.skipped`` with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from carpose.pose import PoseEstimator
from carpose.results import CarPoseResult, Detection, FrameResult
from carpose.row_prior import row_prior
from carpose.shipped import DET_MODEL, DET_MODEL_INT8, POSE_MODEL, SOURCE_ROOT, default_model_path

REPO = SOURCE_ROOT
#: The shipped models (models/README.md): a pose CNN and a car detector, both trained on renders;
#: found in the package share, the install prefix or the source tree (carpose.shipped).
DEFAULT_POSE_MODEL = default_model_path(POSE_MODEL)
DEFAULT_DET_MODEL = default_model_path(DET_MODEL)
#: Metadata key of an INT8 detector: how it was made, and the sha256 of the float file it came from.
INT8_KEY = "carpose_int8"


def detector_file(weights: str | Path | None, device: str, int8: bool = True) -> str | Path | None:
    """The file the detector runs: on a CPU, the INT8 twin that ``carpose-det-int8`` wrote beside a
    float detector (``carpose_det_int8.onnx`` beside the shipped ``carpose_det.onnx``: the same AP,
    about 0.65x the time, models/README.md "INT8"); anything else as given.

    The twin is used only if it says it was made from exactly this float file (sha256 in its
    metadata), so a retrained float detector is never shadowed by a stale twin. The pipeline asks
    for the twin only with ``PipelineConfig.det_int8`` (ROS ``det_int8:=true``, ``--det-int8``): it
    is off by default because on the real validation frames it finds one or two cars fewer.
    """
    if not int8 or weights is None:
        return weights
    path = Path(weights)
    twin = path.with_name(DET_MODEL_INT8)
    if path.name != DET_MODEL or not twin.is_file() or not path.is_file():
        return weights
    from carpose.detect import resolve_device

    if resolve_device(device) != "cpu":
        return weights  # GPUs run the float network (ONNX Runtime CUDA or a TensorRT engine)
    import hashlib
    import json
    import logging

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(twin), load_external_data=False).metadata_props}
    made_from = json.loads(meta.get(INT8_KEY, "{}")).get("from_sha256")
    if made_from != hashlib.sha256(path.read_bytes()).hexdigest():
        logging.getLogger(__name__).warning(
            "%s was not made from %s (stale after retraining?): running the float detector; remake it with "
            "carpose-det-int8", twin, path)
        return weights
    return twin


@dataclass
class PipelineConfig:
    pose_model: str | Path = DEFAULT_POSE_MODEL
    pose_backend: str = "auto"  # auto | onnxruntime | tensorrt | torch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    detector_weights: str | Path | None = DEFAULT_DET_MODEL  # None: boxes come from the caller
    detector_classes: dict[int, str] | None = None  # model class id -> name; None: from the model
    det_conf: float = 0.35
    det_iou: float = 0.5
    det_imgsz: int = 0  # 0: the detector's own input size (carpose.detect.YoloDetector)
    det_int8: bool = False  # True: on a CPU, the INT8 twin of the shipped detector (detector_file)
    max_cars: int = 64
    min_box_px: float = 6.0  # boxes narrower or lower than this are skipped
    # A grey_nearer pose model (carpose.crop) greys the nearer boxes of the frame scoring at least this;
    # None: every box the pipeline keeps. Evaluation, which detects down to a score of 0.01 for its PR
    # curves, sets the runtime's det_conf here so that its crops are the runtime's.
    occluder_conf: float | None = None
    # A car hidden behind a nearer one mixes in that car's heading by the share hidden (carpose.row_prior);
    # the lenders are the boxes of occluder_conf. False: every car as the network alone reads it.
    row_prior: bool = True
    return_probs: bool = False
    smoothing: bool = False  # per-track circular filter (carpose.track), off by default
    smoothing_alpha: float = 0.5
    extra: dict = field(default_factory=dict)


def as_bgr8(image: np.ndarray) -> np.ndarray:
    """Accept HxW (mono), HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8; return contiguous HxWx3 BGR."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (8-bit BGR), got {image.dtype}; convert it first")
    if image.size == 0 or image.ndim not in (2, 3) or min(image.shape[:2]) < 2:
        raise ValueError(f"image is empty or not 2-D: shape {image.shape}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] != 3:
        raise ValueError(f"image must have 1, 3 or 4 channels, got {image.shape[2]}")
    return np.ascontiguousarray(image)


def sanitize_boxes(dets: list[Detection], width: int, height: int, min_px: float
                   ) -> tuple[list[Detection], list[tuple[np.ndarray, str]]]:
    """Clip boxes to the image; drop non-finite, outside and tiny ones with a reason."""
    kept, skipped = [], []
    for d in dets:
        b = np.asarray(d.box_xyxy, np.float64).reshape(-1)
        if b.size != 4 or not np.all(np.isfinite(b)) or not np.isfinite(d.score):
            skipped.append((b, "non-finite box or score"))
            continue
        c = np.clip(b, [0, 0, 0, 0], [width, height, width, height])
        if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
            skipped.append((b, "outside the image or empty"))
            continue
        if c[2] - c[0] < min_px or c[3] - c[1] < min_px:
            skipped.append((b, f"smaller than {min_px:g} px"))
            continue
        kept.append(Detection(c, float(d.score), d.class_id, d.class_name))
    return kept, skipped


def boxes_to_detections(boxes: list[Detection] | np.ndarray) -> list[Detection]:
    """Caller-supplied boxes: Detections as they are, or rows x1 y1 x2 y2 [score [class_id]].
    Rows are not judged here: :func:`sanitize_boxes` skips bad ones with a reason."""
    if isinstance(boxes, list) and all(isinstance(b, Detection) for b in boxes):
        return list(boxes)
    from carpose.detect import detections_from_array

    return detections_from_array(boxes, strict=False)


class Pipeline:
    """``Pipeline(config).process(image_bgr) -> FrameResult``."""

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = cfg = config or PipelineConfig()
        # Load the pose model first: it is the one every mode needs, and a bad file fails here.
        self.pose = PoseEstimator(cfg.pose_model, backend=cfg.pose_backend, device=cfg.device)
        self.detector = None
        if cfg.detector_weights is not None:
            from carpose.detect import DetectorConfig, YoloDetector

            self.detector = YoloDetector(DetectorConfig(
                weights=detector_file(cfg.detector_weights, cfg.device, cfg.det_int8),
                classes=cfg.detector_classes, conf=cfg.det_conf, iou=cfg.det_iou,
                imgsz=cfg.det_imgsz, max_det=cfg.max_cars, device=cfg.device))
        self.tracker = None
        if cfg.smoothing:
            from carpose.track import IouTracker

            self.tracker = IouTracker(alpha=cfg.smoothing_alpha)

    def set_thresholds(self, conf: float | None = None, iou: float | None = None) -> None:
        """Change detector thresholds at run time (the node's dynamic parameters)."""
        if self.detector is not None:
            self.detector.set_thresholds(conf=conf, iou=iou)
        if conf is not None:
            self.config.det_conf = conf
        if iou is not None:
            self.config.det_iou = iou

    def set_smoothing(self, on: bool) -> None:
        from carpose.track import IouTracker

        self.config.smoothing = on
        self.tracker = IouTracker(alpha=self.config.smoothing_alpha) if on else None

    def process(self, image: np.ndarray, boxes: list[Detection] | np.ndarray | None = None) -> FrameResult:
        """Run the whole chain on one frame. ``boxes`` (Detections, or an Nx4/5/6 array of
        x1 y1 x2 y2 [score [class]]) replaces the detector for this frame."""
        t = {}
        t0 = time.perf_counter()
        img = as_bgr8(image)
        h, w = img.shape[:2]
        if boxes is not None:
            dets = boxes_to_detections(boxes)
        elif self.detector is not None:
            dets = self.detector.detect(img)
        else:
            raise ValueError("this pipeline has no detector (detector_weights=None): pass boxes=")
        t1 = time.perf_counter()
        t["detect"] = (t1 - t0) * 1000
        dets, skipped = sanitize_boxes(dets, w, h, self.config.min_box_px)
        if len(dets) > self.config.max_cars:
            dets = sorted(dets, key=lambda d: -d.score)
            skipped += [(d.box_xyxy, f"more than max_cars={self.config.max_cars}") for d in dets[self.config.max_cars:]]
            dets = dets[: self.config.max_cars]
        s = self.pose.input_size
        boxes = np.array([d.box_xyxy for d in dets], np.float64).reshape(-1, 4)
        oc = self.config.occluder_conf
        lenders = np.array([oc is None or d.score >= oc for d in dets], bool).reshape(-1)
        crops = self.pose.crops(img, boxes, boxes[lenders])
        t2 = time.perf_counter()
        t["crop"] = (t2 - t1) * 1000
        pred = self.pose.predict(crops)
        if self.config.row_prior and len(boxes) > 1:
            pred = self.pose.decode(row_prior(boxes, pred.probs, lenders))
        t3 = time.perf_counter()
        t["pose"] = (t3 - t2) * 1000
        cars = [CarPoseResult(d.box_xyxy, d.score, d.class_id, d.class_name, float(pred.azimuth_deg[i]),
                              float(pred.confidence[i]), s, pred.probs[i] if self.config.return_probs else None)
                for i, d in enumerate(dets)]
        if self.tracker is not None:
            cars = self.tracker.update(cars)
        t["track"] = (time.perf_counter() - t3) * 1000
        t["total"] = (time.perf_counter() - t0) * 1000
        return FrameResult(cars, t, skipped, w, h)
