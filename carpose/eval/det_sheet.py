"""Contact sheet of whole frames with the detector's verdicts drawn on them.

Why: a precision of 0.8 says nothing about *what* the remaining false positives are (a lorry? a
fence? a car the labels skipped?) or which cars are missed; the handbook asks for pictures of real
frames every time a model changes. Colours: green = detection matched to a labelled car (with the
predicted azimuth), red = false positive, grey = detection on an ignore region (a car under the
height limit, a van or truck, DontCare), yellow = labelled car not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from carpose.draw import tile_grid

GREEN, RED, GREY, YELLOW = (60, 200, 60), (40, 40, 230), (170, 170, 170), (0, 220, 255)


@dataclass
class FrameVerdict:
    """What one frame's detections and labels came to at the operating threshold."""

    image: Path
    det_boxes: np.ndarray  # (N, 4) above the threshold
    det_scores: np.ndarray
    det_outcome: np.ndarray  # 1 TP, 0 FP, -1 on an ignore region
    det_azimuth: np.ndarray
    gt_boxes: np.ndarray  # (M, 4) labelled cars (ground truth of the table's first row)
    gt_found: np.ndarray  # (M,) bool


def draw_verdict(v: FrameVerdict, width: int = 800) -> np.ndarray:
    img = cv2.imread(str(v.image), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{v.image}: unreadable image")
    s = width / img.shape[1]
    img = cv2.resize(img, (width, int(round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
    for box, found in zip(v.gt_boxes, v.gt_found, strict=True):
        if not found:
            x1, y1, x2, y2 = (np.asarray(box) * s).astype(int)
            cv2.rectangle(img, (x1 - 2, y1 - 2), (x2 + 2, y2 + 2), YELLOW, 2)
    for box, score, out, az in zip(v.det_boxes, v.det_scores, v.det_outcome, v.det_azimuth, strict=True):
        x1, y1, x2, y2 = (np.asarray(box) * s).astype(int)
        color = GREEN if out == 1 else RED if out == 0 else GREY
        cv2.rectangle(img, (x1, y1), (x2, y2), color, 1)
        text = f"{score:.2f}" + (f" {az:.0f}" if out == 1 else "")
        cv2.putText(img, text, (x1, max(y1 - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
    cv2.putText(img, v.image.stem, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def save_frames_sheet(verdicts: list[FrameVerdict], path: str | Path, count: int = 12, cols: int = 3,
                      width: int = 800, title: str = "") -> Path:
    """``count`` frames spread evenly over the set, ``cols`` per row, with a legend line on top."""
    if not verdicts:
        raise ValueError("no frames to draw")
    idx = np.unique(np.linspace(0, len(verdicts) - 1, min(count, len(verdicts))).round().astype(int))
    sheet = tile_grid([draw_verdict(verdicts[i], width) for i in idx], cols)
    head = np.full((28, sheet.shape[1], 3), 30, np.uint8)
    legend = f"{title}   green: found (score, azimuth)  red: false positive  grey: on ignore region  yellow: missed"
    cv2.putText(head, legend, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([head, sheet]))
    return path
