"""Crops of the labelled cars of a real source, cut exactly as the runtime cuts detector boxes: a KITTI-format
folder's boxes, or a labelled-photos folder's photos (one car each, carpose.eval.photo_labels).

Pose on the *true* boxes separates the pose model from the detector: ``carpose-eval``,
``carpose-benchmark`` and ``carpose-train --real`` all score these crops, so one module cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.crop import CropSpec, crop_box, crop_boxes, hidden_share
from carpose.eval.kitti import kitti_pairs, parse_kitti_label
from carpose.eval.photo_labels import read_photo, read_photo_labels, split_mask
from carpose.pose import PoseEstimator, PosePrediction
from carpose.row_prior import row_prior


@dataclass
class KittiCrops:
    """The crops of a KITTI folder's labelled cars and, per crop, what the reports split by."""

    crops: np.ndarray
    azimuth_deg: np.ndarray
    sure: np.ndarray
    height_px: np.ndarray
    hidden: np.ndarray  # share of the box that nearer cars' boxes cover (carpose.crop.hidden_share)
    frame: np.ndarray  # index of the crop's frame (0, 1, ... in reading order)
    scored: np.ndarray  # False: a car of the frame the filter leaves out, cut only to lend (``lenders``)
    refs: list[tuple[Path, int, np.ndarray]] = field(default_factory=list)  # image, label line, box
    skipped: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.azimuth_deg)

    def limit(self, n: int | None) -> KittiCrops:
        if n is None:
            return self
        return KittiCrops(self.crops[:n], self.azimuth_deg[:n], self.sure[:n], self.height_px[:n], self.hidden[:n],
                          self.frame[:n], self.scored[:n], self.refs[:n], self.skipped)

    def with_row_prior(self, probs: np.ndarray) -> np.ndarray:
        """The bin probabilities (one row per crop) after each frame's row prior (carpose.row_prior), every
        labelled car of the frame lending: what the pipeline does with a frame's detector boxes."""
        out = np.array(probs, copy=True)
        boxes = np.array([r[2] for r in self.refs], np.float64).reshape(-1, 4)
        for f in np.unique(self.frame):
            m = self.frame == f
            out[m] = row_prior(boxes[m], out[m])
        return out


def kitti_crops(root: str | Path, spec: CropSpec, types: tuple[str, ...] = ("Car",), min_height: float = 20.0,
                max_truncation: float = 0.5, max_occlusion: int = 2, progress: bool = True,
                images: str | Path | None = None, lenders: bool = False) -> KittiCrops:
    """RGB crops of the labelled cars (the KITTI 'moderate' filter by default), cut as the runtime cuts
    detector boxes (``spec``: the model's ``PoseEstimator.crop_spec``), and their azimuths. A
    ``grey_nearer`` spec greys the nearer overlapping boxes of every labelled object of ``types`` in the
    frame, whatever its size, truncation or occlusion: what a detector of those types would box.
    ``lenders``: the cars of ``types`` that the filter leaves out are cut too (``scored`` False, not
    counted in ``skipped``), so that every car of a frame can lend its heading (``with_row_prior``)."""
    crops, az, sure, height, hidden, frames, scored, refs = [], [], [], [], [], [], [], []
    skipped = {"type": 0, "small": 0, "truncated": 0, "occluded": 0, "unreadable": 0}
    for f, (img_path, lab_path) in enumerate(tqdm(kitti_pairs(root, images), desc="kitti", disable=not progress,
                                                  leave=False)):
        objs = parse_kitti_label(lab_path)
        img = None
        frame = np.array([o.box_xyxy for o in objs if o.type in types], np.float64).reshape(-1, 4)
        for k, o in enumerate(objs):
            if o.type not in types:
                skipped["type"] += 1
                continue
            why = ("small" if o.height_px < min_height else "truncated" if o.truncated > max_truncation
                   else "occluded" if o.occluded > max_occlusion else None)
            if why and not lenders:
                skipped[why] += 1
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
            frames.append(f)
            scored.append(why is None)
            refs.append((img_path, k, o.box_xyxy))
    s = spec.size
    return KittiCrops(np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8), np.asarray(az, np.float64),
                      np.asarray(sure, bool), np.asarray(height, np.float64), np.asarray(hidden, np.float64),
                      np.asarray(frames, np.int64), np.asarray(scored, bool), refs, skipped)


def photo_crops(folder: str | Path, spec: CropSpec, part: str = "val", progress: bool = True,
                limit: int | None = None) -> KittiCrops:
    """The crops of one part of a labelled-photos folder, cut as the runtime cuts a detector box: the box
    is the whole photo (each photo was cut to its car upstream), so the context around it is the crop's
    fill, as for a car at the frame's edge. Every photo is its own frame (no row prior across photos)."""
    labels = read_photo_labels(folder)
    labels = labels.subset(split_mask(labels, part))
    n = len(labels) if limit is None else min(limit, len(labels))
    crops, az, height, refs = [], [], [], []
    skipped = {"unreadable": 0}
    for i in tqdm(range(n), desc=Path(folder).name, disable=not progress, leave=False):
        path = labels.image_path(i)
        img = read_photo(path)
        if img is None:
            skipped["unreadable"] += 1
            continue
        h, w = img.shape[:2]
        box = np.array([0.0, 0.0, w, h])
        crops.append(crop_box(img, box, spec)[:, :, ::-1])
        az.append(labels.azimuth_deg[i])
        height.append(labels.height_px[i] if np.isfinite(labels.height_px[i]) else float(h))
        refs.append((path, i, box))
    k, s = len(crops), spec.size
    return KittiCrops(np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8), np.asarray(az, np.float64),
                      np.ones(k, bool), np.asarray(height, np.float64), np.zeros(k), np.arange(k), np.ones(k, bool),
                      refs, skipped)


def source_crops(src, spec: CropSpec, progress: bool = True, lenders: bool = False) -> KittiCrops:
    """The labelled cars of a real source (``carpose.eval.real_sources.RealSource``) under its own pose
    filter: a frames source's boxes (``kitti_crops``), or a labelled-photos source's part
    (``photo_crops``: one car per photo, nothing to lend)."""
    if src.kind == "photos":
        return photo_crops(src.labels, spec, src.part, progress)
    return kitti_crops(src.labels, spec, src.pose_types, src.pose_min_height, src.pose_max_truncation,
                       src.pose_max_occlusion, progress, src.images, lenders=lenders)


def predict_all(est: PoseEstimator, crops: np.ndarray, batch: int = 64, progress: bool = True) -> PosePrediction:
    """The estimator's readings of ``crops`` in batches of ``batch``."""
    probs = [est.predict(crops[i:i + batch]).probs
             for i in tqdm(range(0, len(crops), batch), desc="pose", disable=not progress, leave=False)]
    return est.decode(np.concatenate(probs) if probs else np.zeros((0, est.bins), np.float32))
