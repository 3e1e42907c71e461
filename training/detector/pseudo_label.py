"""``carpose-pseudo-label``: label the cars of unlabelled real road photos with a teacher detector.

    carpose-pseudo-label ../shared/real_unlabelled --teacher models/carpose_det.onnx --out data/pseudo

Why: the detector is trained on renders and finds about 40 % of the cars of a camera it has never
seen. Real photos of other cities and cameras (``../shared/real_unlabelled``, never validation
frames) carry exactly the look the renders lack, but no labels. A *teacher* (the shipped detector,
run at a larger input than the deployed one and with ultralytics' test-time augmentation: flips and
three scales) labels them; the student, trained at the deployed input on renders plus these photos,
learns real cars from them (self-training).

``--teacher`` given more than once makes one teacher of several detectors: each runs as above and
their boxes are fused (training/detector/box_fusion.py), a box scoring the mean of its detectors'
scores (0 for one that missed it), so a car only one of two detectors saw scores at most half.
Measured on the validation sources: two detectors fused label KITTI cars at precision 0.81 and recall
0.47 where the better one alone has 0.79 and 0.40 (models/README.md).

Each photo's teacher boxes fall in three bands of score:

- ``>= --keep`` (sure): written as car labels;
- ``--ignore`` .. ``--keep`` (unsure): painted grey (114, ultralytics' letterbox colour) in the
  training copy of the photo, so the student is neither taught that they are cars nor that they
  are background;
- below ``--ignore``: background.

A box that comes back at the same place of the frame in a quarter of a source's photos (one folder
of at least 20) and touches the frame's left, right or bottom edge is the camera's own car (a dash
camera's wing mirror or bonnet: the teacher boxes them at 0.5-0.8, seen in the sheet); whatever its
score, it is greyed, never a label (``own_car_boxes``). Cars followed through a drive stay labels:
they do not touch the frame's edge.

Outputs under ``--out``:

- ``yolo/images/train``, ``yolo/labels/train``: the training copies and their YOLO labels, for
  ``carpose-train-det --pseudo OUT``;
- ``teacher_2/<stem>.txt``: every teacher box from ``--ignore`` up, with its score (KITTI format,
  score last), written once: ``--rebuild`` re-bands them with other thresholds without the teacher;
- ``label_2/<stem>.txt``: every box above ``--ignore`` in KITTI format (score in the last field), for
  ``carpose-render scenes --background-labels OUT/label_2``: road scenes rendered on these photos
  then inpaint the real cars away instead of teaching the detector that they are background;
- ``pseudo.json``: the teacher, thresholds, counts and the photo folder (provenance: training refuses
  pseudo-labels of validation frames, like renders over them);
- ``sheet.jpg``: a contact sheet of labelled photos (green: sure, orange: unsure); look at it.

The thresholds are chosen where the teacher's precision and recall are measured on the real
validation sources (``--score``); the labels themselves never see a validation frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import carpose.detect  # noqa: F401  (makes ultralytics offline before it is imported)
from carpose.draw import tile_grid
from carpose.eval.kitti import kitti_pairs, parse_kitti_label, split_ground_truth
from carpose.eval.real_sources import ValidationLeakError, leaked_folder, refuse_validation_frames, resolve_sources
from carpose.eval.scoring import detection_report, match_frame
from carpose.pipeline import DEFAULT_DET_MODEL
from carpose.track import iou_matrix
from training.detector.box_fusion import fuse_boxes

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
GREY = 114  # ultralytics' letterbox colour: the network sees it as "no image here"


@dataclass
class TeacherConfig:
    """How the teacher runs: a larger input than the deployed detector and, with ``augment``,
    ultralytics' test-time augmentation (the image at scales 1, 0.83 and 0.67, the middle one
    mirrored; boxes merged by NMS). Several ``weights`` make one teacher: each detector runs at a
    score floor of ``ignore / len(weights)`` and their boxes are fused (training/detector/box_fusion.py),
    a box scoring its detectors' mean score (0 for a detector that missed it)."""
    weights: str | list[str]
    imgsz: int = 960
    augment: bool = True
    iou: float = 0.5
    ignore: float = 0.25  # boxes from here up are unsure (greyed) or sure; the teacher records them from here
    keep: float = 0.55  # boxes from here up are labels
    min_px: float = 6.0  # boxes lower or narrower than this are dropped (too small to learn or to grey)


class Teacher:
    """The teacher detector (one, or several fused): every box with a score of at least ``config.ignore``."""

    def __init__(self, config: TeacherConfig, work_dir: str | Path) -> None:
        from ultralytics import YOLO

        self.config = config
        self.models = []
        from training.detector.warm_start import as_weights

        for w in self.weights_list(config):
            # A fixed-size ONNX cannot run at another input: turn it back into weights (same outputs).
            weights = as_weights(w, Path(work_dir) / f"teacher_{Path(w).stem}.pt")
            self.models.append(YOLO(str(weights), task="detect", verbose=False))

    @staticmethod
    def weights_list(config: TeacherConfig) -> list[str]:
        weights = [config.weights] if isinstance(config.weights, str | Path) else list(config.weights)
        if not weights:
            raise ValueError("a teacher needs at least one detector")
        if len({Path(w).stem for w in weights}) != len(weights):
            raise ValueError(f"teacher detectors need distinct file names: {weights}")
        return [str(w) for w in weights]

    def boxes(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) xyxy boxes in image pixels and (N,) scores, best first."""
        c = self.config
        floor = c.ignore / len(self.models)
        per_model = []
        for model in self.models:
            r = model.predict(image_bgr, imgsz=c.imgsz, conf=floor, iou=c.iou, augment=c.augment,
                              max_det=300, device="cpu", verbose=False, save=False)[0].boxes
            per_model.append((r.xyxy.cpu().numpy().astype(np.float64).reshape(-1, 4),
                              r.conf.cpu().numpy().astype(np.float64).reshape(-1)))
        xyxy, scores = per_model[0] if len(per_model) == 1 else fuse_boxes(per_model)
        h, w = image_bgr.shape[:2]
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
        ok = ((xyxy[:, 2] - xyxy[:, 0]) >= c.min_px) & ((xyxy[:, 3] - xyxy[:, 1]) >= c.min_px) & (scores >= c.ignore)
        order = np.argsort(-scores[ok], kind="stable")
        return xyxy[ok][order], scores[ok][order]


def split_bands(xyxy: np.ndarray, scores: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """(sure boxes, unsure boxes). An unsure box that mostly lies inside a sure one is dropped: greying
    it would paint over part of a labelled car."""
    sure, unsure = xyxy[scores >= keep], xyxy[scores < keep]
    if len(sure) and len(unsure):
        ix1 = np.maximum(unsure[:, None, 0], sure[None, :, 0])
        iy1 = np.maximum(unsure[:, None, 1], sure[None, :, 1])
        ix2 = np.minimum(unsure[:, None, 2], sure[None, :, 2])
        iy2 = np.minimum(unsure[:, None, 3], sure[None, :, 3])
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
        area = (unsure[:, 2] - unsure[:, 0]) * (unsure[:, 3] - unsure[:, 1])
        unsure = unsure[(inter / np.maximum(area[:, None], 1e-9)).max(axis=1) < 0.5]
    return sure, unsure


def touches_frame(xyxy: np.ndarray, width: float, height: float, margin: float = 2.0) -> np.ndarray:
    """Boxes touching the frame's left, right or bottom edge (within ``margin``): where cars are cut
    by the frame and where the teacher boxes the camera's own car (a dash camera's bonnet and wing
    mirror). The pose model's self-training leaves such boxes out (training/pose/pseudo_pose.py)."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return (xyxy[:, 0] <= margin) | (xyxy[:, 2] >= width - margin) | (xyxy[:, 3] >= height - margin)


def own_car_boxes(norm_boxes: list[np.ndarray], min_photos: int = 20, share: float = 0.25, iou: float = 0.5,
                  edge: float = 0.005) -> list[np.ndarray]:
    """Per photo of one source (boxes as fractions of the frame, x1 y1 x2 y2), which boxes are the
    camera's own car: touching the left, right or bottom edge, and overlapping (IoU >= ``iou``) a box
    of at least ``share`` of the source's other photos. Sources under ``min_photos`` photos are too
    short to tell a mounted part from a car followed for a few frames: nothing is flagged there."""
    flags = [np.zeros(len(b), bool) for b in norm_boxes]
    n = len(norm_boxes)
    if n < min_photos:
        return flags
    for i, b in enumerate(norm_boxes):
        touching = touches_frame(b, 1.0, 1.0, edge)
        if not touching.any():
            continue
        recurs = np.zeros(len(b))
        for j, other in enumerate(norm_boxes):
            if j != i and len(other):
                recurs += iou_matrix(b, other).max(axis=1) >= iou
        flags[i] = touching & (recurs >= share * (n - 1))
    return flags


def grey_out(image: np.ndarray, unsure: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with the ``unsure`` boxes painted grey, the ``sure`` ones left intact
    (painted back) where the two overlap."""
    out = image.copy()
    for x1, y1, x2, y2 in unsure.astype(int):
        out[y1:y2, x1:x2] = GREY
    for x1, y1, x2, y2 in sure.astype(int):
        out[y1:y2, x1:x2] = image[y1:y2, x1:x2]
    return out


def yolo_lines(sure: np.ndarray, width: int, height: int) -> list[str]:
    return [f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
            f"{(y2 - y1) / height:.6f}" for x1, y1, x2, y2 in sure]


def kitti_lines(xyxy: np.ndarray, scores: np.ndarray) -> list[str]:
    """KITTI label lines with no 3-D part (the fields carpose's readers need: type and box; score last)."""
    return [f"Car -1 -1 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} -1 -1 -1 -1000 -1000 -1000 -10 {s:.3f}"
            for (x1, y1, x2, y2), s in zip(xyxy, scores, strict=True)]


def photos_under(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist")
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise ValueError(f"{root} has no {'/'.join(PHOTO_SUFFIXES)} photos")
    stems = [p.stem for p in photos]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[:5]
        raise ValueError(f"photo names must be unique across {root} (label files are named by them): {dup}")
    return photos


def pseudo_label(folder: str | Path, out: str | Path, config: TeacherConfig, limit: int | None = None,
                 progress: bool = True) -> dict:
    """Run the teacher on every photo under ``folder`` (its boxes down to ``config.record`` go to
    ``teacher_2/``, once), then write the bands (:func:`write_bands`)."""
    refuse_validation_frames(folder, "pseudo-labelled training photos")
    photos = photos_under(folder)[:limit]
    out = Path(out)
    raw_dir = out / "teacher_2"
    raw_dir.mkdir(parents=True, exist_ok=True)
    teacher = Teacher(config, out)
    t0 = time.time()
    unreadable = 0
    for path in tqdm(photos, desc="pseudo-label", unit="photo", disable=not progress):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            unreadable += 1
            continue
        xyxy, scores = teacher.boxes(img)
        (raw_dir / f"{path.stem}.txt").write_text("".join(f"{line}\n" for line in kitti_lines(xyxy, scores)))
    (out / "teacher.json").write_text(json.dumps({"photos_folder": str(Path(folder)), "teacher": asdict(config),
                                                  "unreadable": unreadable, "limit": limit,
                                                  "teacher_minutes": round((time.time() - t0) / 60, 1)}, indent=1))
    return write_bands(out, config.keep, config.ignore, progress)


def read_teacher_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores of one ``teacher_2`` file."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    xyxy = np.array([[float(v) for v in r[4:8]] for r in rows], np.float64).reshape(-1, 4)
    return xyxy, np.array([float(r[-1]) for r in rows], np.float64)


def recorded_boxes(out: Path, folder: Path, ignore: float,
                   limit: int | None = None) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """The teacher's recorded boxes (``out/teacher_2``) scoring at least ``ignore``, per photo of ``folder``
    (the first ``limit``) that the teacher labelled, in photo order."""
    boxes = {}
    for path in photos_under(folder)[:limit]:
        f = out / "teacher_2" / f"{path.stem}.txt"
        if f.is_file():
            xyxy, scores = read_teacher_file(f)
            boxes[path] = (xyxy[scores >= ignore], scores[scores >= ignore])
    return boxes


def write_training_copy(out: Path, stem: str, image: np.ndarray, sure: np.ndarray, unsure: np.ndarray,
                        inpaint: np.ndarray, inpaint_scores: np.ndarray) -> float:
    """One photo of a pseudo-label folder: its training copy with the ``unsure`` boxes greyed
    (``yolo/images/train``), the ``sure`` boxes as YOLO labels (``yolo/labels/train``) and the boxes a
    renderer inpaints with their scores (``label_2``). Returns the share of the copy's pixels greyed."""
    img_dir, lab_dir, kitti_dir = out / "yolo/images/train", out / "yolo/labels/train", out / "label_2"
    for d in (img_dir, lab_dir, kitti_dir):
        d.mkdir(parents=True, exist_ok=True)
    h, w = image.shape[:2]
    copy = grey_out(image, unsure, sure)
    cv2.imwrite(str(img_dir / f"{stem}.jpg"), copy, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (lab_dir / f"{stem}.txt").write_text("".join(f"{line}\n" for line in yolo_lines(sure, w, h)))
    (kitti_dir / f"{stem}.txt").write_text("".join(f"{line}\n" for line in kitti_lines(inpaint, inpaint_scores)))
    return float(np.all(copy == GREY, axis=2).mean())


def write_bands(out: str | Path, keep: float, ignore: float, progress: bool = True) -> dict:
    """From the teacher's recorded boxes: the YOLO training copies (``>= keep`` labels, ``ignore`` ..
    ``keep`` greyed), ``label_2`` (every box ``>= ignore``: what a renderer inpaints), the sheet and
    ``pseudo.json``. Cheap: choosing other thresholds does not run the teacher again."""
    out = Path(out)
    meta = json.loads((out / "teacher.json").read_text())
    if ignore < meta["teacher"]["ignore"] or not 0 < ignore <= keep <= 1:
        raise ValueError(f"need {meta['teacher']['ignore']} <= ignore <= keep <= 1 (the teacher recorded boxes "
                         f"from {meta['teacher']['ignore']}), got ignore {ignore}, keep {keep}")
    folder = Path(meta["photos_folder"])
    refuse_validation_frames(folder, "pseudo-labelled training photos")
    counts = {"photos": 0, "sure": 0, "unsure": 0, "own_car": 0, "photos_with_sure": 0, "grey_fraction": 0.0}
    boxes = recorded_boxes(out, folder, ignore, meta.get("limit"))
    photos = list(boxes)
    own = own_car_flags(photos, boxes)
    sheet: list[np.ndarray] = []
    for path in tqdm(photos, desc="pseudo-label bands", unit="photo", disable=not progress):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        xyxy, scores = boxes[path]
        sure, unsure = split_bands(xyxy[~own[path]], scores[~own[path]], keep)
        unsure = np.vstack([unsure, xyxy[own[path]]])
        counts["own_car"] += int(own[path].sum())
        counts["grey_fraction"] += write_training_copy(out, path.stem, img, sure, unsure, xyxy, scores)
        counts["photos"] += 1
        counts["sure"] += len(sure)
        counts["unsure"] += len(unsure)
        counts["photos_with_sure"] += int(len(sure) > 0)
        if len(sheet) < 48 and counts["photos"] % max(1, len(photos) // 48) == 0:
            sheet.append(_annotated(img, sure, unsure))
    counts["grey_fraction"] = round(counts["grey_fraction"] / max(1, counts["photos"]), 4)
    if sheet:
        cv2.imwrite(str(out / "sheet.jpg"), tile_grid(sheet, 8), [cv2.IMWRITE_JPEG_QUALITY, 85])
    teacher = {**meta["teacher"], "keep": keep, "ignore": ignore}
    info = {"photos_folder": str(folder), "teacher": teacher, "unreadable": meta["unreadable"], **counts,
            "teacher_minutes": meta["teacher_minutes"]}
    (out / "pseudo.json").write_text(json.dumps(info, indent=1))
    return info


def own_car_flags(photos: list[Path], boxes: dict[Path, tuple[np.ndarray, np.ndarray]]) -> dict[Path, np.ndarray]:
    """:func:`own_car_boxes` per source (the photos' parent folders), in each photo's own frame size."""
    from PIL import Image  # reads the size from the header, not the pixels

    by_source: dict[Path, list[Path]] = {}
    for path in photos:
        by_source.setdefault(path.parent, []).append(path)
    flags = {}
    for group in by_source.values():
        norm = []
        for path in group:
            with Image.open(path) as im:
                w, h = im.size
            norm.append(boxes[path][0] / np.array([w, h, w, h], np.float64))
        flags.update(zip(group, own_car_boxes(norm), strict=True))
    return flags


def pseudo_folder_provenance(folder: str | Path) -> str:
    """The photo folder a pseudo-label folder was made from; raises when it is validation data (the
    student would then train on the frames it is scored on) or when it is not a pseudo-label folder."""
    meta = Path(folder) / "pseudo.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{folder} is not a carpose-pseudo-label folder (no pseudo.json)")
    source = json.loads(meta.read_text())["photos_folder"]
    if (hit := leaked_folder(source)) is not None:
        raise ValidationLeakError(f"{folder} pseudo-labels real validation frames ({source}; {hit})")
    return source


def _annotated(img: np.ndarray, sure: np.ndarray, unsure: np.ndarray, side: int = 320) -> np.ndarray:
    out = img.copy()
    t = max(1, round(max(img.shape[:2]) / 400))
    for boxes, colour in ((unsure, (0, 165, 255)), (sure, (0, 220, 0))):
        for x1, y1, x2, y2 in boxes.astype(int):
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, t)
    s = side / max(img.shape[:2])
    out = cv2.resize(out, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    tile = np.full((side, side, 3), 40, np.uint8)
    tile[:out.shape[0], :out.shape[1]] = out
    return tile


def score_teacher(config: TeacherConfig, work_dir: str | Path, sources: list | None = None) -> list[dict]:
    """The teacher's precision and recall at ``keep`` and recall at ``ignore`` on each real validation
    source (cars >= 40 px, the benchmark's rules): how right the labels are and how many real cars
    the greying misses. Only thresholds are chosen on these figures."""
    if sources is None:
        sources, _ = resolve_sources(None)
    teacher = Teacher(config, work_dir)
    rows = []
    for src in sources:
        matches = []
        for img_path, lab_path in kitti_pairs(src.labels, src.images):
            img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
            objs = parse_kitti_label(lab_path)
            gt, ign = split_ground_truth(objs, src.det_types, 40.0)
            xyxy, scores = teacher.boxes(img)
            matches.append(match_frame(xyxy, scores, np.array([objs[i].box_xyxy for i in gt]).reshape(-1, 4),
                                       np.array([objs[i].box_xyxy for i in ign]).reshape(-1, 4)))
        at_keep, at_ignore = detection_report(matches, config.keep), detection_report(matches, config.ignore)
        rows.append({"source": src.name, "ap": at_keep.ap, "precision_keep": at_keep.precision,
                     "recall_keep": at_keep.recall, "precision_ignore": at_ignore.precision,
                     "recall_ignore": at_ignore.recall})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-pseudo-label", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="?", help="folder of unlabelled real photos (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--teacher", action="append",
                   help="teacher detector weights (.pt or .onnx; default: the shipped detector); give it again "
                        "for a teacher of several detectors whose boxes are fused")
    p.add_argument("--imgsz", type=int, default=960, help="teacher input side (default 960)")
    p.add_argument("--no-augment", action="store_true", help="no test-time augmentation")
    p.add_argument("--keep", type=float, default=0.55, help="score from which a box is a label")
    p.add_argument("--ignore", type=float, default=0.25, help="score from which a box is greyed when not a label")
    p.add_argument("--rebuild", action="store_true",
                   help="do not run the teacher: write the bands again from OUT/teacher_2 with --keep / --ignore "
                        "(the teacher must have recorded boxes down to the new --ignore)")
    p.add_argument("--limit", type=int, help="label only the first N photos")
    p.add_argument("--score", action="store_true",
                   help="instead of labelling: print the teacher's precision/recall at --keep and --ignore on "
                        "the real validation sources")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    cfg = TeacherConfig(weights=args.teacher or [str(DEFAULT_DET_MODEL)], imgsz=args.imgsz,
                        augment=not args.no_augment, ignore=args.ignore, keep=args.keep)
    try:
        if args.score:
            rows = score_teacher(cfg, args.out)
            names = " + ".join(Path(w).name for w in Teacher.weights_list(cfg))
            print(f"teacher {names} imgsz {cfg.imgsz} augment {cfg.augment} (cars >= 40 px)")
            print(f"{'source':16s} {'AP':>6s} {'P@keep':>7s} {'R@keep':>7s} {'P@ign':>7s} {'R@ign':>7s}")
            for r in rows:
                print(f"{r['source']:16s} {r['ap']:6.3f} {r['precision_keep']:7.3f} {r['recall_keep']:7.3f} "
                      f"{r['precision_ignore']:7.3f} {r['recall_ignore']:7.3f}")
            return 0
        if args.rebuild:
            info = write_bands(args.out, args.keep, args.ignore, not args.quiet)
        elif not args.photos:
            p.error("give the photo folder (or --score, --rebuild)")
        else:
            info = pseudo_label(args.photos, args.out, cfg, args.limit, not args.quiet)
    except (FileNotFoundError, ValueError) as exc:  # ValidationLeakError too
        print(f"carpose-pseudo-label: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
