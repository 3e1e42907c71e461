"""Draw carpose results onto an image with OpenCV only (no ultralytics plotting: it would fetch
fonts from the internet, see detect.py).

Each car gets its box, a label "123deg 0.87" (cv2.putText has no degree sign), an arrow from the
box centre showing which way the car's front points in the image, and a small top-down compass
dial in the box corner.

Arrow model (convention.py: azimuth = direction from the car to the camera, counter-clockwise seen
from above; 0 = we see its front). For a level camera the car's +X axis projects onto the image
right axis as -sin(az) and onto the viewing direction as -cos(az); a camera looking slightly down
shows "towards the camera" as "down in the image", foreshortened. So the arrow is
(dx, dy) = (-sin(az), FORESHORTEN * cos(az)) in image pixels (y down): 90 -> left, 270 -> right,
0 -> down and shorter, 180 -> up and shorter.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from carpose.results import CarPoseResult

#: Length of the towards/away-from-camera component of the arrow relative to the sideways one.
FORESHORTEN = 0.5

# Distinct BGR colours for track ids (no pure red: red is the default arrow colour).
_PALETTE = ((80, 200, 80), (255, 160, 60), (60, 200, 255), (200, 90, 220), (255, 255, 80),
            (120, 120, 255), (80, 255, 200), (200, 200, 200), (0, 140, 255), (255, 80, 160))
DEFAULT_COLOR = (80, 200, 80)
DEFAULT_ARROW_COLOR = (0, 0, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def arrow_vector(azimuth_deg: float, foreshorten: float = FORESHORTEN) -> tuple[float, float]:
    """Direction of the car's front in the image (x right, y down) for ``azimuth_deg``; see module doc."""
    a = math.radians(azimuth_deg)
    return -math.sin(a), foreshorten * math.cos(a)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable colour per track so a car keeps its colour across frames."""
    return DEFAULT_COLOR if track_id < 0 else _PALETTE[track_id % len(_PALETTE)]


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.114 * bg[0] + 0.587 * bg[1] + 0.299 * bg[2]
    return (0, 0, 0) if luma > 128 else (255, 255, 255)


def _draw_label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], scale: float,
                thick: int) -> None:
    """Text on a filled box, above (x, y) if there is room, else just below it."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    pad = 2
    top = y - th - base - 2 * pad
    if top < 0:
        top = y
    cv2.rectangle(img, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), color, -1)
    cv2.putText(img, text, (x + pad, top + pad + th), _FONT, scale, _text_color(color), thick, cv2.LINE_AA)


def _draw_dial(img: np.ndarray, center: tuple[int, int], radius: int, azimuth_deg: float,
               color: tuple[int, int, int], needle_color: tuple[int, int, int], thick: int) -> None:
    """Top-down compass: the camera is the dot at the bottom, the needle is the car's heading."""
    cx, cy = center
    cv2.circle(img, center, radius, (40, 40, 40), -1, cv2.LINE_AA)
    cv2.circle(img, center, radius, color, thick, cv2.LINE_AA)
    cv2.circle(img, (cx, cy + radius), max(2, radius // 5), color, -1, cv2.LINE_AA)  # the camera
    dx, dy = arrow_vector(azimuth_deg, foreshorten=1.0)  # seen from above: no foreshortening
    tip = (int(round(cx + dx * radius * 0.85)), int(round(cy + dy * radius * 0.85)))
    cv2.arrowedLine(img, center, tip, needle_color, thick, cv2.LINE_AA, tipLength=0.4)


def annotate(image_bgr: np.ndarray, results: list[CarPoseResult], fps: float | None = None,
             color: tuple[int, int, int] | None = None, arrow_color: tuple[int, int, int] = DEFAULT_ARROW_COLOR,
             label: bool = True, dial: bool = True, frame_text: bool = True) -> np.ndarray:
    """A copy of ``image_bgr`` with every car drawn (box, label, heading arrow, dial) and a frame
    line "N cars  F fps". ``color`` fixes the box colour (default: one colour per track id)."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
            or image_bgr.dtype != np.uint8:
        raise ValueError(f"annotate needs an HxWx3 uint8 BGR image, got {getattr(image_bgr, 'dtype', None)} "
                         f"{getattr(image_bgr, 'shape', None)}")
    img = np.ascontiguousarray(image_bgr).copy()
    h, w = img.shape[:2]
    thick = max(1, int(round(min(h, w) / 400)))
    scale = 0.45 * thick
    for res in results:
        box = np.asarray(res.box_xyxy, dtype=np.float64).reshape(4)
        if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        bw, bh = box[2] - box[0], box[3] - box[1]
        col = tuple(int(c) for c in color) if color is not None else track_color(res.track_id)
        cv2.rectangle(img, (x1, y1), (x2, y2), col, thick, cv2.LINE_AA)

        az = float(res.azimuth_deg)
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        dx, dy = arrow_vector(az)
        start = (int(round(cx)), int(round(cy)))
        end = (int(round(cx + dx * 0.42 * bw)), int(round(cy + dy * 0.42 * bh)))
        if end != start:
            cv2.arrowedLine(img, start, end, arrow_color, thick + 1, cv2.LINE_AA, tipLength=0.3)
        cv2.circle(img, start, thick + 1, arrow_color, -1, cv2.LINE_AA)

        if dial:
            radius = int(min(16 * thick, 0.18 * min(bw, bh)))
            if radius >= 6:
                _draw_dial(img, (x1 + radius + 2, y1 + radius + 2), radius, az, col, arrow_color, thick)
        if label:
            text = f"{az:.0f}deg {float(res.azimuth_confidence):.2f}"
            if res.track_id >= 0:
                text = f"#{res.track_id} {text}"
            _draw_label(img, text, x1, y1, col, scale, thick)

    if frame_text:
        text = f"{len(results)} car{'s' if len(results) != 1 else ''}"
        if fps is not None and math.isfinite(fps):
            text += f"  {fps:.1f} fps"
        (tw, th), base = cv2.getTextSize(text, _FONT, scale * 1.3, thick)
        cv2.rectangle(img, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
        cv2.putText(img, text, (4, th + 4), _FONT, scale * 1.3, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def tile_grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    """Tiles (HxWx3 uint8) row by row, ``cols`` per row, in cells as large as the largest tile;
    what a tile or the last row leaves empty is black. The contact sheets' one layout."""
    if not tiles:
        raise ValueError("no tiles to lay out")
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    rows = math.ceil(len(tiles) / cols)
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * h:r * h + t.shape[0], c * w:c * w + t.shape[1]] = t
    return sheet
