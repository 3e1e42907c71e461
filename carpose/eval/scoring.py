"""Scoring predictions against ground truth: detection matching, AP@0.5 and azimuth errors.

Plain NumPy, no ROS: ``carpose-det-eval``, the rosbag evaluation and the tests share it, so a
number means the same thing wherever it is printed.

Matching (the PASCAL VOC / KITTI way): within a frame, predictions are taken by descending score and
each is matched to the unmatched ground-truth box of highest IoU >= ``iou_threshold``. A prediction
that overlaps an *ignore* region (KITTI DontCare, too-small or mostly hidden cars) by that much is
neither a true nor a false positive. AP is the area under the precision/recall curve with the
all-point interpolation (precision made monotone from the right).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from carpose.convention import angular_error, azimuth_to_bin
from carpose.track import iou_matrix


@dataclass
class FrameMatch:
    """One frame's outcome: for each prediction, 1 (TP), 0 (FP) or -1 (ignored), and the GT index
    each TP matched."""

    scores: np.ndarray
    outcome: np.ndarray
    gt_index: np.ndarray
    num_gt: int


def match_frame(pred_xyxy: np.ndarray, pred_scores: np.ndarray, gt_xyxy: np.ndarray,
                ignore_xyxy: np.ndarray | None = None, iou_threshold: float = 0.5) -> FrameMatch:
    pred = np.asarray(pred_xyxy, np.float64).reshape(-1, 4)
    scores = np.asarray(pred_scores, np.float64).reshape(-1)
    gt = np.asarray(gt_xyxy, np.float64).reshape(-1, 4)
    order = np.argsort(-scores, kind="stable")
    outcome = np.zeros(len(pred), np.int64)
    gt_index = np.full(len(pred), -1, np.int64)
    iou = iou_matrix(pred, gt)
    ign = iou_matrix(pred, np.asarray(ignore_xyxy, np.float64).reshape(-1, 4)) if ignore_xyxy is not None \
        else np.zeros((len(pred), 0))
    taken = np.zeros(len(gt), bool)
    for i in order:
        cand = np.where(taken, -1.0, iou[i]) if len(gt) else np.zeros(0)
        j = int(np.argmax(cand)) if len(cand) else -1
        if j >= 0 and cand[j] >= iou_threshold:
            taken[j] = True
            outcome[i], gt_index[i] = 1, j
        elif ign.shape[1] and ign[i].max() >= iou_threshold:
            outcome[i] = -1
    return FrameMatch(scores, outcome, gt_index, len(gt))


def average_precision(matches: list[FrameMatch]) -> dict:
    """AP (all-point interpolation) plus the full precision/recall curve over all frames."""
    scores = np.concatenate([m.scores[m.outcome >= 0] for m in matches]) if matches else np.zeros(0)
    tp = np.concatenate([m.outcome[m.outcome >= 0] for m in matches]) if matches else np.zeros(0)
    n_gt = sum(m.num_gt for m in matches)
    if n_gt == 0:
        return {"ap": float("nan"), "num_gt": 0, "num_pred": int(len(scores)), "precision": [], "recall": []}
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
    return {"ap": ap, "num_gt": int(n_gt), "num_pred": int(len(scores)),
            "precision": precision.tolist(), "recall": recall.tolist(), "scores": scores[order].tolist()}


@dataclass
class DetectionReport:
    """Aggregated detection figures at a score threshold, plus AP over all thresholds."""

    threshold: float
    tp: int = 0
    fp: int = 0
    fn: int = 0
    ap: float = float("nan")
    curve: dict = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": self.precision, "recall": self.recall, "ap50": self.ap}


def detection_report(matches: list[FrameMatch], threshold: float) -> DetectionReport:
    rep = DetectionReport(threshold)
    for m in matches:
        keep = m.scores >= threshold
        rep.tp += int(np.sum((m.outcome == 1) & keep))
        rep.fp += int(np.sum((m.outcome == 0) & keep))
        rep.fn += int(m.num_gt - np.sum((m.outcome == 1) & keep))
    rep.curve = average_precision(matches)
    rep.ap = rep.curve["ap"]
    return rep


#: An error above this is a flip: front seen as rear or left side as right side, not a small miss.
FLIP_DEG = 150.0

#: The 8 view sectors of 45 deg, centred on 0, 45, ... (bin 0 centred on 0, as every carpose bin):
#: which side(s) of the car the camera sees.
SECTOR_NAMES = ("front", "front-left", "left", "rear-left", "rear", "rear-right", "right", "front-right")


def azimuth_error_stats(err_deg: np.ndarray) -> dict:
    """n, MedErr, mean error, Acc@30, Acc@15 and flips (count and rate of errors > 150 deg) of angular
    errors in degrees (None when empty). Every azimuth table of carpose is made of these rows."""
    err = np.asarray(err_deg, np.float64)
    if not len(err):
        return {"n": 0, "med_err_deg": None, "mean_err_deg": None, "acc_30": None, "acc_15": None,
                "flips": 0, "flip_rate": None}
    return {"n": int(len(err)), "med_err_deg": float(np.median(err)), "mean_err_deg": float(np.mean(err)),
            "acc_30": float(np.mean(err <= 30.0)), "acc_15": float(np.mean(err <= 15.0)),
            "flips": int(np.sum(err > FLIP_DEG)), "flip_rate": float(np.mean(err > FLIP_DEG))}


def sector_stats(err_deg: np.ndarray, true_deg: np.ndarray, num_sectors: int = 8) -> list[dict]:
    """``azimuth_error_stats`` per view sector of the TRUE azimuth (``num_sectors`` equal sectors,
    the first centred on 0 = front), so a weakness at one view is not averaged away."""
    err = np.asarray(err_deg, np.float64).reshape(-1)
    true = np.asarray(true_deg, np.float64).reshape(-1)
    if err.shape != true.shape:
        raise ValueError(f"errors and true azimuths differ in length: {err.shape} vs {true.shape}")
    idx = np.asarray(azimuth_to_bin(true, num_sectors)).reshape(-1)
    w = 360.0 / num_sectors
    names = SECTOR_NAMES if num_sectors == len(SECTOR_NAMES) else [f"{k * w:g}" for k in range(num_sectors)]
    return [{"sector": names[k], "center_deg": k * w, "from_deg": (k * w - w / 2) % 360, "to_deg": k * w + w / 2,
             **azimuth_error_stats(err[idx == k])} for k in range(num_sectors)]


def matched_azimuth_errors(match: FrameMatch, pred_az: np.ndarray, gt_az: np.ndarray) -> np.ndarray:
    """Azimuth errors (deg) of the true positives of one frame, in prediction order."""
    tp = np.flatnonzero(match.outcome == 1)
    if len(tp) == 0:
        return np.zeros(0)
    return np.asarray(angular_error(np.asarray(pred_az)[tp], np.asarray(gt_az)[match.gt_index[tp]]))
