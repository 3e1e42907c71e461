"""``carpose-eval``: score any pose model (checkpoint, ONNX or TensorRT engine) on any labelled data.

    carpose-eval models/carpose_pose.onnx data/pose/heldout_mesh.h5 --out runs/eval
    carpose-eval models/carpose_pose.onnx path/to/kitti/training --out runs/eval_kitti

Data: carpose crops HDF5 files, or a KITTI-format folder (``image_2/*.png`` + ``label_2/*.txt``):
cars only (``Car``; ``--kitti-types Car,Van`` for more), ground-truth boxes cropped exactly as the
runtime crops detector boxes (``carpose.crop``), azimuth from KITTI ``alpha`` through the convention
module. Prints the metrics table, writes ``metrics.json`` and the polar / quadrant / calibration PNGs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.kitti import kitti_pairs, parse_kitti_label
from carpose.pose import PoseEstimator
from training.dataset.reader import CarposeDataset
from training.pose.metrics import azimuth_metrics, format_metrics, save_all_plots, save_json


def kitti_crops(root: str | Path, est: PoseEstimator, types: tuple[str, ...] = ("Car",), min_height: float = 20.0,
                max_truncation: float = 0.5, max_occlusion: int = 2, progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crops of the labelled cars (the KITTI 'moderate' filter by default) and their azimuths."""
    crops, az, skipped = [], [], {"type": 0, "small": 0, "truncated": 0, "occluded": 0, "unreadable": 0}
    for img_path, lab_path in tqdm(kitti_pairs(root), desc="kitti", disable=not progress, leave=False):
        objs = parse_kitti_label(lab_path)
        img = None
        for o in objs:
            if o.type not in types:
                skipped["type"] += 1
                continue
            if o.box_xyxy[3] - o.box_xyxy[1] < min_height:
                skipped["small"] += 1
                continue
            if o.truncated > max_truncation:
                skipped["truncated"] += 1
                continue
            if o.occluded > max_occlusion:
                skipped["occluded"] += 1
                continue
            if img is None:
                img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
                if img is None:
                    skipped["unreadable"] += 1
                    break
            crops.append(est.crop(img, o.box_xyxy))
            az.append(o.azimuth_deg)
    s = est.input_size
    return (np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8)), np.asarray(az, np.float64), skipped


def h5_crops(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    with CarposeDataset(path) as ds:
        if ds.kind != "crops":
            raise ValueError(f"{path} holds {ds.kind}; carpose-eval scores crops files or KITTI folders")
        n = len(ds) if limit is None else min(limit, len(ds))
        return ds.h5["images"][:n], ds.h5["azimuth_deg"][:n].astype(np.float64)


def predict_all(est: PoseEstimator, crops: np.ndarray, batch: int = 64, progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    preds, confs = [], []
    for i in tqdm(range(0, len(crops), batch), desc="pose", disable=not progress, leave=False):
        r = est.predict(crops[i:i + batch])
        preds.append(r.azimuth_deg)
        confs.append(r.confidence)
    if not preds:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(preds), np.concatenate(confs)


def evaluate(model: str | Path, data: str | Path, backend: str = "auto", device: str = "auto",
             limit: int | None = None, kitti_types: tuple[str, ...] = ("Car",), progress: bool = True) -> dict:
    est = PoseEstimator(model, backend=backend, device=device)
    d = Path(data)
    if d.is_dir():
        crops, true, skipped = kitti_crops(d, est, kitti_types, progress=progress)
        if limit is not None:
            crops, true = crops[:limit], true[:limit]
    else:
        if d.exists():
            with CarposeDataset(d) as ds:
                if ds.image_shape[0] != est.input_size:
                    raise ValueError(f"{d} has {ds.image_shape[0]} px crops, {model} takes {est.input_size}")
        crops, true = h5_crops(d, limit)
        skipped = {}
    pred, conf = predict_all(est, crops, progress=progress)
    m = azimuth_metrics(pred, true, conf) if len(pred) else {"n": 0}
    m.update(model=str(model), data=str(data), backend=est.backend_name, skipped=skipped)
    return {"metrics": m, "pred": pred, "true": true, "conf": conf}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=".pt checkpoint, .onnx model or .engine")
    p.add_argument("data", nargs="+", help="crops HDF5 file(s) and/or KITTI-format folder(s)")
    p.add_argument("--out", help="folder for metrics.json and plots")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int)
    p.add_argument("--kitti-types", default="Car")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    results = {}
    try:
        for d in args.data:
            r = evaluate(args.model, d, args.backend, args.device, args.limit,
                         tuple(args.kitti_types.split(",")), not args.quiet)
            m = r["metrics"]
            name = Path(d).stem if Path(d).is_file() else Path(d).name
            results[name] = m
            print(format_metrics(name, m))
            if args.out and m["n"]:
                save_all_plots(r["pred"], r["true"], m, args.out, name, f"{Path(args.model).name} on {name}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-eval: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        save_json(results, Path(args.out) / "metrics.json")
        print(f"wrote {args.out}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
