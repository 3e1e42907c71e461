"""A labelled-photos source: a folder of single-car photos, each cropped to its car, with a labels table.

Why a second kind of source: KITTI-format frames hold few cars, from two cameras and two drives. A
folder of real car photos with hand-aligned 3-D pose labels (``../shared/real/stanford_cars``: 7,736
web photos of 196 makes and models) holds thousands, from many cameras, with real fronts and rears.
It serves twice, so it is **split by car class**, never by photo: the same model photographed twice
would otherwise sit on both sides and the validation figure would measure memory. The validation part
(``stanford_val``, a quarter of the classes) chooses and scores models like the frame sources; the
training part (``carpose-real-crops``) is the only part any training run may read
(training/dataset/provenance.py refuses a file holding a validation class).

The table (``labels.tsv``, tab-separated, a header row) needs the columns ``file`` (under ``images/``),
``azimuth_deg`` (carpose convention) and ``class_id``; ``elevation_deg`` and ``upstream_h`` (the car's
height in the original photo, px) are read where present.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

LABELS_FILE = "labels.tsv"
IMAGES_DIR = "images"
#: Share of the classes held out for validation (as the renders' held-out meshes). Stanford Cars: 40 of its
#: 196 classes, 1,557 photos, every view sector present (58 rears, 271 fronts).
VAL_FRACTION = 0.25
PARTS = ("train", "val", "all")


@dataclass(frozen=True)
class PhotoLabels:
    """The rows of a labels table (one per photo), as arrays."""

    folder: Path
    files: list[str]
    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    class_id: np.ndarray
    height_px: np.ndarray  # the car's height in the photo it was cut from (NaN where unknown)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, keep: np.ndarray) -> PhotoLabels:
        keep = np.asarray(keep, bool)
        return PhotoLabels(self.folder, [f for f, k in zip(self.files, keep, strict=True) if k], self.azimuth_deg[keep],
                           self.elevation_deg[keep], self.class_id[keep], self.height_px[keep])

    def image_path(self, i: int) -> Path:
        return self.folder / IMAGES_DIR / self.files[i]


def read_photo_labels(folder: str | Path) -> PhotoLabels:
    """The labels table of ``folder``; a missing file or column, or a bad value, is a clear error."""
    folder = Path(folder)
    path = folder / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {LABELS_FILE} (a labelled-photos folder holds {LABELS_FILE} and "
                                f"{IMAGES_DIR}/)")
    files, az, el, cls, hgt = [], [], [], [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        need = {"file", "azimuth_deg", "class_id"}
        if not need <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: needs the columns {sorted(need)}, has {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                a = float(row["azimuth_deg"])
                c = int(row["class_id"])
                e = float(row.get("elevation_deg") or "nan")
                h = float(row.get("upstream_h") or "nan")
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            if not np.isfinite(a):
                raise ValueError(f"{path}:{line}: azimuth {row['azimuth_deg']!r} is not a number")
            files.append(row["file"])
            az.append(a % 360.0)
            el.append(e)
            cls.append(c)
            hgt.append(h)
    return PhotoLabels(folder, files, np.asarray(az, np.float64), np.asarray(el, np.float64),
                       np.asarray(cls, np.int64), np.asarray(hgt, np.float64))


def is_val_class(class_id: int, fraction: float = VAL_FRACTION) -> bool:
    """Whether a class belongs to the validation part: a fixed function of its id (a hash, not an
    order), so every tool, every session and every machine draws the same line."""
    h = int.from_bytes(hashlib.sha1(f"carpose-class-{int(class_id)}".encode()).digest()[:8], "big")
    return h / 2.0**64 < fraction


def split_mask(labels: PhotoLabels, part: str, fraction: float = VAL_FRACTION) -> np.ndarray:
    """Which rows belong to ``part`` ('train', 'val' or 'all')."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    val = np.array([is_val_class(c, fraction) for c in labels.class_id], bool)
    return {"train": ~val, "val": val, "all": np.ones(len(val), bool)}[part]


def val_classes(labels: PhotoLabels, fraction: float = VAL_FRACTION) -> list[int]:
    """The validation part's class ids present in the table, sorted."""
    return sorted({int(c) for c in labels.class_id if is_val_class(c, fraction)})


def read_photo(path: Path) -> np.ndarray | None:
    """A photo as BGR uint8, or None when it cannot be read."""
    return cv2.imread(str(path), cv2.IMREAD_COLOR)
