"""What the runtime returns, as plain dataclasses (no ROS, no torch): the node, the CLIs, the
evaluation and the benchmarks all read these, so they are defined once here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detection:
    """One detector box in image pixels (x1, y1, x2, y2), with its class and score."""

    box_xyxy: np.ndarray
    score: float
    class_id: int = 2  # COCO 'car'
    class_name: str = "car"


@dataclass
class CarPoseResult:
    """One car of one frame: the detection plus its azimuth (project convention, degrees)."""

    box_xyxy: np.ndarray
    score: float
    class_id: int
    class_name: str
    azimuth_deg: float
    azimuth_confidence: float
    crop_size: int
    probs: np.ndarray | None = None  # (K,) bin probabilities, when asked for
    track_id: int = -1  # >= 0 when temporal smoothing is on

    def to_dict(self) -> dict:
        d = {"box_xyxy": [float(v) for v in self.box_xyxy], "score": float(self.score),
             "class_id": int(self.class_id), "class_name": self.class_name,
             "azimuth_deg": float(self.azimuth_deg), "azimuth_confidence": float(self.azimuth_confidence),
             "crop_size": int(self.crop_size), "track_id": int(self.track_id)}
        if self.probs is not None:
            d["probs"] = [float(p) for p in self.probs]
        return d


@dataclass
class FrameResult:
    """Every car of a frame plus per-stage timings in milliseconds and the boxes that were skipped
    (with the reason), so callers can count them instead of losing them silently."""

    cars: list[CarPoseResult]
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[np.ndarray, str]] = field(default_factory=list)
    width: int = 0
    height: int = 0
