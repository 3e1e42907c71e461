"""KITTI-format folders (``image_2/*.png`` + ``label_2/*.txt``): parse labels, pair them with images.

Real labelled photos come in this format, and ``carpose-render export --kitti`` writes synthetic
scenes in it, so pose and detector evaluation read one format. Angles go through the convention
module (``azimuth_from_kitti_alpha``), never by hand.
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

    @property
    def azimuth_deg(self) -> float:
        return float(azimuth_from_kitti_alpha(self.alpha))


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
        objs.append(KittiObject(parts[0], vals[0], int(vals[1]), vals[2], np.array(vals[3:7], np.float64)))
    return objs


def kitti_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    root = Path(root)
    img_dir, lab_dir = root / "image_2", root / "label_2"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise FileNotFoundError(f"{root} is not a KITTI-format folder: it needs image_2/ and label_2/")
    pairs = []
    for lab in sorted(lab_dir.glob("*.txt")):
        img = next((img_dir / (lab.stem + e) for e in IMAGE_EXTS if (img_dir / (lab.stem + e)).exists()), None)
        if img is not None:
            pairs.append((img, lab))
    if not pairs:
        raise FileNotFoundError(f"{root}: no label_2/*.txt with a matching image_2 image")
    return pairs
