"""``carpose-eval``: score any pose model (checkpoint, ONNX or TensorRT engine) on any labelled data.

    carpose-eval models/carpose_pose.onnx data/pose/heldout_mesh.h5 --out runs/eval
    carpose-eval models/carpose_pose.onnx path/to/kitti/training --out runs/eval_kitti
    # the hand-labelled real frames (labels in the repo, images in ../shared):
    carpose-eval models/carpose_pose.onnx data/real/nuscenes_front \
        --images ../shared/real/nuscenes_front/image_2 --out runs/real_eval

Data: carpose crops HDF5 files, or a KITTI-format folder (``label_2/*.txt`` + ``image_2/*.png``, or
the images from ``--images``): cars only (``Car``; ``--kitti-types Car,Van`` for more), the labelled
boxes cropped exactly as the runtime crops detector boxes (``carpose.crop``), azimuth from KITTI
``alpha`` through the convention module. Pose only: no detector is involved (``carpose-det-eval``
scores detector + pose). Prints the metrics table, writes ``metrics.json`` and the polar / quadrant /
calibration PNGs. For KITTI folders it also prints the subset x view-sector tables of
``carpose.eval.azimuth_report`` (all / sure labels / cars >= 30 px tall) and writes ``<name>_worst.png``,
the contact sheet of the worst errors (``carpose.eval.error_sheet``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from carpose.eval.azimuth_report import DEFAULT_MIN_HEIGHT, azimuth_summary, format_azimuth_summary
from carpose.eval.error_sheet import ErrorCase, save_worst_errors_sheet
from carpose.eval.label_crops import kitti_crops, predict_all
from carpose.pose import PoseEstimator
from training.dataset.reader import CarposeDataset
from training.pose.metrics import azimuth_metrics, format_calibration, format_metrics, save_all_plots, save_json


def h5_crops(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    with CarposeDataset(path) as ds:
        if ds.kind != "crops":
            raise ValueError(f"{path} holds {ds.kind}; carpose-eval scores crops files or KITTI folders")
        n = len(ds) if limit is None else min(limit, len(ds))
        return ds.h5["images"][:n], ds.h5["azimuth_deg"][:n].astype(np.float64)


def evaluate(model: str | Path, data: str | Path, backend: str = "auto", device: str = "auto",
             limit: int | None = None, kitti_types: tuple[str, ...] = ("Car",), progress: bool = True,
             images: str | Path | None = None, min_height: float = 20.0, max_truncation: float = 0.5,
             max_occlusion: int = 2, tall_px: float = DEFAULT_MIN_HEIGHT, mirror_tta: bool | None = None) -> dict:
    """Metrics of ``model`` on one HDF5 file or KITTI folder. For KITTI folders also the subset x
    sector summary (``metrics["subsets"]``) and the scored cars as ``ErrorCase``s (``cases``).
    ``mirror_tta``: None follows the model's metadata (``PoseEstimator``)."""
    est = PoseEstimator(model, backend=backend, device=device, mirror_tta=mirror_tta)
    d = Path(data)
    kc = None
    if d.is_dir():
        kc = kitti_crops(d, est.crop_spec, kitti_types, min_height, max_truncation, max_occlusion, progress,
                         images).limit(limit)
        crops, true, skipped = kc.crops, kc.azimuth_deg, kc.skipped
    else:
        if d.exists():
            with CarposeDataset(d) as ds:
                if ds.image_shape[0] != est.input_size:
                    raise ValueError(f"{d} has {ds.image_shape[0]} px crops, {model} takes {est.input_size}")
        crops, true = h5_crops(d, limit)
        skipped = {}
    r = predict_all(est, crops, progress=progress)
    pred, conf = r.azimuth_deg, r.confidence
    m = azimuth_metrics(pred, true, conf) if len(pred) else {"n": 0}
    m.update(model=str(model), data=str(data), backend=est.backend_name, skipped=skipped, mirror_tta=est.mirror_tta)
    out = {"metrics": m, "pred": pred, "true": true, "conf": conf, "cases": []}
    if kc is not None:
        from carpose.convention import angular_error

        err = np.asarray(angular_error(pred, true)).reshape(-1)
        m["subsets"] = azimuth_summary(err, true, kc.sure, kc.height_px, tall_px)
        m["filter"] = {"types": list(kitti_types), "min_height_px": min_height, "max_truncation": max_truncation,
                       "max_occlusion": max_occlusion, "images": str(images) if images else None}
        out["cases"] = [ErrorCase(img, box, float(t), float(p), f"{img.stem}#{k}", bool(su), float(c))
                        for (img, k, box), t, p, su, c in zip(kc.refs, true, pred, kc.sure, conf, strict=True)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=".pt checkpoint, .onnx model or .engine")
    p.add_argument("data", nargs="+", help="crops HDF5 file(s) and/or KITTI-format folder(s)")
    p.add_argument("--images", help="image folder of the KITTI folder's labels (default: its image_2/); "
                                    "with one KITTI folder only")
    p.add_argument("--out", help="folder for metrics.json and plots")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int)
    p.add_argument("--kitti-types", default="Car")
    p.add_argument("--min-height", type=float, default=20.0, help="KITTI: skip boxes lower than this (px)")
    p.add_argument("--max-truncation", type=float, default=0.5, help="KITTI: skip more truncated cars")
    p.add_argument("--max-occlusion", type=int, default=2, help="KITTI: skip more occluded cars (0/1/2/3)")
    p.add_argument("--tall", type=float, default=DEFAULT_MIN_HEIGHT,
                   help="KITTI: the extra subsets of cars at least this tall (px)")
    p.add_argument("--worst", type=int, default=24, help="KITTI: cars on the worst-errors sheet")
    p.add_argument("--mirror-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each crop with its mirror image (default: as the model's metadata says)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    results = {}
    try:
        if args.images and sum(Path(d).is_dir() for d in args.data) != 1:
            raise ValueError("--images goes with exactly one KITTI folder")
        for d in args.data:
            r = evaluate(args.model, d, args.backend, args.device, args.limit,
                         tuple(args.kitti_types.split(",")), not args.quiet, args.images, args.min_height,
                         args.max_truncation, args.max_occlusion, args.tall, args.mirror_tta)
            m = r["metrics"]
            name = Path(d).stem if Path(d).is_file() else Path(d).name
            results[name] = m
            print(format_metrics(name, m))
            if "subsets" in m:
                print(f"skipped labels: {m['skipped']}")
                print(format_azimuth_summary(m["subsets"], f"{name} (hand boxes, pose only)"))
            if m.get("calibration"):
                print(format_calibration(m["calibration"], name))
            if args.out and m["n"]:
                save_all_plots(r["pred"], r["true"], m, args.out, name, f"{Path(args.model).name} on {name}")
                if r["cases"]:
                    sheet = save_worst_errors_sheet(r["cases"], Path(args.out) / f"{name}_worst.png",
                                                    count=args.worst,
                                                    title=f"{Path(args.model).name} on {name}, hand boxes")
                    print(f"wrote {sheet}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-eval: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        save_json(results, Path(args.out) / "metrics.json")
        print(f"wrote {args.out}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
