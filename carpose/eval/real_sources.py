"""The real validation sources: where their labels and images are, what counts as a car, and the leak guard.

Why one registry: every tool that chooses or reports a model on real photos (``carpose-benchmark``,
``carpose-train --real``, the detector's epoch choice) must score the same frames with the same
rules, and every tool that *uses* real photos for something else (render backgrounds, BatchNorm
statistics, pseudo-labels) must refuse these frames. A figure measured on frames that also shaped the
model says nothing about a camera the model has never seen.

Sources (``VALIDATION_SOURCES``):

- ``nuscenes_front``: 50 nuScenes front-camera frames (Boston, 1600x900), the project's hand labels
  (``data/real/nuscenes_front/label_2``, with a "sure" flag), images in ``../shared``. Every labelled
  car is scored (the labellers drew cars >= 30 px).
- ``kitti_val``: 44 KITTI frames (Karlsruhe, 1242x375) with the official labels, in ``../shared``.
  Pose: ``Car`` under KITTI's usual filter (box >= 20 px, truncation <= 0.5, occlusion <= 2). Detector:
  ``Car`` and ``Van`` are cars (a van is what the product must find too).
- ``stanford_val``: the validation part (a quarter of the car classes, 1,557 photos) of the labelled
  real photos of single cars in ``../shared/real/stanford_cars`` (``kind="photos"``,
  ``carpose.eval.photo_labels``): pose only, each photo's box is the whole photo. Its training part is
  the one labelled real data any training run may read (``carpose-real-crops``).

``../shared`` is found at ``$CARPOSE_SHARED`` or beside the checkout; a source whose images are absent
is reported as missing, never silently scored on nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from carpose.eval.photo_labels import is_val_class
from carpose.shipped import SOURCE_ROOT


def shared_root() -> Path:
    """``../shared`` beside the checkout, or ``$CARPOSE_SHARED``."""
    return Path(os.environ.get("CARPOSE_SHARED", SOURCE_ROOT.parent / "shared"))


@dataclass(frozen=True)
class RealSource:
    """One labelled real validation source (KITTI-format labels) and its scoring rules."""

    name: str
    labels: Path  # KITTI folder holding label_2/
    images: Path  # image folder
    camera: str = ""
    #: Pose on the true boxes: which objects, and the filter (KITTI "moderate"-like).
    pose_types: tuple[str, ...] = ("Car",)
    pose_min_height: float = 20.0
    pose_max_truncation: float = 0.5
    pose_max_occlusion: int = 2
    #: Detector: which types are cars (others of ``carpose.eval.det_eval`` are ignore regions).
    det_types: tuple[str, ...] = ("Car",)
    #: ``frames``: KITTI-format frames (``labels/label_2``); ``photos``: a labelled-photos folder (``labels``
    #: holds labels.tsv, carpose.eval.photo_labels), scored on the pose of one ``part`` of its class split.
    kind: str = "frames"
    part: str = "val"

    @property
    def has_frames(self) -> bool:
        """Whether the source has whole frames (a detector can be scored on it), not single-car photos."""
        return self.kind == "frames"

    @property
    def available(self) -> bool:
        return not self.missing()

    def missing(self) -> str:
        """Why the source cannot be scored here ('' when it can)."""
        if self.kind == "photos":
            if not (self.labels / "labels.tsv").is_file():
                return f"no labels at {self.labels / 'labels.tsv'} (../shared is optional; set CARPOSE_SHARED)"
        elif not (self.labels / "label_2").is_dir():
            return f"no labels at {self.labels / 'label_2'}"
        if not self.images.is_dir():
            return f"no images at {self.images} (../shared is optional; set CARPOSE_SHARED)"
        return ""


#: The labelled-photos folders under ``../shared/real`` that are split by class (carpose.eval.photo_labels):
#: the folder is validation data as a whole; its training part alone feeds training (``carpose-real-crops``).
SPLIT_PHOTO_FOLDERS = ("stanford_cars",)


def frame_sources(shared: Path | None = None) -> list[RealSource]:
    """The sources with whole labelled frames (pose and detector), available or not."""
    return [s for s in validation_sources(shared) if s.has_frames]


def validation_sources(shared: Path | None = None) -> list[RealSource]:
    """The project's real validation sources (available or not): frames first, then labelled photos."""
    sh = shared_root() if shared is None else Path(shared)
    stanford = sh / "real" / "stanford_cars"
    return [
        RealSource("nuscenes_front", SOURCE_ROOT / "data" / "real" / "nuscenes_front",
                   sh / "real" / "nuscenes_front" / "image_2", "nuScenes front, Boston, 1600x900",
                   pose_min_height=0.0, pose_max_truncation=1.0, pose_max_occlusion=3),
        RealSource("kitti_val", sh / "real" / "kitti_val", sh / "real" / "kitti_val" / "image_2",
                   "KITTI, Karlsruhe, 1242x375", det_types=("Car", "Van")),
        RealSource("stanford_val", stanford, stanford / "images",
                   "Stanford Cars photos of single cars, the validation quarter of the classes", pose_min_height=0.0,
                   pose_max_truncation=1.0, pose_max_occlusion=3, det_types=(), kind="photos", part="val"),
    ]


def source_from_spec(spec: str, shared: Path | None = None) -> RealSource:
    """A registered source name (``kitti_val``), or ``FOLDER`` / ``FOLDER:IMAGES`` for any KITTI-format
    folder (scored with the default rules; ``Car`` and ``Van`` are cars for the detector)."""
    known = {s.name: s for s in validation_sources(shared)}
    if spec in known:
        return known[spec]
    folder, _, images = spec.partition(":")
    root = Path(folder)
    if not (root / "label_2").is_dir():
        raise FileNotFoundError(f"real source {spec!r}: neither a known source ({', '.join(known)}) nor a "
                                f"KITTI-format folder with label_2/")
    return RealSource(root.name, root, Path(images) if images else root / "image_2", det_types=("Car", "Van"))


def resolve_sources(specs: list[str] | None, shared: Path | None = None,
                    photos: bool = False) -> tuple[list[RealSource], list[str]]:
    """The sources named by ``specs`` (default: every registered frame source, and with ``photos`` the
    labelled-photos ones too) that can be scored here, and a line for each one that cannot (missing images
    or labels)."""
    if specs:
        srcs = [source_from_spec(s, shared) for s in specs]
    else:
        srcs = validation_sources(shared) if photos else frame_sources(shared)
    why = [(s, s.missing()) for s in srcs]
    return [s for s, w in why if not w], [f"{s.name}: {w}" for s, w in why if w]


def available_sources(specs: list[str] | None, prog: str, photos: bool = False) -> list[RealSource]:
    """``resolve_sources`` for a CLI: each source that cannot be scored here is named on stderr."""
    import sys

    ok, missing = resolve_sources(specs, photos=photos)
    for m in missing:
        print(f"{prog}: skipped {m}", file=sys.stderr)
    return ok


# ----------------------------------------------------------------------------------------------- leaks


def validation_folders(shared: Path | None = None) -> list[Path]:
    """Every folder whose frames are validation frames: the sources' image and label folders, and the
    whole ``../shared/real`` tree (any labelled real frame the project is checked on)."""
    sh = shared_root() if shared is None else Path(shared)
    out = [sh / "real", SOURCE_ROOT / "data" / "real"]
    for s in validation_sources(sh):
        out += [s.images, s.labels]
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


#: Path pieces that name validation frames wherever the checkout or ../shared sits (a dataset records the
#: path as it was given, relative to the directory it was rendered from).
VALIDATION_PATH_PIECES = ("real/nuscenes_front", "real/kitti_val", "real/stanford_cars", "data/real/")


def leaked_folder(path: str | Path, shared: Path | None = None) -> Path | None:
    """The validation folder that ``path`` is, or lies in (None when it is not validation data)."""
    p = Path(path)
    hit = next((f for f in validation_folders(shared) if _inside(p, f)), None)
    if hit is None:
        text = "/" + p.as_posix().strip("/") + "/"
        hit = next((Path(piece) for piece in VALIDATION_PATH_PIECES if f"/{piece.strip('/')}/" in text), None)
    return hit


def leaks_in_metadata(meta: dict) -> list[str]:
    """Where a model's metadata says validation frames shaped it: BatchNorm statistics (``bn_adapted``)
    training renders on validation backgrounds (``train_backgrounds``) or pseudo-labelled validation
    frames (``pseudo_labelled_photos``, the detector's self-training). Figures on those sources are
    optimistic; ``carpose-benchmark`` prints these lines beside them."""
    out = []
    bn = meta.get("bn_adapted") or {}
    for key in ("images", "boxes"):
        v = bn.get(key)
        if isinstance(v, str) and leaked_folder(v.split()[-1]) is not None:
            out.append(f"BatchNorm statistics from validation frames ({v})")
    for v in meta.get("train_backgrounds") or []:
        if isinstance(v, str) and leaked_folder(v) is not None:
            out.append(f"trained on renders over validation backgrounds ({v})")
    for rec in meta.get("real_photos") or []:
        if isinstance(rec, dict) and (why := real_photo_leaks(rec)):
            out.append(f"trained on {why}")
    for v in meta.get("pseudo_labelled_photos") or []:
        if isinstance(v, str) and leaked_folder(v) is not None:
            out.append(f"trained on pseudo-labelled validation frames ({v})")
    return out


def real_photo_leaks(record: dict) -> str:
    """Why a record of labelled real photos used for training (``carpose-real-crops``' ``real_photos``:
    folder, part, classes) holds validation photos: not the training part, or a class that the folder's
    split now holds out (carpose.eval.photo_labels). '' when it is clean."""
    if record.get("part") != "train":
        return f"labelled photos of part {record.get('part')!r} of {record.get('folder')} (only 'train' may train)"
    held = sorted(c for c in record.get("classes", []) if is_val_class(c))
    return f"labelled photos of validation classes {held[:5]} of {record.get('folder')}" if held else ""


class ValidationLeakError(ValueError):
    """Validation frames were asked to serve as training signal (backgrounds, BN statistics, ...)."""


def refuse_validation_frames(path: str | Path | None, use: str, shared: Path | None = None) -> None:
    """Raise :class:`ValidationLeakError` when ``path`` holds validation frames. ``use`` says what the
    frames were meant for ("render backgrounds", "BatchNorm statistics"), so the error reads well."""
    if path is None:
        return
    hit = leaked_folder(path, shared)
    if hit is not None:
        raise ValidationLeakError(
            f"{path} holds real validation frames ({hit}); they may choose and score models but never serve "
            f"as {use}. Use unlabelled real photos instead: {shared_root() / 'real_unlabelled'}")
