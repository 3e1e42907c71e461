"""Car detector: ultralytics YOLO through its own API, made strictly offline, plus a way to plug in
boxes from any other detector.

Why offline matters: the node runs on robots without internet, and ultralytics would otherwise
probe DNS on import, send analytics, try to pip-install missing packages and download weights or
fonts by name. A stalled network call in a perception loop is a missed frame, so all of that is
switched off before ultralytics is imported (see :func:`make_ultralytics_offline`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from carpose.results import Detection
from carpose.shipped import missing_model_message

log = logging.getLogger(__name__)

#: COCO ids of road vehicles, for users who also want buses and trucks: ``classes=COCO_VEHICLES``.
COCO_CAR_ID = 2
COCO_VEHICLES: dict[int, str] = {2: "car", 5: "bus", 7: "truck"}


def _check_font_offline(font: str = "Arial.ttf") -> Path | None:
    """Stand-in for ultralytics' ``check_font``: use a font already on disk, never download one."""
    from ultralytics.utils import USER_CONFIG_DIR

    file = USER_CONFIG_DIR / Path(font).name
    return file if file.exists() else None  # None: PIL falls back to its built-in font


def make_ultralytics_offline() -> None:
    """Switch off every network access of ultralytics that detection could reach. Idempotent.

    What is turned off and why:

    * ``YOLO_OFFLINE=1``: ultralytics computes ``ONLINE`` at import with a DNS lookup of
      one.one.one.one / dns.google (a stall of seconds without a resolver). Offline it skips that,
      and everything gated on ``ONLINE`` goes quiet: Google-Analytics events sent after every
      predict/export, Sentry error reports, the PyPI "update available" check and pip AutoUpdate.
    * ``YOLO_AUTOINSTALL=false``: ``check_requirements`` (e.g. 'onnxruntime-gpu' for an ONNX model
      on CUDA, 'onnxslim' for export) must never run pip at runtime; it warns and we carry on.
    * If ultralytics was already imported (by someone else, without the variables), the module
      constants read at import (``ONLINE``, ``AUTOINSTALL``) and the analytics switch are patched too.
    * ``check_font`` would download Arial.ttf from GitHub when ultralytics plots; carpose never
      calls ultralytics plotting (``draw.py`` uses OpenCV), but it is replaced by a local-only lookup
      so a stray ``Results.plot()`` cannot reach the network either.
    * Weights downloads (``attempt_download_asset`` for names like 'yolo11n.pt') are prevented by
      :class:`YoloDetector`, which only ever hands ultralytics an existing absolute file path.

    The user's settings file (``~/.config/Ultralytics/settings.json``) is not rewritten: the
    'sync' flag is cleared in memory only, so other projects of the same user keep their choice.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    if "ultralytics.utils" not in sys.modules:
        return  # the variables take effect when ultralytics is imported
    import ultralytics.utils as uutils
    import ultralytics.utils.checks as uchecks

    uutils.ONLINE = False
    uutils.AUTOINSTALL = False
    uchecks.ONLINE = False
    uchecks.AUTOINSTALL = False
    dict.__setitem__(uutils.SETTINGS, "sync", False)  # bypasses JSONDict's save: memory only
    events_mod = sys.modules.get("ultralytics.utils.events")
    if events_mod is not None:
        events_mod.ONLINE = False
        events_mod.events.enabled = False
    uchecks.check_font = _check_font_offline
    for name in ("ultralytics.utils.plotting", "ultralytics.data.utils"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "check_font"):
            mod.check_font = _check_font_offline


make_ultralytics_offline()  # the env vars must be set before anything imports ultralytics


class Detector(Protocol):
    """What the pipeline needs from a detector: boxes of one BGR image."""

    def detect(self, image_bgr: np.ndarray) -> list[Detection]: ...


def _check_image(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
            or image_bgr.dtype != np.uint8:
        shape = getattr(image_bgr, "shape", None)
        raise ValueError(f"detect needs an HxWx3 uint8 BGR image, got {getattr(image_bgr, 'dtype', type(image_bgr))} "
                         f"{shape}")


def _check_threshold(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass
class DetectorConfig:
    """How the YOLO detector runs. ``classes`` maps model class id -> our class name; None picks
    it from the model's own names (see :func:`default_class_map`)."""

    weights: str | Path = "yolo11n.pt"
    classes: dict[int, str] | None = None
    conf: float = 0.25
    iou: float = 0.5
    # None (or 0): the model's own size, see YoloDetector. Else the long side, or a (height, width) box
    # the frame is fitted into; a fixed-size ONNX always runs at its own shape.
    imgsz: int | tuple[int, int] | None = None
    max_det: int = 100
    device: str = "auto"  # 'auto', 'cpu', 'cuda:0', ...
    half: bool = False  # FP16 inference on CUDA (.pt weights); exported engines fix their own precision
    extra: dict = field(default_factory=dict)  # passed through to ultralytics' predict, e.g. {'agnostic_nms': True}

    def __post_init__(self) -> None:
        self.conf = _check_threshold("conf", self.conf)
        self.iou = _check_threshold("iou", self.iou)
        if isinstance(self.imgsz, (tuple, list)):
            self.imgsz = (int(self.imgsz[0]), int(self.imgsz[1]))
        elif not self.imgsz:
            self.imgsz = None  # 0 (a ROS integer parameter cannot be None): the model's own size
        if self.imgsz is not None and min(self.imgsz if isinstance(self.imgsz, tuple) else (self.imgsz,)) < 32:
            raise ValueError(f"imgsz must be >= 32, got {self.imgsz}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")


#: Class names that are passenger cars (lower case; '_' and '-' read as spaces, 'mini van' as
#: 'minivan'). COCO's 'truck' and 'bus' are not among them: a COCO 'truck' is as often a lorry as a
#: pickup (pass ``classes=COCO_VEHICLES`` / ``--det-classes`` to take them too).
CAR_LIKE_NAMES = frozenset({"car", "cars", "passenger car", "vehicle.car", "sedan", "hatchback", "suv",
                            "minivan", "van", "pickup", "pickup truck", "taxi", "coupe", "wagon"})


def default_class_map(model_names: Mapping[int, str]) -> dict[int, str]:
    """Which model classes count as cars when the user did not say.

    A model trained on our synthetic scenes has ``{0: 'car'}``; COCO models have 'car' at id 2, so
    COCO weights (``yolo11n.pt``...) work with no class option. When any class is named 'car',
    every car-like class (:data:`CAR_LIKE_NAMES`: 'car', 'van', 'suv', 'pickup'...) is used and
    reported as 'car'; a single-class model is taken to detect cars whatever its label says.
    Anything else is ambiguous and must be configured explicitly.
    """
    names = {int(k): str(v) for k, v in model_names.items()}
    norm = {k: " ".join(v.strip().lower().replace("_", " ").replace("-", " ").split()) for k, v in names.items()}
    if "car" in norm.values():
        cars = {k: "car" for k, v in norm.items() if v in CAR_LIKE_NAMES or v.replace(" ", "") in CAR_LIKE_NAMES}
        if len(names) > 1:
            log.info("detector classes used as cars: %s", {k: names[k] for k in cars})
        return cars
    if len(names) == 1:
        (only,) = names
        log.warning("single-class detector with class %r: treating it as 'car'", names[only])
        return {only: "car"}
    raise ValueError(f"the detector has no class named 'car' (names: {dict(list(names.items())[:10])}...); "
                     "set DetectorConfig.classes, e.g. {2: 'car'}")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' when CUDA is usable, else 'cpu'; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _resolve_weights(weights: str | Path) -> Path:
    """Absolute path of an existing weights file; never a name for ultralytics to download."""
    p = Path(weights).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"detector weights not found: {missing_model_message(p.resolve())}. carpose never downloads "
            "weights: pass the path of a local .pt/.onnx/.engine file (e.g. fetch yolo11n.pt once with "
            "network access and copy it next to the node).")
    if p.suffix.lower() not in {".pt", ".onnx", ".engine"}:
        raise ValueError(f"unsupported detector weights '{p}': expected a .pt, .onnx or .engine file")
    return p.resolve()


#: ONNX metadata key under which ``carpose-train-det`` records what a detector was trained on.
PROVENANCE_KEY = "carpose_provenance"


def detector_provenance(weights: str | Path) -> dict:
    """What an exported detector says it was trained on (``train_backgrounds``,
    ``pseudo_labelled_photos``, ``chosen_on``); empty for other files or older exports."""
    path = Path(weights)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return {}
    import json

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    try:
        return json.loads(meta.get(PROVENANCE_KEY, "{}"))
    except json.JSONDecodeError:
        return {}


#: Input side for a model that says nothing of its own (a .pt, a dynamic ONNX without ultralytics' metadata).
DEFAULT_IMGSZ = 640


def _as_size(hw: list[int] | tuple[int, int]) -> int | tuple[int, int]:
    return int(hw[0]) if hw[0] == hw[1] else (int(hw[0]), int(hw[1]))


def size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an input size given as a side or as (height, width)."""
    return (size, size) if isinstance(size, int) else size


def onnx_input_size(path: Path) -> tuple[int | tuple[int, int] | None, bool]:
    """(size, fixed) of an ONNX detector's input; (None, False) for other files or unreadable ones.

    * Exported at a fixed size: that size (the side when square, (height, width) when rectangular)
      and ``fixed`` True: ONNX Runtime accepts nothing else.
    * Exported with a dynamic height and width: the size it was exported for (ultralytics writes it
      into the metadata as ``imgsz``), ``fixed`` False. ultralytics then fits each frame into that
      box keeping its aspect and pads only to a multiple of 32, so a wide camera (KITTI's 1242 x 375 in
      a 352 x 640 box: 224 x 640) or a 4:3 one (640 x 480: 352 x 480) spends no compute on padding,
      at the same scale a fixed 352 x 640 input would give it.
    """
    if path.suffix.lower() != ".onnx":
        return None, False
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not readable here: ultralytics will report the real problem
        return None, False
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    hw = [d.dim_value if d.HasField("dim_value") else 0 for d in dims[2:4]]
    if len(hw) == 2 and min(hw) > 0:
        return _as_size(hw), True
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        box = [int(v) for v in meta.get("imgsz", "").strip("[]() ").split(",")]
    except ValueError:
        return None, False
    return (_as_size(box), False) if len(box) == 2 and min(box) >= 32 else (None, False)


class YoloDetector:
    """Ultralytics YOLO (.pt / .onnx / .engine) returning :class:`Detection` boxes of our classes."""

    def __init__(self, config: DetectorConfig) -> None:
        self.weights = _resolve_weights(config.weights)
        make_ultralytics_offline()  # again, in case ultralytics was imported since this module was
        from ultralytics import YOLO

        self.device = resolve_device(config.device)
        # task='detect': exported models carry it in metadata, but guessing from the file name warns.
        self.model = YOLO(str(self.weights), task="detect", verbose=False)
        self.config = replace(config, classes=None)
        own, fixed = onnx_input_size(self.weights)
        if fixed and own != self.config.imgsz:
            # An ONNX exported at a fixed size only accepts that size; asking for another would
            # fail at the first frame. Use the model's own size and say so.
            if self.config.imgsz is not None:
                log.info("%s takes %s px input: using it instead of imgsz=%s", self.weights.name, own,
                         self.config.imgsz)
            self.config.imgsz = own
        elif self.config.imgsz is None:
            self.config.imgsz = own or DEFAULT_IMGSZ
        # One dummy frame sets up the backend on our device now: exported models (.onnx/.engine) only
        # know their class names once loaded, and the first real frame should not pay for the setup.
        h, w = self.input_hw
        self._predict(np.full((h, w, 3), 114, np.uint8), classes=None)
        self.model_names: dict[int, str] = {int(k): str(v) for k, v in (self.model.names or {}).items()}
        classes = dict(config.classes) if config.classes is not None else default_class_map(self.model_names)
        if not classes:
            raise ValueError("DetectorConfig.classes is empty: nothing would ever be detected")
        unknown = [c for c in classes if self.model_names and c not in self.model_names]
        if unknown:
            raise ValueError(f"class ids {unknown} are not in the model (it has {len(self.model_names)} classes)")
        self.config.classes = classes

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the network input (letterboxed); the largest one when the input follows
        each frame's aspect (:meth:`network_hw`)."""
        return size_hw(self.config.imgsz)

    @property
    def follows_aspect(self) -> bool:
        """True when each frame's input keeps its aspect, padded only to a multiple of 32 (a .pt or a
        dynamic ONNX), False for a fixed input shape (ultralytics' own rule, ``pre_transform``)."""
        backend = self.model.predictor.model
        return backend.format == "pt" or bool(getattr(backend, "dynamic", False))

    def network_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the tensor the network gets for a frame of ``frame_hw``."""
        if not self.follows_aspect:
            return self.input_hw
        from ultralytics.data.augment import LetterBox

        stride = int(self.model.predictor.model.stride)
        return LetterBox(self.input_hw, auto=True, stride=stride)(image=np.zeros((*frame_hw, 3), np.uint8)).shape[:2]

    @property
    def classes(self) -> dict[int, str]:
        return dict(self.config.classes or {})

    def set_thresholds(self, conf: float | None = None, iou: float | None = None) -> None:
        """Change the score / NMS thresholds at runtime (e.g. from a ROS parameter callback)."""
        if conf is not None:
            self.config.conf = _check_threshold("conf", conf)
        if iou is not None:
            self.config.iou = _check_threshold("iou", iou)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Boxes of the configured classes in input pixel coordinates, best score first."""
        _check_image(image_bgr)
        cfg = self.config
        classes = cfg.classes or {}
        boxes = self._predict(image_bgr, classes=sorted(classes))
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = boxes.conf.cpu().numpy().astype(np.float64)
        cls = boxes.cls.cpu().numpy().astype(np.int64)
        h, w = image_bgr.shape[:2]
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0.0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0.0, h)
        out = []
        for i in np.argsort(-scores, kind="stable"):
            c = int(cls[i])
            if c not in classes or scores[i] < cfg.conf:
                continue
            if xyxy[i, 2] <= xyxy[i, 0] or xyxy[i, 3] <= xyxy[i, 1]:
                continue  # degenerate after clipping: nothing to crop
            out.append(Detection(box_xyxy=xyxy[i].copy(), score=float(scores[i]), class_id=c, class_name=classes[c]))
        return out

    def _predict(self, image_bgr: np.ndarray, classes: list[int] | None):  # -> ultralytics Boxes | None
        cfg = self.config
        precision = {"quantize": 16} if cfg.half else {}  # this ultralytics deprecates half=True for quantize=16
        results = self.model.predict(
            image_bgr, conf=cfg.conf, iou=cfg.iou, imgsz=cfg.imgsz, max_det=cfg.max_det, device=self.device,
            classes=classes, verbose=False, save=False, **precision, **cfg.extra)
        return results[0].boxes

    def warmup(self, height: int = 480, width: int = 640) -> None:
        """Run one dummy frame so the first real frame does not pay for setup (CUDA context, graph)."""
        self.detect(np.full((height, width, 3), 114, np.uint8))


def detections_from_array(boxes: np.ndarray | list, class_names: Mapping[int, str] | None = None,
                          default_class_id: int = COCO_CAR_ID, min_score: float = 0.0,
                          image_shape: tuple[int, ...] | None = None, strict: bool = True) -> list[Detection]:
    """User-supplied boxes -> :class:`Detection` list, so any detector can feed the pose stage.

    Rows are ``x1 y1 x2 y2`` (score 1), ``x1 y1 x2 y2 score`` or ``x1 y1 x2 y2 score class_id``, in
    image pixels. ``class_names`` names the class ids (default: every box is a 'car'); rows whose id
    is not in a given ``class_names`` are dropped, as are rows below ``min_score``. With
    ``image_shape`` boxes are clipped to the image and boxes left empty are dropped. Malformed rows
    (non-finite, x2 <= x1, y2 <= y1) raise, because they point at a bug upstream; with
    ``strict=False`` they are passed on unjudged (a non-finite class id becomes the default) for a
    caller that skips and reports them itself (``carpose.pipeline.sanitize_boxes``).
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return []
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5, 6):
        raise ValueError(f"boxes must be rows of x1 y1 x2 y2 [score [class_id]] (Nx4, Nx5 or Nx6), got {arr.shape}")
    if strict:
        if not np.all(np.isfinite(arr)):
            raise ValueError("boxes contain non-finite values")
        bad = np.nonzero((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))[0]
        if bad.size:
            raise ValueError(f"boxes must have x2 > x1 and y2 > y1; rows {bad.tolist()} do not")
    scores = arr[:, 4] if arr.shape[1] >= 5 else np.ones(len(arr))
    cls_col = arr[:, 5] if arr.shape[1] == 6 else np.full(len(arr), float(default_class_id))
    cls = np.where(np.isfinite(cls_col), cls_col, default_class_id).astype(np.int64)
    xyxy = arr[:, :4].copy()
    if image_shape is not None:
        h, w = image_shape[:2]
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0.0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0.0, h)
    out = []
    for i in range(len(arr)):
        c = int(cls[i])
        if class_names is not None and c not in class_names:
            continue
        if scores[i] < min_score:
            continue
        if image_shape is not None and (xyxy[i, 2] <= xyxy[i, 0] or xyxy[i, 3] <= xyxy[i, 1]):
            continue  # emptied by clipping (malformed rows raised above, or pass on with strict=False)
        name = class_names[c] if class_names is not None else "car"
        out.append(Detection(box_xyxy=xyxy[i], score=float(scores[i]), class_id=c, class_name=name))
    return out


class ExternalBoxes:
    """A 'detector' that returns boxes someone else found: call :meth:`set_boxes` before each frame.

    It has the same ``detect`` / ``set_thresholds`` interface as :class:`YoloDetector`, so the
    pipeline and the node need no special case for user-supplied boxes.
    """

    def __init__(self, class_names: Mapping[int, str] | None = None, default_class_id: int = COCO_CAR_ID,
                 conf: float = 0.0) -> None:
        self.class_names = dict(class_names) if class_names is not None else None
        self.default_class_id = default_class_id
        self.conf = _check_threshold("conf", conf)
        self._boxes = np.zeros((0, 4))

    def set_boxes(self, boxes: np.ndarray | list) -> None:
        self._boxes = np.asarray(boxes, dtype=np.float64)

    def set_thresholds(self, conf: float | None = None, iou: float | None = None) -> None:
        """``conf`` filters the supplied scores; ``iou`` is accepted and ignored (no NMS here)."""
        if conf is not None:
            self.conf = _check_threshold("conf", conf)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """The boxes given to :meth:`set_boxes`, clipped to this image."""
        _check_image(image_bgr)
        return detections_from_array(self._boxes, self.class_names, self.default_class_id, self.conf,
                                     image_bgr.shape)
