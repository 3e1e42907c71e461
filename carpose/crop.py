"""The one crop function shared by the renderer (training crops) and the runtime (detector boxes).

Why shared: a pose CNN is only as good as the match between the crops it was trained on and the
crops it is fed. Context padding, squaring and border fill must be identical in both places, so
both import :func:`crop_box` from here and a test checks they agree.

Recipe: take the box (x1, y1, x2, y2) in pixels, grow it by ``context`` of its larger side on every
side, make it square around its centre (the car keeps its aspect ratio, no stretching), cut it out
of the image padding anything outside the image with a constant grey, and resize to ``size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropSpec:
    """How crops are made; stored in every HDF5 file and model so runtime and training agree."""

    size: int = 128
    context: float = 0.1
    fill: int = 114  # the letterbox grey of ultralytics: cars cut by the image edge look alike

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"crop size must be >= 8 px, got {self.size}")
        if not 0.0 <= self.context <= 1.0:
            raise ValueError(f"crop context must be in [0, 1], got {self.context}")
        if not 0 <= self.fill <= 255:
            raise ValueError(f"crop fill must be in [0, 255], got {self.fill}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        """The spec of a model's or dataset's ``crop`` record (extra keys ignored)."""
        return cls(size=int(d["size"]), context=float(d["context"]), fill=int(d["fill"]))


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


def crop_box(image: np.ndarray, box_xyxy: np.ndarray | tuple, spec: CropSpec) -> np.ndarray:
    """Cut the car in ``box_xyxy`` out of ``image`` (HxWx3 uint8) as a ``spec.size`` square crop."""
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
    pad = (cy1 - iy1, iy2 - cy2, cx1 - ix1, ix2 - cx2)
    if any(pad):
        window = cv2.copyMakeBorder(window, *pad, cv2.BORDER_CONSTANT, value=(spec.fill,) * 3)
    interp = cv2.INTER_AREA if side > spec.size else cv2.INTER_LINEAR
    return cv2.resize(window, (spec.size, spec.size), interpolation=interp)


def box_in_crop(box_xyxy: np.ndarray | tuple, region_xyxy: np.ndarray | tuple, size: int) -> np.ndarray:
    """Map a box from image pixels into the pixel frame of the crop cut from ``region_xyxy``."""
    b = np.asarray(box_xyxy, dtype=np.float64)
    r = np.asarray(region_xyxy, dtype=np.float64)
    scale = size / (r[2] - r[0])
    return (b - np.array([r[0], r[1], r[0], r[1]])) * scale
