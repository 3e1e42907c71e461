"""``carpose-pseudo-pose``: real car crops labelled by the pose model itself, where it is sure twice.

    carpose-pseudo-pose --teacher-boxes data/det/pseudo --pose models/carpose_pose.onnx \\
        --out data/pose_real/pseudo.h5

Why: the pose CNN has only seen renders; real cars differ in paint, glass, lamps, dirt and camera.
Self-training gives it real crops with labels: each car the detector's teacher found in the
unlabelled real photos (``../shared/real_unlabelled``, through a ``carpose-pseudo-label`` folder's
``teacher_2`` boxes, or a detector run here) is cut as the runtime cuts it and read twice, as it is
and mirrored. It becomes a training crop only when both readings are confident and the mirror's
answer, mapped back (a -> 360 - a), agrees within ``--max-disagree`` degrees: a front/rear or
left/right confusion rarely survives both views (issue 21). The label is the circular mean of the two.

The output is an ordinary crops HDF5 (training/dataset/schema.py) that ``carpose-train --train``
mixes with renders. Its ``backgrounds`` attribute names the photo folder, so training refuses it
when that folder holds real validation frames and the model's metadata records it
(training/dataset/provenance.py); this tool refuses such folders first. ``<out>.jpg`` is a contact
sheet of kept crops per view sector, with their labels drawn, to look at before training on them;
``<out>.csv`` says which photo and box each crop came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.convention import CONVENTION_VERSION, angular_error, azimuth_to_bin, circular_mean, flip_azimuth
from carpose.crop import box_in_crop, crop_boxes, crop_region
from carpose.draw import arrow_vector, tile_grid
from carpose.eval.real_sources import refuse_validation_frames
from carpose.eval.scoring import SECTOR_NAMES
from carpose.pose import PoseEstimator
from training.dataset.schema import CROP_FIELDS
from training.dataset.writer import FRAME_PREFIX, BlockStore
from training.detector.pseudo_label import photos_under, read_teacher_file, touches_frame


def teacher_boxes(pseudo_dir: str | Path, min_score: float, min_height: float) -> tuple[str, dict[Path, np.ndarray]]:
    """The photo folder of a ``carpose-pseudo-label`` folder, and its recorded teacher boxes >=
    ``min_score`` and ``min_height`` px tall, keyed by the photo they belong to."""
    pseudo_dir = Path(pseudo_dir)
    meta = pseudo_dir / "teacher.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{pseudo_dir} is not a carpose-pseudo-label folder (no teacher.json)")
    folder = json.loads(meta.read_text())["photos_folder"]
    refuse_validation_frames(folder, "pseudo-labelled pose crops")
    out = {}
    for photo in photos_under(folder):
        rec = pseudo_dir / "teacher_2" / f"{photo.stem}.txt"
        if rec.is_file():
            xyxy, scores = read_teacher_file(rec)
            tall = (xyxy[:, 3] - xyxy[:, 1]) >= min_height
            out[photo] = xyxy[(scores >= min_score) & tall]
    return folder, out


def mirror_consistent(az: np.ndarray, conf: np.ndarray, az_mirror: np.ndarray, conf_mirror: np.ndarray,
                      min_conf: float, max_disagree: float) -> tuple[np.ndarray, np.ndarray]:
    """(kept mask, label): both readings at least ``min_conf`` confident and the mirror image's
    azimuth, mapped back, within ``max_disagree`` deg of the crop's own; label = their circular mean."""
    back = np.asarray(flip_azimuth(az_mirror), np.float64)
    agree = np.asarray(angular_error(az, back), np.float64) <= max_disagree
    keep = agree & (conf >= min_conf) & (conf_mirror >= min_conf)
    label, _ = circular_mean(np.stack([az, back], axis=1), axis=1)
    return keep, np.asarray(label, np.float64) % 360.0


def sector_of(azimuth_deg: np.ndarray) -> np.ndarray:
    """Index into SECTOR_NAMES (45-deg sectors centred on 0, 45, ..., as ``sector_stats`` bins them)."""
    return np.asarray(azimuth_to_bin(azimuth_deg, len(SECTOR_NAMES)))


def cap_per_sector(label: np.ndarray, cap: int | None, seed: int = 0) -> np.ndarray:
    """Indices keeping at most ``cap`` crops per view sector (dash cams see mostly rears), drawn at random."""
    idx = np.arange(len(label))
    if cap is None:
        return idx
    rng = np.random.default_rng(seed)
    sec = sector_of(label)
    keep = [rng.permutation(idx[sec == s])[:cap] for s in range(len(SECTOR_NAMES))]
    return np.sort(np.concatenate(keep))


def label_tile(crop_rgb: np.ndarray, azimuth_deg: float, confidence: float, side: int = 128) -> np.ndarray:
    """A crop (BGR) with its label as an arrow (the car's front) and text."""
    tile = cv2.resize(np.ascontiguousarray(crop_rgb[:, :, ::-1]), (side, side), interpolation=cv2.INTER_AREA)
    c = side // 2
    dx, dy = arrow_vector(azimuth_deg)
    r = side * 0.35
    cv2.arrowedLine(tile, (c, c), (round(c + r * dx), round(c + r * dy)), (0, 255, 255), 2, cv2.LINE_AA,
                    tipLength=0.3)
    cv2.putText(tile, f"{azimuth_deg:.0f} {confidence:.2f}", (3, side - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def sector_sheet(crops: np.ndarray, label: np.ndarray, conf: np.ndarray, per_sector: int = 10,
                 seed: int = 0) -> np.ndarray:
    """One row per view sector (front, front-left, ...), up to ``per_sector`` random kept crops each."""
    rng = np.random.default_rng(seed)
    sec = sector_of(label)
    tiles: list[np.ndarray] = []
    for s, name in enumerate(SECTOR_NAMES):
        idx = rng.permutation(np.flatnonzero(sec == s))[:per_sector]
        head = np.zeros((128, 128, 3), np.uint8)
        cv2.putText(head, name, (4, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(head, f"n={int((sec == s).sum())}", (4, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 200), 1)
        row = [head] + [label_tile(crops[i], label[i], conf[i]) for i in idx]
        tiles += row + [np.zeros_like(head)] * (per_sector + 1 - len(row))
    return tile_grid(tiles, per_sector + 1)


def pseudo_pose(boxes: dict[Path, np.ndarray], pose_model: str | Path, min_conf: float, max_disagree: float,
                progress: bool = True, grey_nearer: bool = False) -> dict:
    """Crop, read twice, keep the mirror-consistent ones. Returns crops, labels, confidences, the crop
    boxes and counts. The labelling model reads the crops as it was trained to; with ``grey_nearer``
    the crops kept are cut again with the nearer boxes of the photo greyed (carpose.crop), as the
    model trained on them will see them."""
    est = PoseEstimator(pose_model, mirror_tta=False)
    spec = replace(est.crop_spec, occluders="grey_nearer") if grey_nearer else est.crop_spec
    crops, boxes_in_crop, az, conf, az_m, conf_m, where = [], [], [], [], [], [], []
    for photo, bs in tqdm(boxes.items(), desc="pseudo-pose", unit="photo", disable=not progress):
        if not len(bs):
            continue
        img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if img is None:
            continue
        frame, bs = bs, bs[~touches_frame(bs, img.shape[1], img.shape[0])]  # cut cars still hide others
        if not len(bs):
            continue
        c = est.crops(img, bs, frame)
        p, pm = est.predict(c), est.predict(np.ascontiguousarray(c[:, :, ::-1]))
        crops.append(c if spec == est.crop_spec else crop_boxes(img, bs, spec, frame)[:, :, :, ::-1])
        boxes_in_crop += [box_in_crop(b, crop_region(b, spec), spec.size) for b in bs]
        where += [f"{photo.parent.name}/{photo.name}," + ",".join(f"{v:.1f}" for v in b) for b in bs]
        az.append(p.azimuth_deg)
        conf.append(p.confidence)
        az_m.append(pm.azimuth_deg)
        conf_m.append(pm.confidence)
    if not crops:
        raise ValueError("no car boxes to crop: check the box source and --min-score / --min-height")
    crops_a, az_a, conf_a = np.concatenate(crops), np.concatenate(az), np.concatenate(conf)
    az_ma, conf_ma = np.concatenate(az_m), np.concatenate(conf_m)
    keep, label = mirror_consistent(az_a, conf_a, az_ma, conf_ma, min_conf, max_disagree)
    both_conf = (conf_a >= min_conf) & (conf_ma >= min_conf)
    return {"crops": crops_a[keep], "label": label[keep], "confidence": np.minimum(conf_a, conf_ma)[keep],
            "bbox": np.asarray(boxes_in_crop, np.float32)[keep], "crop_spec": spec,
            "where": [w for w, k in zip(where, keep, strict=True) if k],
            "counts": {"boxes": int(len(crops_a)), "confident_both": int(both_conf.sum()),
                       "kept": int(keep.sum())}}


def write_real_crops(out: str | Path, crops: np.ndarray, label: np.ndarray, bbox: np.ndarray, spec, key: str,
                     source: dict, split: str, backgrounds: str, seed: int = 0) -> Path:
    """An ordinary crops file of real crops (RGB, N x S x S x 3), their azimuths and boxes, in one block (atomic
    rename); the fields renders alone know are NaN / -1. ``source`` is recorded under ``render_config[key]``
    (``pseudo_pose`` here, ``real_photos`` by carpose-real-crops), where provenance and training read it."""
    n = len(crops)
    arrays = {FRAME_PREFIX + "images": np.ascontiguousarray(crops, np.uint8)}
    for k, (dtype, shape) in CROP_FIELDS.items():
        fill = np.nan if np.issubdtype(dtype, np.floating) else -1 if k == "model_id" else 0
        arrays[FRAME_PREFIX + k] = np.full((n, *shape), fill, dtype)
    arrays[FRAME_PREFIX + "azimuth_deg"] = label.astype(np.float32)
    arrays[FRAME_PREFIX + "bbox"] = bbox.astype(np.float32)
    arrays[FRAME_PREFIX + "truncation"][:] = 0
    arrays[FRAME_PREFIX + "occlusion"][:] = 0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    store = BlockStore(out, {"kind": "crops", key: source}, n, max(n, 1))
    store.prepare(overwrite=True)
    store.save_block(0, arrays)
    return store.finalize({"kind": "crops", "convention_version": CONVENTION_VERSION, "seed": seed,
                           "render_config": {"crop": spec.to_dict(), key: source},
                           "models": [], "split": {key: split}, "backgrounds": backgrounds, "crop_size": spec.size})


def write_crops(out: str | Path, crops: np.ndarray, label: np.ndarray, bbox: np.ndarray, spec, source: dict) -> Path:
    """The crops file of self-labelled real crops (``write_real_crops``)."""
    return write_real_crops(out, crops, label, bbox, spec, "pseudo_pose", source, "real crops, self-labelled",
                            source["photos_folder"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-pseudo-pose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher-boxes", metavar="PSEUDO_DIR", help="a carpose-pseudo-label folder: its teacher_2 boxes")
    src.add_argument("--images", help="a folder of real photos, boxes from --detector")
    p.add_argument("--detector", default="models/carpose_det.onnx", help="with --images: the detector (ONNX/.pt)")
    p.add_argument("--pose", default="models/carpose_pose.onnx", help="the pose model that labels (ONNX)")
    p.add_argument("--out", required=True, help="crops HDF5 to write (and <out>.jpg, <out>.json)")
    p.add_argument("--min-score", type=float, default=0.55, help="detector / teacher score a box needs")
    p.add_argument("--min-height", type=float, default=40.0, help="box height a car needs (px)")
    p.add_argument("--min-conf", type=float, default=0.6, help="pose confidence both readings need")
    p.add_argument("--max-disagree", type=float, default=15.0, help="crop vs mirror, deg")
    p.add_argument("--max-per-sector", type=int, default=None, help="keep at most this many per view sector")
    p.add_argument("--grey-nearer", action="store_true",
                   help="store the crops with the nearer overlapping boxes greyed (for carpose-train --grey-nearer)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.teacher_boxes:
            folder, boxes = teacher_boxes(args.teacher_boxes, args.min_score, args.min_height)
            box_source = f"teacher boxes of {args.teacher_boxes} (score >= {args.min_score})"
        else:
            from training.pose.adapt_bn import detector_boxes

            refuse_validation_frames(args.images, "pseudo-labelled pose crops")
            folder = args.images
            boxes = detector_boxes(photos_under(folder), args.detector, args.min_score, args.min_height,
                                   progress=not args.quiet)
            box_source = f"detector {args.detector} (conf >= {args.min_score})"
        r = pseudo_pose(boxes, args.pose, args.min_conf, args.max_disagree, progress=not args.quiet,
                        grey_nearer=args.grey_nearer)
        idx = cap_per_sector(r["label"], args.max_per_sector)
        source = {"photos_folder": str(folder), "boxes": box_source, "pose_model": str(args.pose),
                  "min_height": args.min_height, "min_conf": args.min_conf, "max_disagree": args.max_disagree,
                  "max_per_sector": args.max_per_sector, **r["counts"], "written": int(len(idx))}
        if not len(idx):
            raise ValueError(f"no crop passed (counts {r['counts']}): lower --min-conf or raise --max-disagree")
        out = write_crops(args.out, r["crops"][idx], r["label"][idx], r["bbox"][idx], r["crop_spec"], source)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-pseudo-pose: error: {exc}", file=sys.stderr)
        return 2
    sec = np.bincount(sector_of(r["label"][idx]), minlength=len(SECTOR_NAMES))
    source["per_sector"] = dict(zip(SECTOR_NAMES, sec.tolist(), strict=True))
    Path(str(out) + ".json").write_text(json.dumps(source, indent=1))
    Path(str(out) + ".csv").write_text("photo,x1,y1,x2,y2,azimuth_deg,confidence\n" + "".join(
        f"{r['where'][i]},{r['label'][i]:.1f},{r['confidence'][i]:.3f}\n" for i in idx))
    cv2.imwrite(str(out) + ".jpg", sector_sheet(r["crops"][idx], r["label"][idx], r["confidence"][idx]),
                [cv2.IMWRITE_JPEG_QUALITY, 85])
    share = r["counts"]["kept"] / max(1, r["counts"]["boxes"])
    print(f"carpose-pseudo-pose: {r['counts']['boxes']} boxes, {r['counts']['confident_both']} confident both ways, "
          f"{r['counts']['kept']} mirror-consistent ({share:.0%}), {len(idx)} written -> {out}")
    print("| " + " | ".join(SECTOR_NAMES) + " |\n|" + "---|" * len(SECTOR_NAMES) + "\n| "
          + " | ".join(str(v) for v in sec) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
