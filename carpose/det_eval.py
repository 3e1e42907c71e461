"""``carpose-det-eval``: score the detector (and the azimuths of the cars it finds) on a KITTI folder.

    carpose-det-eval data/det/kitti_test --det-model models/carpose_det.onnx --out runs/det_eval

Ground truth: ``Car`` objects of ``label_2`` (``--types Car,Van`` for more). ``DontCare`` regions and
cars below ``--min-height`` px are ignore regions: a detection there counts neither way (the KITTI
rule). Prints precision and recall at ``--conf``, AP@0.5 over all scores, and azimuth MedErr /
Acc@30 on the matched cars; writes ``det_eval.json`` and a precision/recall PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.kitti import kitti_pairs, parse_kitti_label
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL, Pipeline, PipelineConfig
from carpose.scoring import azimuth_error_stats, detection_report, match_frame, matched_azimuth_errors


def evaluate_folder(root: str | Path, pipe: Pipeline, conf: float, types: tuple[str, ...] = ("Car",),
                    min_height: float = 15.0, progress: bool = True) -> dict:
    matches, errors = [], []
    for img_path, lab_path in tqdm(kitti_pairs(root), desc="det-eval", disable=not progress, leave=False):
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{img_path}: unreadable image")
        objs = parse_kitti_label(lab_path)
        gt = [o for o in objs if o.type in types and o.box_xyxy[3] - o.box_xyxy[1] >= min_height]
        ign = [o for o in objs if o not in gt and o.type in (*types, "DontCare", "Van", "Truck")]
        res = pipe.process(img)
        boxes = np.array([c.box_xyxy for c in res.cars]).reshape(-1, 4)
        scores = np.array([c.score for c in res.cars])
        m = match_frame(boxes, scores, np.array([o.box_xyxy for o in gt]).reshape(-1, 4),
                        np.array([o.box_xyxy for o in ign]).reshape(-1, 4))
        matches.append(m)
        keep = m.scores >= conf
        sub = type(m)(m.scores, np.where(keep, m.outcome, -1), m.gt_index, m.num_gt)
        errors.append(matched_azimuth_errors(sub, np.array([c.azimuth_deg for c in res.cars]),
                                             np.array([o.azimuth_deg for o in gt])))
    rep = detection_report(matches, conf)
    err = np.concatenate(errors) if errors else np.zeros(0)
    out = {"frames": len(matches), **rep.to_dict(),
           "azimuth_on_matched": azimuth_error_stats(err)}
    return {"summary": out, "curve": rep.curve}


def plot_pr(curve: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(curve.get("recall", []), curve.get("precision", []))
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}\nAP@0.5 = {curve.get('ap', float('nan')):.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-det-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="KITTI-format folder with image_2/ and label_2/")
    p.add_argument("--det-model", default=str(DEFAULT_DET_MODEL))
    p.add_argument("--det-classes", help="e.g. '2:car' for COCO weights")
    p.add_argument("--pose-model", default=str(DEFAULT_POSE_MODEL))
    p.add_argument("--conf", type=float, default=0.35, help="operating threshold for precision/recall")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--types", default="Car")
    p.add_argument("--min-height", type=float, default=15.0)
    p.add_argument("--out", help="folder for det_eval.json and det_pr.png")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from carpose.infer import parse_classes

    try:
        # The detector runs at a very low threshold so the whole precision/recall curve is seen.
        pipe = Pipeline(PipelineConfig(pose_model=args.pose_model, detector_weights=args.det_model,
                                       detector_classes=parse_classes(args.det_classes), det_conf=0.01,
                                       det_imgsz=args.imgsz, max_cars=100))
        r = evaluate_folder(args.folder, pipe, args.conf, tuple(args.types.split(",")), args.min_height,
                            not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-det-eval: error: {exc}", file=sys.stderr)
        return 2
    s = r["summary"]
    az = s["azimuth_on_matched"]
    print(f"{s['frames']} frames: precision {s['precision']:.3f}, recall {s['recall']:.3f} at conf {args.conf}, "
          f"AP@0.5 {s['ap50']:.3f} (TP {s['tp']}, FP {s['fp']}, FN {s['fn']})")
    if az["n"]:
        print(f"azimuth on {az['n']} matched cars: MedErr {az['med_err_deg']:.1f} deg, "
              f"Acc@30 {100 * az['acc_30']:.1f}%")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "det_eval.json").write_text(json.dumps(s, indent=1))
        plot_pr(r["curve"], out / "det_pr.png", f"{Path(args.det_model).name} on {Path(args.folder).name}")
        print(f"wrote {out}/det_eval.json, {out}/det_pr.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
