"""Optional temporal smoothing: a greedy IoU tracker that gives each car a ``track_id`` and a
circular filter that steadies its azimuth over frames.

Why a circular filter: averaging angles as numbers breaks at the 0/360 wrap (359 and 1 average to
180), so each track smooths the unit vector (cos, sin) instead. Why the flip rule: the pose head's
typical gross error is a front/rear confusion, and a car can also genuinely turn; one frame that
jumps by more than ``flip_threshold_deg`` is held back as a likely outlier, and a jump that persists
for ``flip_frames`` frames re-initialises the track so the new direction is followed, not averaged
with the old one (which would pass through the sideways views in between).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from carpose.convention import wrap_deg
from carpose.results import CarPoseResult


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(N, M) IoU of every box in ``a`` with every box in ``b`` (x1, y1, x2, y2), vectorised."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0.0, None) * np.clip(iy2 - iy1, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0.0, inter / np.where(union > 0.0, union, 1.0), 0.0)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken best-IoU-first while IoU >= ``threshold``; each row/col used once."""
    m = np.array(iou, dtype=np.float64, copy=True)
    pairs: list[tuple[int, int]] = []
    if m.size == 0:
        return pairs
    for _ in range(min(m.shape)):
        flat = int(np.argmax(m))
        r, c = divmod(flat, m.shape[1])
        if m[r, c] < threshold or m[r, c] <= 0.0:
            break
        pairs.append((r, c))
        m[r, :] = -1.0
        m[:, c] = -1.0
    return pairs


class AzimuthFilter:
    """Confidence-weighted exponential smoothing of one track's azimuth on the unit circle.

    State: ``s`` = sum of decayed ``conf * (cos, sin)``, ``n`` = sum of the decays. The smoothed
    azimuth is the direction of ``s``; ``|s| / n`` is the decayed mean confidence times how well
    recent measurements agree, so it serves as the smoothed confidence. Plain floats, not numpy:
    this runs once per car per frame and 2-vectors are far cheaper in pure Python.
    """

    def __init__(self, alpha: float = 0.4, flip_threshold_deg: float = 90.0, flip_frames: int = 2) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if flip_frames < 1:
            raise ValueError(f"flip_frames must be >= 1, got {flip_frames}")
        self.alpha = alpha
        self.cos_flip = math.cos(math.radians(flip_threshold_deg))
        self.flip_frames = flip_frames
        self.sx = self.sy = self.n = 0.0
        self.px = self.py = self.pn = 0.0  # accumulates a jump until it persists
        self.pending_count = 0

    def _cos_to(self, x: float, y: float, ux: float, uy: float) -> float | None:
        """Cosine between direction (x, y) and unit (ux, uy); None if (x, y) has no direction."""
        norm = math.hypot(x, y)
        return (x * ux + y * uy) / norm if norm > 1e-9 else None

    def update(self, azimuth_deg: float, confidence: float) -> tuple[float, float]:
        """Feed one measurement, get (smoothed azimuth in [0, 360), smoothed confidence)."""
        conf = min(max(float(confidence), 0.0), 1.0) if math.isfinite(confidence) else 0.0
        a_rad = math.radians(azimuth_deg)
        ux, uy = math.cos(a_rad), math.sin(a_rad)
        cos_state = self._cos_to(self.sx, self.sy, ux, uy)
        a = self.alpha
        if cos_state is None:  # nothing (or only zero-confidence evidence) so far: start here
            self.sx, self.sy, self.n = conf * ux, conf * uy, 1.0
            self.pending_count = 0
            return float(wrap_deg(azimuth_deg)), conf
        if conf > 0.0 and cos_state < self.cos_flip:  # a jump: hold it back until it persists
            cos_pending = self._cos_to(self.px, self.py, ux, uy) if self.pending_count else None
            if cos_pending is None or cos_pending < self.cos_flip:  # a new jump, or a different one
                self.px, self.py, self.pn, self.pending_count = conf * ux, conf * uy, 1.0, 1
            else:
                self.px, self.py = (1 - a) * self.px + a * conf * ux, (1 - a) * self.py + a * conf * uy
                self.pn = (1 - a) * self.pn + a
                self.pending_count += 1
            if self.pending_count >= self.flip_frames:  # it persisted: follow it
                self.sx, self.sy, self.n = self.px, self.py, self.pn
                self.pending_count = 0
        else:
            self.pending_count = 0
            self.sx, self.sy = (1 - a) * self.sx + a * conf * ux, (1 - a) * self.sy + a * conf * uy
            self.n = (1 - a) * self.n + a
        az = math.degrees(math.atan2(self.sy, self.sx)) % 360.0
        return (0.0 if az >= 360.0 else az), min(1.0, math.hypot(self.sx, self.sy) / self.n)


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    filter: AzimuthFilter
    age: int = 0  # frames since last matched
    hits: int = 1


class IouTracker:
    """Greedy IoU association frame to frame plus an :class:`AzimuthFilter` per track.

    ``max_age``: frames a track survives unmatched (a car hidden for a moment keeps its id).
    ``alpha``: weight of the newest measurement (1 = no smoothing). ``smooth=False`` only assigns ids.
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 5, alpha: float = 0.4,
                 flip_threshold_deg: float = 90.0, flip_frames: int = 2, smooth: bool = True) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.filter_args = {"alpha": alpha, "flip_threshold_deg": flip_threshold_deg, "flip_frames": flip_frames}
        AzimuthFilter(**self.filter_args)  # validate now, not on the first car
        self.smooth = smooth
        self.tracks: list[_Track] = []
        self._next_id = 0

    def reset(self) -> None:
        """Forget all tracks (e.g. the camera jumped or the stream restarted); ids restart at 0."""
        self.tracks = []
        self._next_id = 0

    def update(self, results: list[CarPoseResult]) -> list[CarPoseResult]:
        """One frame's cars -> copies with ``track_id`` set and (if ``smooth``) the azimuth smoothed,
        in the input order. Call once per frame, also with an empty list, so tracks age."""
        boxes = np.array([np.asarray(r.box_xyxy, dtype=np.float64).reshape(4) for r in results]).reshape(-1, 4)
        track_boxes = np.array([t.box for t in self.tracks]).reshape(-1, 4)
        pairs = greedy_match(iou_matrix(boxes, track_boxes), self.iou_threshold)
        assigned: list[_Track | None] = [None] * len(results)
        matched_tracks = set()
        for r, c in pairs:
            assigned[r] = self.tracks[c]
            matched_tracks.add(c)
        kept = []
        for i, t in enumerate(self.tracks):
            if i in matched_tracks:
                t.age = 0
                t.hits += 1
                kept.append(t)
            else:
                t.age += 1
                if t.age <= self.max_age:
                    kept.append(t)
        self.tracks = kept
        out = []
        for i, res in enumerate(results):
            track = assigned[i]
            if track is None:
                track = _Track(self._next_id, boxes[i], AzimuthFilter(**self.filter_args))
                self._next_id += 1
                self.tracks.append(track)
            track.box = boxes[i]
            az, conf = track.filter.update(float(res.azimuth_deg), float(res.azimuth_confidence))
            if self.smooth:
                out.append(replace(res, track_id=track.track_id, azimuth_deg=az, azimuth_confidence=conf))
            else:
                out.append(replace(res, track_id=track.track_id))
        return out
