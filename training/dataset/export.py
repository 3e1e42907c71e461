"""Export a scenes file to the folder formats other tools read: YOLO (ultralytics) and KITTI.

KITTI labels are written with the carpose convention's conversion (alpha from azimuth), so a
KITTI-format folder made here can be read back through the same convention and compared.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.convention import kitti_alpha_from_azimuth
from training.dataset.reader import CarposeDataset

#: Cars whose visible part is smaller than this are labelled DontCare (KITTI) / skipped (YOLO).
MIN_VISIBLE_FRACTION = 0.15
MIN_BOX_HEIGHT_PX = 8.0


def _keep(box: np.ndarray, visible: float) -> bool:
    return visible >= MIN_VISIBLE_FRACTION and (box[3] - box[1]) >= MIN_BOX_HEIGHT_PX


#: Which box a YOLO label gives a car: its visible pixels, or its whole silhouette cut by the frame.
BOX_KINDS = ("visible", "amodal")


def export_yolo(scenes: str | Path, out_dir: str | Path, val_fraction: float = 0.1, prefix: str = "",
                boxes: str = "visible") -> Path:
    """images/{train,val}/*.jpg + labels/{train,val}/*.txt (class 0 = car) + data.yaml. ``prefix``
    starts every file name, so several scenes files can be exported into one folder.

    ``boxes``: "visible" boxes a car's visible pixels; "amodal" boxes its whole silhouette as if
    nothing stood in front of it, cut by the frame, which is how KITTI labels a hidden car (its 2-D
    boxes agree with its projected 3-D boxes at IoU 0.98 for every occlusion level). Which cars are
    labelled does not change: at least 15 % visible, the visible part at least 8 px tall."""
    if boxes not in BOX_KINDS:
        raise ValueError(f"boxes must be one of {BOX_KINDS}, not {boxes!r}")
    out = Path(out_dir)
    with CarposeDataset(scenes) as ds:
        if boxes == "amodal" and "cars/bbox_amodal" not in ds.h5:
            raise ValueError(f"{scenes} has no amodal boxes (rendered before 2026-12-07): render it again "
                             "or export visible boxes")
        # At least one validation frame when there are two or more: ultralytics refuses an empty val set.
        n_val = min(len(ds) - 1, max(1, int(round(len(ds) * val_fraction)))) if len(ds) >= 2 else 0
        for i, img in tqdm(ds.iter_images(), total=len(ds), desc="export yolo", unit="frame"):
            part = "val" if i >= len(ds) - n_val else "train"
            (out / "images" / part).mkdir(parents=True, exist_ok=True)
            (out / "labels" / part).mkdir(parents=True, exist_ok=True)
            h, w = img.shape[:2]
            cv2.imwrite(str(out / "images" / part / f"{prefix}{i:06d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cars = ds.cars_of_frame(i)
            lines = []
            label_boxes = cars["bbox_amodal"] if boxes == "amodal" else cars["bbox"]
            for box, label_box, vis in zip(cars["bbox"], label_boxes, cars["visible_fraction"], strict=True):
                if _keep(box, vis):
                    x1, y1, x2, y2 = label_box
                    lines.append(f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                                 f"{(y2 - y1) / h:.6f}")
            (out / "labels" / part / f"{prefix}{i:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    val_dir = "images/val" if n_val else "images/train"  # a one-frame set validates on itself
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\nval: {val_dir}\n"
                                   "names:\n  0: car\n")
    return out


def kitti_line(box: np.ndarray, azimuth_deg: float, dims_lwh: np.ndarray, loc: np.ndarray, rot_y: float,
               truncation: float, visible: float) -> str:
    """One KITTI label line (type trunc occ alpha x1 y1 x2 y2 h w l x y z ry)."""
    occluded = 0 if visible > 0.9 else 1 if visible > 0.6 else 2 if visible > 0.3 else 3
    kind = "Car" if _keep(box, visible) else "DontCare"
    alpha = float(kitti_alpha_from_azimuth(azimuth_deg))
    l, w, h = dims_lwh
    return (f"{kind} {min(max(truncation, 0.0), 1.0):.2f} {occluded} {alpha:.4f} "
            f"{box[0]:.2f} {box[1]:.2f} {box[2]:.2f} {box[3]:.2f} {h:.2f} {w:.2f} {l:.2f} "
            f"{loc[0]:.2f} {loc[1]:.2f} {loc[2]:.2f} {rot_y:.4f}")


def export_kitti(scenes: str | Path, out_dir: str | Path) -> Path:
    """image_2/*.png + label_2/*.txt + calib/*.txt (P2 only) in KITTI's object format."""
    out = Path(out_dir)
    for sub in ("image_2", "label_2", "calib"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    with CarposeDataset(scenes) as ds:
        for i, img in tqdm(ds.iter_images(), total=len(ds), desc="export kitti", unit="frame"):
            cv2.imwrite(str(out / "image_2" / f"{i:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            c = ds.cars_of_frame(i)
            lines = [kitti_line(c["bbox"][j], float(c["azimuth_deg"][j]), c["dimensions"][j],
                                c["location_cam"][j], float(c["rotation_y"][j]), float(c["truncation"][j]),
                                float(c["visible_fraction"][j]))
                     for j in range(len(c["bbox"])) if c["bbox"][j][2] > c["bbox"][j][0]]
            (out / "label_2" / f"{i:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            K = ds.h5["K"][i]
            p2 = np.hstack([K, np.zeros((3, 1))]).reshape(-1)
            (out / "calib" / f"{i:06d}.txt").write_text("P2: " + " ".join(f"{v:.6e}" for v in p2) + "\n")
    return out
