"""KITTI-format folders (``image_2/*.png`` + ``label_2/*.txt``): parse labels, pair them with images.

Real labelled photos come in this format, and ``carpose-render export --kitti`` writes synthetic
scenes in it, so pose and detector evaluation read one format. Angles go through the convention
module (``azimuth_from_kitti_alpha``), never by hand.

Our hand labels of real frames (``data/real/*/label_2``, written by ``scripts/label_tool.py``) add a
16th field: 1 when the labeller is sure of the azimuth within 30 deg, 0 when not
(``KittiObject.sure``; a 15-field line counts as sure). Their images stay outside the repository,
so ``kitti_pairs`` takes the image folder separately (``images=``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carpose.convention import azimuth_from_kitti_alpha

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
#: Types a detection may land on without being a false positive when they are not counted (KITTI:
#: a detector of cars is not punished for a van or a DontCare region).
NOT_FP_TYPES = ("DontCare", "Van", "Truck")


@dataclass
class KittiObject:
    type: str
    truncated: float
    occluded: int
    alpha: float
    box_xyxy: np.ndarray
    #: Labeller sure of the azimuth within 30 deg (16th field of our real labels; absent = sure).
    sure: bool = True
    #: 3-D box: height, width, length (m), bottom centre in the rectified reference camera (m), yaw
    #: about its y axis (rad). Unknown in DontCare and our hand labels: -1 / -1000 / -10.
    dims_hwl: np.ndarray | None = None
    location: np.ndarray | None = None
    rotation_y: float = math.nan

    @property
    def has_3d(self) -> bool:
        """A real 3-D box (not KITTI's -1 / -1000 / -10 placeholders): sizes > 0, in front of the
        camera, yaw in [-pi, pi]."""
        return (self.dims_hwl is not None and self.location is not None and bool(np.all(self.dims_hwl > 0))
                and bool(np.all(np.abs(self.location) < 1000)) and self.location[2] > 0
                and abs(self.rotation_y) <= math.pi + 1e-3)

    @property
    def has_alpha(self) -> bool:
        """alpha is an angle, not KITTI's -10 placeholder (DontCare)."""
        return abs(self.alpha) <= math.pi + 1e-3

    @property
    def azimuth_deg(self) -> float:
        return float(azimuth_from_kitti_alpha(self.alpha))

    @property
    def height_px(self) -> float:
        """Box height, the size KITTI's difficulty rules (and ours) go by."""
        return float(self.box_xyxy[3] - self.box_xyxy[1])


def parse_kitti_label(path: str | Path) -> list[KittiObject]:
    """Objects of one KITTI label file. Malformed lines raise ValueError naming file and line."""
    objs = []
    for ln, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 15:
            raise ValueError(f"{path}:{ln}: KITTI label lines have 15 (or 16) fields, got {len(parts)}")
        try:
            vals = [float(v) for v in parts[1:15]]
        except ValueError as exc:
            raise ValueError(f"{path}:{ln}: non-numeric field: {exc}") from exc
        try:
            sure = len(parts) < 16 or float(parts[15]) >= 0.5
        except ValueError as exc:
            raise ValueError(f"{path}:{ln}: the 16th field (sure flag) must be 1 or 0: {exc}") from exc
        objs.append(KittiObject(parts[0], vals[0], int(vals[1]), vals[2], np.array(vals[3:7], np.float64), sure,
                                np.array(vals[7:10], np.float64), np.array(vals[10:13], np.float64), vals[13]))
    return objs


def split_ground_truth(objs: list[KittiObject], types: tuple[str, ...],
                       min_height: float) -> tuple[list[int], list[int]]:
    """(counted, ignored) object indices, the KITTI rule carpose-det-eval and real-frame bags share:
    ``types`` at least ``min_height`` px tall are counted; the rest of ``types`` and the
    NOT_FP_TYPES are ignore regions (a detection there counts neither way); anything else
    (pedestrians, cyclists, trams) is not a car at all."""
    counted = [i for i, o in enumerate(objs) if o.type in types and o.height_px >= min_height]
    ignored = [i for i, o in enumerate(objs) if i not in counted and o.type in (*types, *NOT_FP_TYPES)]
    return counted, ignored


def kitti_pairs(root: str | Path, images: str | Path | None = None) -> list[tuple[Path, Path]]:
    """(image, label) pairs of ``root/label_2/*.txt`` with their images from ``root/image_2`` or from
    ``images`` (a label without an image is left out: e.g. a frame still being labelled elsewhere)."""
    root = Path(root)
    img_dir, lab_dir = (root / "image_2" if images is None else Path(images)), root / "label_2"
    if not lab_dir.is_dir():
        raise FileNotFoundError(f"{root} is not a KITTI-format folder: it needs label_2/")
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{root}: no image folder {img_dir} (give the images with --images)"
                                if images is None else f"image folder {img_dir} does not exist")
    pairs = []
    for lab in sorted(lab_dir.glob("*.txt")):
        img = next((img_dir / (lab.stem + e) for e in IMAGE_EXTS if (img_dir / (lab.stem + e)).exists()), None)
        if img is not None:
            pairs.append((img, lab))
    if not pairs:
        raise FileNotFoundError(f"{root}: no label_2/*.txt with a matching image in {img_dir}")
    return pairs
