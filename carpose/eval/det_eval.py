"""``carpose-det-eval``: score the detector (and the azimuths of the cars it finds) on a KITTI folder.

    carpose-det-eval data/det/kitti_test --det-model models/carpose_det.onnx --out runs/det_eval
    # the hand-labelled real frames (labels in the repo, images in ../shared):
    carpose-det-eval data/real/nuscenes_front --images ../shared/real/nuscenes_front/image_2 --out runs/real_det

Ground truth: ``Car`` objects of ``label_2`` (``--types Car,Van`` for more). ``DontCare`` regions and
cars below ``--min-height`` px are ignore regions: a detection there counts neither way (the KITTI
rule). Prints precision and recall at ``--conf`` and AP@0.5 over all scores, for all cars and again
for cars at least ``--tall`` px high (default 40; smaller ones then become ignore regions); recall
per box-height bin (every labelled car counts there); and the azimuth errors of the matched cars
(pose on the detector's box) by subset (all / sure labels / >= 30 px) and 45-deg view sector, the
same tables ``carpose-eval`` prints for hand boxes. Writes ``det_eval.json``, ``det_pr.png`` (both
PR curves with the operating point) and ``det_worst.png`` (the worst azimuth errors).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.convention import azimuth_to_bin
from carpose.eval.azimuth_report import DEFAULT_MIN_HEIGHT, azimuth_summary, format_azimuth_summary
from carpose.eval.det_sheet import FrameVerdict, save_frames_sheet
from carpose.eval.error_sheet import ErrorCase, save_worst_errors_sheet
from carpose.eval.kitti import KittiObject, kitti_pairs, parse_kitti_label, split_ground_truth
from carpose.eval.scoring import (
    SECTOR_NAMES,
    FrameMatch,
    average_orientation_similarity,
    detection_report,
    match_frame,
    matched_azimuth_errors,
    with_orientation,
)
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL, Pipeline, PipelineConfig

#: Box-height bins (px) of the recall table: where the detector starts to miss cars.
HEIGHT_EDGES = (0.0, 15.0, 20.0, 30.0, 40.0, 60.0, 100.0, 200.0, math.inf)


#: A labelled car whose box comes this close (px) to the left or right image edge is cut by the border.
BORDER_PX = 3.0


def _recall_row(name: str, found: np.ndarray, sel: np.ndarray) -> dict:
    n = int(sel.sum())
    return {"cars": name, "gt": n, "found": int(found[sel].sum()), "recall": float(found[sel].mean()) if n else None}


def recall_by_view(found: list[bool], azimuth_deg: list[float], occluded: list[int], at_border: list[bool]) -> dict:
    """Recall of labelled cars per 45-deg view sector of their true azimuth, and of the occluded (label
    level >= 1) and border-cut ones. Why: the cars a detector misses are not spread evenly (issue 22:
    side views, parked rows that hide each other, cars cut by the frame), and one recall figure hides
    which. Cars without an azimuth (DontCare-like labels) count in the occlusion and border rows only."""
    f = np.asarray(found, bool)
    az = np.asarray(azimuth_deg, np.float64).reshape(-1)
    idx = np.full(len(az), -1, np.int64)
    known = np.isfinite(az)
    idx[known] = np.asarray(azimuth_to_bin(az[known], len(SECTOR_NAMES))).reshape(-1)
    return {"sectors": [_recall_row(name, f, idx == k) for k, name in enumerate(SECTOR_NAMES)],
            "occluded": _recall_row("occluded", f, np.asarray(occluded, np.int64).reshape(-1) >= 1),
            "border": _recall_row("cut by the border", f, np.asarray(at_border, bool).reshape(-1)),
            "all": _recall_row("all", f, np.ones(len(f), bool))}


def _boxes(objs: list[KittiObject]) -> np.ndarray:
    return np.array([o.box_xyxy for o in objs], np.float64).reshape(-1, 4)


def _match(objs: list[KittiObject], types: tuple[str, ...], min_height: float, boxes: np.ndarray,
           scores: np.ndarray) -> tuple[FrameMatch, list[int]]:
    """Match with ``types`` cars >= ``min_height`` as ground truth and the rest as ignore regions;
    also returns the label-line index of each ground-truth car."""
    gt, ign = split_ground_truth(objs, types, min_height)
    return match_frame(boxes, scores, _boxes([objs[i] for i in gt]), _boxes([objs[i] for i in ign])), gt


def _at_conf(m: FrameMatch, conf: float) -> FrameMatch:
    """The match as seen at the operating threshold: detections below it are dropped (matching is
    greedy by score, so the detections above it match exactly as they would alone)."""
    return FrameMatch(m.scores, np.where(m.scores >= conf, m.outcome, -1), m.gt_index, m.num_gt)


def _found(m: FrameMatch, num_gt: int) -> np.ndarray:
    """Which of the ``num_gt`` ground-truth cars a true positive of ``m`` matched."""
    out = np.zeros(num_gt, bool)
    out[m.gt_index[m.outcome == 1].astype(int)] = True
    return out


def evaluate_folder(root: str | Path, pipe: Pipeline, conf: float, types: tuple[str, ...] = ("Car",),
                    min_height: float = 15.0, progress: bool = True, images: str | Path | None = None,
                    tall: float = 40.0, pose_tall: float = DEFAULT_MIN_HEIGHT, frames: slice | None = None) -> dict:
    """Detection and matched-car azimuth figures of one KITTI folder; see the module docstring.
    ``frames`` keeps a slice of the frames in name order (e.g. the ones never used as backgrounds)."""
    matches: dict[str, list[FrameMatch]] = {"all": [], "tall": []}
    heights, found = [], []  # every labelled car of ``types``: box height, detected at conf
    views: dict[str, list] = {"found": [], "azimuth_deg": [], "occluded": [], "at_border": []}  # cars >= tall
    err, true, sure, hpx, cases = [], [], [], [], []
    n_frames = 0
    det_ms: list[float] = []
    verdicts: list[FrameVerdict] = []
    pairs = kitti_pairs(root, images)
    if frames is not None:
        pairs = pairs[frames]
        if not pairs:
            raise ValueError(f"frame range {frames.start}:{frames.stop} selects no frame of {root}")
    for img_path, lab_path in tqdm(pairs, desc="det-eval", disable=not progress, leave=False):
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{img_path}: unreadable image")
        n_frames += 1
        objs = parse_kitti_label(lab_path)
        res = pipe.process(img)
        det_ms.append(res.timings_ms.get("detect", float("nan")))
        boxes = np.array([c.box_xyxy for c in res.cars], np.float64).reshape(-1, 4)
        scores = np.array([c.score for c in res.cars], np.float64)
        pred_az = np.array([c.azimuth_deg for c in res.cars], np.float64)
        m, gt = _match(objs, types, min_height, boxes, scores)
        m = with_orientation(m, pred_az, np.array([objs[i].azimuth_deg for i in gt]))
        matches["all"].append(m)
        mt, gt_tall = _match(objs, types, tall, boxes, scores)
        matches["tall"].append(with_orientation(mt, pred_az, np.array([objs[i].azimuth_deg for i in gt_tall])))
        # Which tall cars were found at the operating threshold, by view, occlusion and the border.
        for j, found_tall in zip(gt_tall, _found(_at_conf(mt, conf), len(gt_tall)), strict=True):
            o = objs[j]
            views["found"].append(bool(found_tall))
            views["azimuth_deg"].append(o.azimuth_deg if o.has_alpha else math.nan)
            views["occluded"].append(int(o.occluded))
            views["at_border"].append(bool(o.box_xyxy[0] <= BORDER_PX or o.box_xyxy[2] >= img.shape[1] - BORDER_PX))
        # Recall by height: every labelled car is ground truth here, however small.
        mh, cars = _match(objs, types, 0.0, boxes, scores)
        heights += [objs[i].height_px for i in cars]
        found += _found(_at_conf(mh, conf), len(cars)).tolist()
        # Azimuth on the cars found at the operating threshold (pose on the detector's crop).
        mc = _at_conf(m, conf)
        keep = scores >= conf
        verdicts.append(FrameVerdict(img_path, boxes[keep], scores[keep], m.outcome[keep], pred_az[keep],
                                     _boxes([objs[i] for i in gt]), _found(mc, len(gt))))
        e = matched_azimuth_errors(mc, pred_az, np.array([objs[i].azimuth_deg for i in gt]))
        for k, p in enumerate(np.flatnonzero(mc.outcome == 1)):
            line = gt[int(mc.gt_index[p])]
            o = objs[line]
            err.append(float(e[k]))
            true.append(o.azimuth_deg)
            sure.append(o.sure)
            hpx.append(o.height_px)
            cases.append(ErrorCase(img_path, o.box_xyxy, o.azimuth_deg, float(pred_az[p]),
                                   f"{lab_path.stem}#{line}", o.sure,
                                   float(res.cars[p].azimuth_confidence), boxes[p]))
    reps = {k: detection_report(v, conf) for k, v in matches.items()}
    h, f = np.asarray(heights, np.float64), np.asarray(found, bool)
    by_height = []
    for lo, hi in itertools.pairwise(HEIGHT_EDGES):
        sel = (h >= lo) & (h < hi)
        by_height.append({"from_px": lo, "to_px": None if math.isinf(hi) else hi, "gt": int(sel.sum()),
                          "found": int(f[sel].sum()), "recall": float(f[sel].mean()) if sel.any() else None})
    ms = np.asarray(det_ms[1:] if len(det_ms) > 1 else det_ms)  # the first frame pays for warm-up
    aos = {k: average_orientation_similarity(v) for k, v in matches.items()}
    summary = {"frames": n_frames, "min_height_px": min_height, **reps["all"].to_dict(), "aos": aos["all"],
               "detect_ms": {"median": float(np.median(ms)), "mean": float(ms.mean())} if len(ms) else None,
               "tall": {"min_height_px": tall, **reps["tall"].to_dict(), "aos": aos["tall"]},
               "recall_by_height": by_height,
               "recall_by_view": recall_by_view(**views),
               "azimuth_on_matched": azimuth_summary(err, true, sure, hpx, pose_tall)}
    return {"summary": summary, "curve": reps["all"].curve, "curve_tall": reps["tall"].curve, "cases": cases,
            "verdicts": verdicts, "matches": matches, "views": views}


def format_detection(s: dict) -> str:
    """The detection table and the recall tables by box height and by view (Markdown, like the azimuth
    tables)."""
    lines = [f"detection at conf {s['threshold']} (IoU 0.5; smaller cars are ignore regions; AOS: KITTI's "
             "average orientation similarity)", "",
             "| cars | TP | FP | FN | precision | recall | AP@0.5 | AOS | AOS/AP |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in ((f">= {s['min_height_px']:g} px", s), (f">= {s['tall']['min_height_px']:g} px", s["tall"])):
        ratio = r["aos"] / r["ap50"] if r["ap50"] > 0 else float("nan")
        lines.append(f"| {name} | {r['tp']} | {r['fp']} | {r['fn']} | {r['precision']:.3f} | {r['recall']:.3f} "
                     f"| {r['ap50']:.3f} | {r['aos']:.3f} | {ratio:.3f} |")
    lines += ["", f"recall by box height at conf {s['threshold']} (every labelled car)", "",
              "| height (px) | cars | found | recall |", "|---|---:|---:|---:|"]
    for b in s["recall_by_height"]:
        rng = f"{b['from_px']:g}-{b['to_px']:g}" if b["to_px"] is not None else f">= {b['from_px']:g}"
        rec = "-" if b["recall"] is None else f"{100 * b['recall']:.0f}%"
        lines.append(f"| {rng} | {b['gt']} | {b['found']} | {rec} |")
    v = s.get("recall_by_view")
    if v:
        lines += ["", f"recall of cars >= {s['tall']['min_height_px']:g} px at conf {s['threshold']} by view sector of "
                  "the true azimuth, occlusion and the border", "", "| cars | labelled | found | recall |",
                  "|---|---:|---:|---:|"]
        for r in [*v["sectors"], v["occluded"], v["border"]]:
            rec = "-" if r["recall"] is None else f"{100 * r['recall']:.0f}%"
            lines.append(f"| {r['cars']} | {r['gt']} | {r['found']} | {rec} |")
    return "\n".join(lines)


def plot_pr(curves: dict[str, dict], path: Path, title: str, conf: float | None = None) -> None:
    """Precision/recall curves (one per name) with the operating point at ``conf`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, (name, curve) in enumerate(curves.items()):
        rec, prec = np.asarray(curve.get("recall", [])), np.asarray(curve.get("precision", []))
        ax.plot(rec, prec, color=f"C{k}", label=f"{name}: AP@0.5 {curve.get('ap', float('nan')):.3f}")
        sc = np.asarray(curve.get("scores", []))
        if conf is not None and len(sc) and np.any(sc >= conf):
            i = int(np.flatnonzero(sc >= conf)[-1])
            ax.plot(rec[i], prec[i], "o", color=f"C{k}", ms=7, mfc="none")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title + ("" if conf is None else f"\n(circle: operating point, conf {conf})"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-det-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="KITTI-format folder with label_2/ (and image_2/ unless --images)")
    p.add_argument("--images", help="image folder of the labels (default: FOLDER/image_2)")
    p.add_argument("--det-model", default=str(DEFAULT_DET_MODEL))
    p.add_argument("--det-classes", help="e.g. '2:car' for COCO weights")
    p.add_argument("--pose-model", default=str(DEFAULT_POSE_MODEL))
    p.add_argument("--conf", type=float, default=0.35, help="operating threshold for precision/recall")
    p.add_argument("--imgsz", type=int, default=0,
                   help="detector input long side (0: the model's own; a fixed-size ONNX always uses its own)")
    p.add_argument("--frames", help="A:B: only frames A..B-1 in name order (e.g. 25:50, never used as backgrounds)")
    p.add_argument("--baseline", help="det_eval.json of an earlier model: its PR curves are drawn beside")
    p.add_argument("--types", default="Car")
    p.add_argument("--min-height", type=float, default=15.0, help="smaller cars are ignore regions (px)")
    p.add_argument("--tall", type=float, default=40.0, help="second detection row: cars at least this tall (px)")
    p.add_argument("--pose-tall", type=float, default=DEFAULT_MIN_HEIGHT,
                   help="azimuth subsets of matched cars at least this tall (px)")
    p.add_argument("--worst", type=int, default=24, help="cars on the worst-errors sheet")
    p.add_argument("--out", help="folder for det_eval.json, det_pr.png and det_worst.png")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from carpose.infer import parse_classes

    try:
        # The detector runs at a very low threshold so the whole precision/recall curve is seen.
        pipe = Pipeline(PipelineConfig(pose_model=args.pose_model, detector_weights=args.det_model,
                                       detector_classes=parse_classes(args.det_classes), det_conf=0.01,
                                       det_imgsz=args.imgsz, max_cars=100))
        frames = None
        if args.frames:
            a, _, b = args.frames.partition(":")
            frames = slice(int(a) if a else None, int(b) if b else None)
        r = evaluate_folder(args.folder, pipe, args.conf, tuple(args.types.split(",")), args.min_height,
                            not args.quiet, args.images, args.tall, args.pose_tall, frames)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-det-eval: error: {exc}", file=sys.stderr)
        return 2
    s = r["summary"]
    name = Path(args.folder).name
    print(f"{s['frames']} frames of {name}: precision {s['precision']:.3f}, recall {s['recall']:.3f} at conf "
          f"{args.conf}, AP@0.5 {s['ap50']:.3f} (TP {s['tp']}, FP {s['fp']}, FN {s['fn']}); detector "
          f"{s['detect_ms']['median']:.1f} ms/frame (median, input {pipe.detector.input_hw})")
    print()
    print(format_detection(s))
    print()
    print(format_azimuth_summary(s["azimuth_on_matched"], "azimuth of the matched cars (detector boxes)"))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "det_eval.json").write_text(json.dumps({**s, "curve": r["curve"], "curve_tall": r["curve_tall"]},
                                                      indent=1))
        curves = {f"cars >= {args.min_height:g} px": r["curve"], f"cars >= {args.tall:g} px": r["curve_tall"]}
        if args.baseline:
            old = json.loads(Path(args.baseline).read_text())
            curves |= {f"before, {k}": old[c] for k, c in zip(curves, ("curve", "curve_tall"), strict=True) if c in old}
        plot_pr(curves, out / "det_pr.png", f"{Path(args.det_model).name} on {name}", args.conf)
        sheet = save_frames_sheet(r["verdicts"], out / "det_frames.png",
                                  title=f"{Path(args.det_model).name}, conf {args.conf}")
        written = [out / "det_eval.json", out / "det_pr.png", sheet]
        if r["cases"]:
            written.append(save_worst_errors_sheet(r["cases"], out / "det_worst.png", count=args.worst,
                                                   title=f"{Path(args.pose_model).name} on {name}, "
                                                         f"detector boxes (conf {args.conf})"))
        print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
