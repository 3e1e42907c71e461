"""The one crop function shared by the renderer (training crops) and the runtime (detector boxes).

Why shared: a pose CNN is only as good as the match between the crops it was trained on and the
crops it is fed. Context padding, squaring and border fill must be identical in both places, so
both import :func:`crop_box` from here and a test checks they agree.

Recipe: take the box (x1, y1, x2, y2) in pixels, grow it by ``context`` of its larger side on every
side, make it square around its centre (the car keeps its aspect ratio, no stretching), cut it out
of the image padding anything outside the image with a constant grey, and resize to ``size``.

Nearer cars (``CropSpec.occluders = "grey_nearer"``, issue 21): in a parked row the crop of a car is
often filled by the nearer car in front of it, whose front the pose CNN then reads. A model trained so
paints, in each crop, the boxes of the other cars of the frame that overlap the car's box and stand
nearer (their bottom edge lower in the image: a road camera) with the fill grey, and learns from what
is left. :func:`crop_boxes` cuts all cars of a frame that way; training composites grey their nearer
neighbour's box the same way (training/pose/composite.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: What a crop does with the other cars of its frame: ``none`` (the car's window as it is) or
#: ``grey_nearer`` (the boxes of overlapping nearer cars painted with the fill; :func:`nearer_boxes`).
OCCLUDER_MODES = ("none", "grey_nearer")


@dataclass(frozen=True)
class CropSpec:
    """How crops are made; stored in every HDF5 file and model so runtime and training agree."""

    size: int = 128
    context: float = 0.1
    fill: int = 114  # the letterbox grey of ultralytics: cars cut by the image edge look alike
    occluders: str = "none"  # OCCLUDER_MODES; models and files from before it are "none"

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"crop size must be >= 8 px, got {self.size}")
        if not 0.0 <= self.context <= 1.0:
            raise ValueError(f"crop context must be in [0, 1], got {self.context}")
        if not 0 <= self.fill <= 255:
            raise ValueError(f"crop fill must be in [0, 255], got {self.fill}")
        if self.occluders not in OCCLUDER_MODES:
            raise ValueError(f"crop occluders must be one of {OCCLUDER_MODES}, got {self.occluders!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        """The spec of a model's or dataset's ``crop`` record (extra keys ignored; no ``occluders``: none)."""
        return cls(size=int(d["size"]), context=float(d["context"]), fill=int(d["fill"]),
                   occluders=str(d.get("occluders", "none")))


def crop_region(box_xyxy: np.ndarray | tuple, spec: CropSpec) -> np.ndarray:
    """Square region (x1, y1, x2, y2), float, in image pixels that :func:`crop_box` cuts out."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x1, y1, x2, y2])):
        raise ValueError(f"box has non-finite coordinates: {box_xyxy}")
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        raise ValueError(f"box must have positive width and height, got {box_xyxy}")
    side = max(w, h) * (1.0 + 2.0 * spec.context)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def crop_box(image: np.ndarray, box_xyxy: np.ndarray | tuple, spec: CropSpec,
             grey: np.ndarray | None = None) -> np.ndarray:
    """Cut the car in ``box_xyxy`` out of ``image`` (HxWx3 uint8) as a ``spec.size`` square crop; the
    boxes ``grey`` (N x 4, image pixels; :func:`nearer_boxes`) painted with ``spec.fill`` first, in the
    crop only (the image is not touched)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"crop_box needs an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    rx1, ry1, rx2, ry2 = crop_region(box_xyxy, spec)
    # Integer pixel window (at least 1 px), then pad what lies outside the image.
    ix1, iy1 = int(np.floor(rx1)), int(np.floor(ry1))
    side = max(1, int(round(rx2 - rx1)))
    ix2, iy2 = ix1 + side, iy1 + side
    h, w = image.shape[:2]
    cx1, cy1, cx2, cy2 = max(ix1, 0), max(iy1, 0), min(ix2, w), min(iy2, h)
    if cx1 >= cx2 or cy1 >= cy2:
        raise ValueError(f"box {tuple(box_xyxy)} lies entirely outside the {w}x{h} image")
    window = image[cy1:cy2, cx1:cx2]
    if grey is not None and len(grey):
        window = window.copy()
        for gx1, gy1, gx2, gy2 in np.asarray(grey, np.float64).reshape(-1, 4):
            ax1, ay1 = max(int(np.floor(gx1)) - cx1, 0), max(int(np.floor(gy1)) - cy1, 0)
            ax2, ay2 = min(int(np.ceil(gx2)) - cx1, cx2 - cx1), min(int(np.ceil(gy2)) - cy1, cy2 - cy1)
            if ax1 < ax2 and ay1 < ay2:
                window[ay1:ay2, ax1:ax2] = spec.fill
    pad = (cy1 - iy1, iy2 - cy2, cx1 - ix1, ix2 - cx2)
    if any(pad):
        window = cv2.copyMakeBorder(window, *pad, cv2.BORDER_CONSTANT, value=(spec.fill,) * 3)
    interp = cv2.INTER_AREA if side > spec.size else cv2.INTER_LINEAR
    return cv2.resize(window, (spec.size, spec.size), interpolation=interp)


#: A box stands nearer than a car when its bottom edge lies at least this share of the car's height
#: lower (two boxes of one car from a detector differ by a few pixels, not by a tenth of its height).
NEARER_MARGIN = 0.05
#: A nearer box that covers at least this share of the car's own box is not greyed: the car is then
#: seen over or through it (KITTI 000047#3: a near car's box holds the whole parked car behind), or the
#: box is the same car boxed twice, larger; greying it would leave nothing of the car.
MAX_GREY_COVER = 0.9


def box_cover(box_xyxy: np.ndarray | tuple, frame_boxes: np.ndarray) -> np.ndarray:
    """The share of ``box_xyxy``'s area that each of ``frame_boxes`` (N x 4) overlaps on its own (N,)."""
    b = np.asarray(frame_boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    iw = np.clip(np.minimum(b[:, 2], x2) - np.maximum(b[:, 0], x1), 0, None)
    ih = np.clip(np.minimum(b[:, 3], y2) - np.maximum(b[:, 1], y1), 0, None)
    return iw * ih / max((x2 - x1) * (y2 - y1), 1e-9)


def nearer_mask(box_xyxy: np.ndarray | tuple, frame_boxes: np.ndarray) -> np.ndarray:
    """Which of ``frame_boxes`` (N x 4, the frame's cars, the car itself may be among them) overlap
    ``box_xyxy`` and stand nearer the camera than it: their bottom edge lower in the image (wheels on
    the road nearer a road camera) by ``NEARER_MARGIN`` of its height, covering less than
    ``MAX_GREY_COVER`` of its box (N,) bool."""
    b = np.asarray(frame_boxes, np.float64).reshape(-1, 4)
    y1, y2 = float(box_xyxy[1]), float(box_xyxy[3])
    cover = box_cover(box_xyxy, b)
    return (cover > 0) & (b[:, 3] > y2 + NEARER_MARGIN * (y2 - y1)) & (cover < MAX_GREY_COVER)


def nearer_boxes(box_xyxy: np.ndarray | tuple, frame_boxes: np.ndarray) -> np.ndarray:
    """The boxes of ``frame_boxes`` that :func:`nearer_mask` picks. What a ``grey_nearer`` crop of the
    car paints grey: in a parked row, the car in front whose front would otherwise fill the crop."""
    b = np.asarray(frame_boxes, np.float64).reshape(-1, 4)
    return b[nearer_mask(box_xyxy, b)]


def hidden_share(box_xyxy: np.ndarray | tuple, frame_boxes: np.ndarray) -> float:
    """The share (0..1) of the car's box that the boxes of its nearer overlapping cars
    (:func:`nearer_boxes`) cover together: what a ``grey_nearer`` crop paints over of the car. Why: the
    pose reports split the cars by it, since a car mostly behind a nearer one leaves little to read
    however it is cut."""
    return union_cover(box_xyxy, nearer_boxes(box_xyxy, frame_boxes))


def union_cover(box_xyxy: np.ndarray | tuple, rects: np.ndarray) -> float:
    """The share (0..1) of ``box_xyxy``'s area that ``rects`` (N x 4) cover together, each place counted
    once. Exact: the union of rectangles on the grid of their edges."""
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    if not len(rects):
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    c = np.clip(rects, [x1, y1, x1, y1], [x2, y2, x2, y2])
    xs, ys = np.unique(np.r_[x1, x2, c[:, 0], c[:, 2]]), np.unique(np.r_[y1, y2, c[:, 1], c[:, 3]])
    mx, my = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2  # one point inside each grid cell
    inside = ((c[:, 0, None, None] <= mx) & (mx <= c[:, 2, None, None])
              & (c[:, 1, None, None] <= my[:, None]) & (my[:, None] <= c[:, 3, None, None])).any(0)
    return float((np.diff(ys)[:, None] * np.diff(xs)[None, :])[inside].sum() / ((x2 - x1) * (y2 - y1)))


def crop_boxes(image: np.ndarray, boxes_xyxy: np.ndarray, spec: CropSpec,
               frame_boxes: np.ndarray | None = None) -> np.ndarray:
    """Cars of a frame as crops (N x size x size x 3, the image's channel order), each cut as ``spec``
    says: with ``grey_nearer`` the nearer overlapping boxes among ``frame_boxes`` (default: the boxes
    themselves; pass all the frame's cars when only some are cropped) painted grey."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    if not len(b):
        return np.zeros((0, spec.size, spec.size, 3), np.uint8)
    frame = b if frame_boxes is None else np.asarray(frame_boxes, np.float64).reshape(-1, 4)
    grey = spec.occluders == "grey_nearer"
    return np.stack([crop_box(image, box, spec, nearer_boxes(box, frame) if grey else None) for box in b])


def box_in_crop(box_xyxy: np.ndarray | tuple, region_xyxy: np.ndarray | tuple, size: int) -> np.ndarray:
    """Map a box from image pixels into the pixel frame of the crop cut from ``region_xyxy``."""
    b = np.asarray(box_xyxy, dtype=np.float64)
    r = np.asarray(region_xyxy, dtype=np.float64)
    scale = size / (r[2] - r[0])
    return (b - np.array([r[0], r[1], r[0], r[1]])) * scale
