"""Real labelled frames as a rosbag2 test bag: a KITTI-format folder -> the synthetic drive's topics.

    carpose-make-bag --from-kitti ../shared/real/kitti_val data/kitti_bag
    carpose-make-bag --from-kitti data/real/nuscenes_front data/nuscenes_bag \\
        --images ../shared/real/nuscenes_front/image_2

Why: ``carpose-bag-eval`` replays a bag through the ROS 2 node; with this, the frames it replays can
be real photos with real labels instead of a rendered drive, scored by the same code.

What the bag holds (topics of carpose.ros.bag, one message each per frame, stamps ``--fps`` apart
in label-file name order):

- the image (``image_2/<name>.png|jpg``, or ``--images``) at its own size: KITTI mixes 1242x375
  and 1224x370 frames;
- CameraInfo with K = the left 3x3 of ``P2`` of ``calib/<name>.txt``. **No calib folder, no
  CameraInfo**: intrinsics are not invented (the node then uses its ``camera_hfov_deg``, and says
  so); a calib folder must have a file for every frame;
- ground truth, per carpose.eval.kitti.split_ground_truth (the rule of ``carpose-det-eval``):
  ``types`` (default Car and Van) at least ``min_height`` px tall (default 25, KITTI's
  "moderate") are counted cars; smaller ones of those types, DontCare, Van and Truck are ignore
  regions. Azimuths come from alpha through carpose.convention (``KittiObject.azimuth_deg``); an
  ignore region without an alpha (DontCare's -10) has azimuth NaN, a counted car without one is an
  error. Position = the centre of the 3-D box in the image_2 camera (KITTI's location is the
  bottom centre in the reference camera: lifted by half the height, moved by P2's offset when
  there is a calib) and rotation_y, when the label has a 3-D box; our hand labels have none
  (-1000 / -10): position None, rotation_y NaN, so distance tables leave those cars out rather than
  guess. track_id is -1: separate frames have no car identities.

The bag is staged in ``OUT.partial`` and renamed when complete (carpose.ros.bag.atomic_bag); its
``custom_data["carpose.kitti"]`` records the folder, image folder, frame names and count, types,
min height and fps. Bad input (no label_2, an unreadable image, a malformed label or calib) raises
an error naming the file, before anything is written where possible.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from carpose.eval.kitti import KittiObject, kitti_pairs, parse_kitti_label, split_ground_truth
from carpose.ros.bag import START_NS, STORAGES, BagWriter, GtCar, atomic_bag

DEFAULT_TYPES = ("Car", "Van")
#: KITTI "moderate" box height (px); carpose-det-eval's default is 15 (its "all cars" row).
DEFAULT_MIN_HEIGHT = 25.0
CUSTOM_DATA_KEY = "carpose.kitti"


@dataclass
class Calib:
    """What a bag needs of a KITTI calib file: the intrinsics and image_2's offset from the
    reference camera the 3-D labels are given in."""

    K: np.ndarray  # 3x3
    offset: np.ndarray  # (3,) m, added to a reference-camera point to get it in this camera


def read_calib(path: str | Path) -> Calib:
    """``P2`` of a KITTI calib file as K and offset (P2 = K [I | offset])."""
    for ln, line in enumerate(Path(path).read_text().splitlines(), 1):
        key, _, rest = line.partition(":")
        if key.strip() != "P2":
            continue
        try:
            vals = [float(v) for v in rest.split()]
        except ValueError as exc:
            raise ValueError(f"{path}:{ln}: P2 has a non-numeric value: {exc}") from exc
        if len(vals) != 12:
            raise ValueError(f"{path}:{ln}: P2 needs 12 numbers (3x4), got {len(vals)}")
        P = np.array(vals, np.float64).reshape(3, 4)
        K = P[:, :3]
        if abs(np.linalg.det(K)) < 1e-9 or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"{path}:{ln}: P2's left 3x3 is not a camera matrix: {K.tolist()}")
        return Calib(K, np.linalg.solve(K, P[:, 3]))
    raise ValueError(f"{path}: no 'P2:' line (a KITTI calib file has P0..P3, R0_rect, Tr_velo_to_cam)")


def object_gt(o: KittiObject, ignore: bool, calib: Calib | None, where: str) -> GtCar:
    """One label object as ground truth (see the module docstring for position and azimuth)."""
    if not o.has_alpha and not ignore:
        raise ValueError(f"{where}: {o.type} at {o.box_xyxy.tolist()} is counted but has no alpha ({o.alpha:g})")
    azimuth = o.azimuth_deg if o.has_alpha else math.nan
    position, ry = None, math.nan
    if o.has_3d:
        position = o.location - np.array([0.0, o.dims_hwl[0] / 2, 0.0])  # y points down
        if calib is not None:
            position = position + calib.offset
        ry = float(o.rotation_y)
    return GtCar(np.asarray(o.box_xyxy, np.float64), azimuth, -1, ignore, position, ry)


def frame_gt(objs: list[KittiObject], types: tuple[str, ...], min_height: float, calib: Calib | None,
             where: str) -> list[GtCar]:
    """Counted cars and ignore regions of one label file, in label order (others left out)."""
    counted, ignored = split_ground_truth(objs, types, min_height)
    keep = sorted([(i, False) for i in counted] + [(i, True) for i in ignored])
    return [object_gt(objs[i], ign, calib, where) for i, ign in keep]


@dataclass
class KittiFrame:
    image: Path
    label: Path
    gt: list[GtCar]
    calib: Calib | None


def read_frames(root: str | Path, images: str | Path | None = None, types: tuple[str, ...] = DEFAULT_TYPES,
                min_height: float = DEFAULT_MIN_HEIGHT, max_frames: int | None = None) -> list[KittiFrame]:
    """Every labelled frame with an image, labels and calibs parsed (images are read later)."""
    root = Path(root)
    pairs = kitti_pairs(root, images)
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"--frames must be at least 1, got {max_frames}")
        pairs = pairs[:max_frames]
    calib_dir = root / "calib"
    frames = []
    for img, lab in pairs:
        calib = None
        if calib_dir.is_dir():
            cal = calib_dir / f"{lab.stem}.txt"
            if not cal.is_file():
                raise FileNotFoundError(f"{cal} is missing: {calib_dir} has calibs, so every frame needs one")
            calib = read_calib(cal)
        frames.append(KittiFrame(img, lab, frame_gt(parse_kitti_label(lab), types, min_height, calib, str(lab)), calib))
    return frames


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: unreadable image (not a PNG/JPEG OpenCV can decode, or truncated)")
    return img


def make_kitti_bag(root: str | Path, out: str | Path, images: str | Path | None = None, fps: float = 10.0,
                   types: tuple[str, ...] = DEFAULT_TYPES, min_height: float = DEFAULT_MIN_HEIGHT,
                   storage: str = "mcap", max_frames: int | None = None, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Write the bag of a KITTI-format folder (see the module docstring); returns its path."""
    from tqdm import tqdm

    out = Path(out)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not types:
        raise ValueError("types is empty: give at least one KITTI type, e.g. Car")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    frames = read_frames(root, images, types, min_height, max_frames)
    img_dir = frames[0].image.parent
    period_ns = round(1e9 / fps)
    with atomic_bag(out) as tmp, BagWriter(tmp, storage) as w:
        w.set_custom_data(CUSTOM_DATA_KEY, json.dumps(
            {"folder": str(Path(root).resolve()), "images": str(img_dir.resolve()), "frames": len(frames),
             "names": [f.label.stem for f in frames], "types": list(types), "min_height_px": min_height,
             "fps": fps, "camera_info": "calib P2" if frames[0].calib is not None else "none (no calib)"}))
        for i, f in enumerate(tqdm(frames, desc="kitti bag", unit="frame", disable=not progress,
                                   dynamic_ncols=True)):
            w.write_frame(START_NS + i * period_ns, read_image(f.image), None if f.calib is None else f.calib.K, f.gt)
    return out
