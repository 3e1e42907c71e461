"""Crops of the labelled cars of a KITTI-format folder, cut exactly as the runtime cuts detector boxes.

Pose on the *true* boxes separates the pose model from the detector: ``carpose-eval``,
``carpose-benchmark`` and ``carpose-train --real`` all score these crops, so one function cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.crop import CropSpec, crop_boxes, hidden_share
from carpose.eval.kitti import kitti_pairs, parse_kitti_label
from carpose.pose import PoseEstimator


@dataclass
class KittiCrops:
    """The crops of a KITTI folder's labelled cars and, per crop, what the reports split by."""

    crops: np.ndarray
    azimuth_deg: np.ndarray
    sure: np.ndarray
    height_px: np.ndarray
    hidden: np.ndarray  # share of the box that nearer cars' boxes cover (carpose.crop.hidden_share)
    refs: list[tuple[Path, int, np.ndarray]] = field(default_factory=list)  # image, label line, box
    skipped: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.azimuth_deg)

    def limit(self, n: int | None) -> KittiCrops:
        if n is None:
            return self
        return KittiCrops(self.crops[:n], self.azimuth_deg[:n], self.sure[:n], self.height_px[:n], self.hidden[:n],
                          self.refs[:n], self.skipped)


def kitti_crops(root: str | Path, spec: CropSpec, types: tuple[str, ...] = ("Car",), min_height: float = 20.0,
                max_truncation: float = 0.5, max_occlusion: int = 2, progress: bool = True,
                images: str | Path | None = None) -> KittiCrops:
    """RGB crops of the labelled cars (the KITTI 'moderate' filter by default), cut as the runtime cuts
    detector boxes (``spec``: the model's ``PoseEstimator.crop_spec``), and their azimuths. A
    ``grey_nearer`` spec greys the nearer overlapping boxes of every labelled object of ``types`` in the
    frame, whatever its size, truncation or occlusion: what a detector of those types would box."""
    crops, az, sure, height, hidden, refs = [], [], [], [], [], []
    skipped = {"type": 0, "small": 0, "truncated": 0, "occluded": 0, "unreadable": 0}
    for img_path, lab_path in tqdm(kitti_pairs(root, images), desc="kitti", disable=not progress, leave=False):
        objs = parse_kitti_label(lab_path)
        img = None
        frame = np.array([o.box_xyxy for o in objs if o.type in types], np.float64).reshape(-1, 4)
        for k, o in enumerate(objs):
            if o.type not in types:
                skipped["type"] += 1
                continue
            if o.height_px < min_height:
                skipped["small"] += 1
                continue
            if o.truncated > max_truncation:
                skipped["truncated"] += 1
                continue
            if o.occluded > max_occlusion:
                skipped["occluded"] += 1
                continue
            if img is None:
                img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
                if img is None:
                    skipped["unreadable"] += 1
                    break
            crops.append(crop_boxes(img, o.box_xyxy, spec, frame)[0, :, :, ::-1])
            az.append(o.azimuth_deg)
            sure.append(o.sure)
            height.append(o.height_px)
            hidden.append(hidden_share(o.box_xyxy, frame))
            refs.append((img_path, k, o.box_xyxy))
    s = spec.size
    return KittiCrops(np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8), np.asarray(az, np.float64),
                      np.asarray(sure, bool), np.asarray(height, np.float64), np.asarray(hidden, np.float64), refs,
                      skipped)


def predict_all(est: PoseEstimator, crops: np.ndarray, batch: int = 64, progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    preds, confs = [], []
    for i in tqdm(range(0, len(crops), batch), desc="pose", disable=not progress, leave=False):
        r = est.predict(crops[i:i + batch])
        preds.append(r.azimuth_deg)
        confs.append(r.confidence)
    if not preds:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(preds), np.concatenate(confs)
