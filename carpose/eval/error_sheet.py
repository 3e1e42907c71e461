"""Contact sheet of the worst azimuth errors: the crop, the label's arrow and the prediction's arrow.

A MedErr says how often the model misses, not why; the worst cases side by side show whether the
misses are flips (front read as rear), odd cars, occlusion or wrong labels. ``carpose-eval`` and
``carpose-det-eval`` write one for every labelled KITTI folder.

Arrows and dial use ``carpose.draw.arrow_vector``, the same picture of the convention as every
annotated frame: green = label (truth), red = prediction; the dial is the car seen from above with
the camera as the dot at the bottom. A '?' marks a label whose labeller was not sure within 30 deg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from carpose.convention import angular_error
from carpose.draw import arrow_vector

TRUE_COLOR = (60, 220, 60)  # BGR green
PRED_COLOR = (40, 40, 255)  # BGR red
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class ErrorCase:
    """One scored car: where it is, what the label says and what the model said."""

    image_path: Path
    box_xyxy: np.ndarray  # the labelled box
    true_deg: float
    pred_deg: float
    name: str = ""  # e.g. "000010#1" (frame and label line)
    sure: bool = True
    confidence: float | None = None
    pred_box_xyxy: np.ndarray | None = None  # the detector's box, when it differs from the label's

    @property
    def err_deg(self) -> float:
        return float(angular_error(self.pred_deg, self.true_deg))


def _square_region(boxes: list[np.ndarray], context: float = 1.4, min_side: float = 40.0) -> np.ndarray:
    b = np.array(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    side = max(x2 - x1, y2 - y1, min_side / context) * context
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def _cut(img: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
    """``region`` of ``img`` scaled to size x size, grey where it leaves the image."""
    x1, y1, x2, y2 = region
    s = size / (x2 - x1)
    m = np.array([[s, 0, -x1 * s], [0, s, -y1 * s]], np.float64)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(img, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(90, 90, 90))


def _dial(tile: np.ndarray, center: tuple[int, int], radius: int, true_deg: float, pred_deg: float) -> None:
    cx, cy = center
    cv2.circle(tile, center, radius, (35, 35, 35), -1, cv2.LINE_AA)
    cv2.circle(tile, center, radius, (200, 200, 200), 1, cv2.LINE_AA)
    cv2.circle(tile, (cx, cy + radius), 3, (200, 200, 200), -1, cv2.LINE_AA)  # the camera
    for az, col in ((true_deg, TRUE_COLOR), (pred_deg, PRED_COLOR)):
        dx, dy = arrow_vector(az, foreshorten=1.0)
        tip = (int(round(cx + dx * radius * 0.85)), int(round(cy + dy * radius * 0.85)))
        cv2.arrowedLine(tile, center, tip, col, 2, cv2.LINE_AA, tipLength=0.35)


def case_tile(img: np.ndarray, case: ErrorCase, size: int = 200) -> np.ndarray:
    """One tile: the car with context, its label box, both heading arrows, a dial and the numbers."""
    boxes = [case.box_xyxy] + ([case.pred_box_xyxy] if case.pred_box_xyxy is not None else [])
    region = _square_region(boxes)
    tile = _cut(img, region, size)
    s = size / (region[2] - region[0])

    def to_tile(b: np.ndarray) -> np.ndarray:
        return (np.asarray(b, np.float64) - [region[0], region[1], region[0], region[1]]) * s

    if case.pred_box_xyxy is not None:
        p = to_tile(case.pred_box_xyxy).round().astype(int)
        cv2.rectangle(tile, tuple(p[:2]), tuple(p[2:]), PRED_COLOR, 1, cv2.LINE_AA)
    g = to_tile(case.box_xyxy)
    gi = g.round().astype(int)
    cv2.rectangle(tile, tuple(gi[:2]), tuple(gi[2:]), TRUE_COLOR, 1, cv2.LINE_AA)
    cx, cy = (g[0] + g[2]) / 2, (g[1] + g[3]) / 2
    half = 0.42 * max(g[2] - g[0], g[3] - g[1], 40.0)
    for az, col in ((case.true_deg, TRUE_COLOR), (case.pred_deg, PRED_COLOR)):
        dx, dy = arrow_vector(az)
        tip = (int(round(cx + dx * half)), int(round(cy + dy * half)))
        cv2.arrowedLine(tile, (int(round(cx)), int(round(cy))), tip, col, 2, cv2.LINE_AA, tipLength=0.25)
    _dial(tile, (24, 24), 20, case.true_deg, case.pred_deg)
    cv2.rectangle(tile, (0, size - 34), (size, size), (0, 0, 0), -1)
    conf = "" if case.confidence is None else f" c{case.confidence:.2f}"
    cv2.putText(tile, f"{case.name} err {case.err_deg:.0f}{'' if case.sure else ' ?'}", (3, size - 20), _FONT, 0.42,
                (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(tile, f"true {case.true_deg:.0f}", (3, size - 5), _FONT, 0.42, TRUE_COLOR, 1, cv2.LINE_AA)
    cv2.putText(tile, f"pred {case.pred_deg:.0f}{conf}", (80, size - 5), _FONT, 0.42, (90, 90, 255), 1, cv2.LINE_AA)
    return tile


def worst_errors_sheet(cases: list[ErrorCase], count: int = 24, cols: int = 6, size: int = 200,
                       title: str = "") -> np.ndarray:
    """The ``count`` largest errors (largest first) as a grid of tiles under a one-line legend."""
    if not cases:
        raise ValueError("no scored cars to draw")
    worst = sorted(cases, key=lambda c: -c.err_deg)[:count]
    cols = min(cols, len(worst))
    rows = (len(worst) + cols - 1) // cols
    head = 40
    sheet = np.full((head + rows * size, cols * size, 3), 30, np.uint8)
    images: dict[Path, np.ndarray] = {}
    for i, c in enumerate(worst):
        if c.image_path not in images:
            img = cv2.imread(str(c.image_path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{c.image_path}: unreadable image")
            images[c.image_path] = img
        r, k = divmod(i, cols)
        sheet[head + r * size:head + (r + 1) * size, k * size:(k + 1) * size] = case_tile(images[c.image_path], c, size)
    legend = f"worst {len(worst)} of {len(cases)} by azimuth error  (green = label, red = prediction, ? = unsure)"
    cv2.putText(sheet, title[: max(10, cols * size // 8)], (6, 16), _FONT, 0.48, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(sheet, legend, (6, 34), _FONT, 0.42, (210, 210, 210), 1, cv2.LINE_AA)
    return sheet


def save_worst_errors_sheet(cases: list[ErrorCase], path: str | Path, **kw) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(p), worst_errors_sheet(cases, **kw)):
        raise ValueError(f"could not write {p}")
    return p
