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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carpose.convention import azimuth_from_kitti_alpha

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


@dataclass
class KittiObject:
    type: str
    truncated: float
    occluded: int
    alpha: float
    box_xyxy: np.ndarray
    #: Labeller sure of the azimuth within 30 deg (16th field of our real labels; absent = sure).
    sure: bool = True

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
        objs.append(KittiObject(parts[0], vals[0], int(vals[1]), vals[2], np.array(vals[3:7], np.float64), sure))
    return objs


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
