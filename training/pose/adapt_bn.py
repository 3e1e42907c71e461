"""``carpose-adapt-bn``: re-estimate a pose checkpoint's batch-norm statistics on unlabelled real crops.

    carpose-adapt-bn runs/posenet/best.pt --images ../shared/real_unlabelled \\
        --detector models/carpose_det.onnx --out runs/posenet/best_bn.pt

Why: a network trained only on renders normalises every layer with the renders' feature statistics;
real photos have other colours, contrast, noise and blur, so their activations arrive shifted and
scaled. Recomputing the BatchNorm means and variances on real car crops (AdaBN) moves the
normalisation to real data without one label and without changing a single learned weight.

Car boxes come from a detector run on the photos (``--detector``: no labels at all), or from the
boxes of a KITTI label folder (``--boxes``: the boxes only, the azimuths are never read). The real
validation frames are refused (``carpose.eval.real_sources``): statistics taken from them would make
their figures optimistic. ``--images`` is searched recursively (``real_unlabelled/`` has one folder
per source). Each box gives its crop, cut as the runtime cuts it, and the crop's mirror image.
``--mix`` blends the new statistics with the old ones (1 = real only); the result is a normal
checkpoint for ``carpose-eval`` and ``carpose-export``, its metadata says where the statistics came
from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from carpose.crop import CropSpec, crop_boxes
from carpose.eval.kitti import parse_kitti_label
from carpose.eval.real_sources import refuse_validation_frames
from training.pose.checkpoint import load_checkpoint, save_checkpoint

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def detector_boxes(images: list[Path], detector: str, conf: float, min_height: float,
                   progress: bool = True) -> dict[Path, np.ndarray]:
    """Boxes (x1, y1, x2, y2) of the detector's cars per image, at least ``min_height`` px tall."""
    from carpose.detect import DetectorConfig, YoloDetector

    det = YoloDetector(DetectorConfig(weights=detector, conf=conf, device="cpu"))
    out = {}
    for p in tqdm(images, desc="detect", leave=False, disable=not progress):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            continue
        boxes = [d.box_xyxy for d in det.detect(img) if d.box_xyxy[3] - d.box_xyxy[1] >= min_height]
        out[p] = np.asarray(boxes, np.float64).reshape(-1, 4)
    return out


def label_boxes(images: list[Path], labels: Path, types: tuple[str, ...], min_height: float) -> dict[Path, np.ndarray]:
    """The boxes of a KITTI label folder (``<stem>.txt`` per image); the azimuths are not read."""
    out = {}
    for p in images:
        lab = labels / f"{p.stem}.txt"
        if lab.is_file():
            out[p] = np.asarray([o.box_xyxy for o in parse_kitti_label(lab)
                                 if o.type in types and o.height_px >= min_height], np.float64).reshape(-1, 4)
    return out


def real_crops(boxes: dict[Path, np.ndarray], spec: CropSpec, mirror: bool = True) -> np.ndarray:
    """RGB uint8 crops (N, S, S, 3) of every box, cut as ``spec`` says, and their mirror images."""
    crops = []
    for p, bs in boxes.items():
        if not len(bs):
            continue
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        for c in crop_boxes(img, bs, spec)[:, :, :, ::-1]:  # a grey_nearer spec greys each car's nearer ones
            crops.append(c)
            if mirror:
                crops.append(c[:, ::-1])
    return np.ascontiguousarray(np.stack(crops)) if crops else np.zeros((0, spec.size, spec.size, 3), np.uint8)


@torch.no_grad()
def adapt_batchnorm(model: torch.nn.Module, crops: np.ndarray, mix: float = 1.0, batch: int = 64) -> int:
    """Recompute every BatchNorm's running mean/var over ``crops`` (cumulative average over the
    batches), then blend: ``mix * new + (1 - mix) * old``. Weights are untouched. Returns the BN count."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    old = [(m.running_mean.clone(), m.running_var.clone(), m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every crop counts the same
    model.eval()
    for m in bns:
        m.train()
    for i in range(0, len(crops), batch):
        x = torch.from_numpy(crops[i:i + batch].transpose(0, 3, 1, 2).copy()).float()
        model.logits(x)
    for m, (mean, var, momentum, tracked) in zip(bns, old, strict=True):
        m.running_mean.mul_(mix).add_(mean, alpha=1 - mix)
        m.running_var.mul_(mix).add_(var, alpha=1 - mix)
        m.momentum = momentum
        m.num_batches_tracked.copy_(tracked)
    model.eval()
    return len(bns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-adapt-bn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="carpose-train checkpoint (.pt)")
    p.add_argument("--images", required=True, help="folder of real photos")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--detector", help="detector weights (.onnx/.pt) that find the cars: no labels used")
    src.add_argument("--boxes", help="KITTI label_2 folder whose boxes (only) give the cars")
    p.add_argument("--conf", type=float, default=0.25, help="detector threshold")
    p.add_argument("--min-height", type=float, default=30.0, help="skip boxes lower than this (px)")
    p.add_argument("--mix", type=float, default=1.0, help="share of the new statistics (0..1)")
    p.add_argument("--out", required=True, help="checkpoint to write")
    args = p.parse_args(argv)
    try:
        if not 0.0 <= args.mix <= 1.0:
            raise ValueError(f"--mix must be in 0..1, got {args.mix}")
        refuse_validation_frames(args.images, "BatchNorm statistics")
        refuse_validation_frames(args.boxes, "BatchNorm statistics")
        model, ck = load_checkpoint(args.checkpoint)
        images = sorted(q for q in Path(args.images).rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES) \
            if Path(args.images).is_dir() else []
        if not images:
            raise FileNotFoundError(f"no images in {args.images}")
        spec = CropSpec.from_dict(ck["metadata"]["crop"])
        boxes = detector_boxes(images, args.detector, args.conf, args.min_height) if args.detector else \
            label_boxes(images, Path(args.boxes), ("Car",), args.min_height)
        crops = real_crops(boxes, spec)
        if len(crops) < 16:
            raise ValueError(f"only {len(crops)} crops (with mirrors) from {args.images}: too few for statistics")
        n_bn = adapt_batchnorm(model, crops, args.mix)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-adapt-bn: error: {exc}", file=sys.stderr)
        return 2
    meta = dict(ck["metadata"], bn_adapted={"images": str(args.images), "crops": int(len(crops)), "mix": args.mix,
                                            "boxes": f"detector {args.detector}" if args.detector
                                            else f"label boxes {args.boxes} (azimuths not read)"})
    save_checkpoint(args.out, model, meta, {k: ck[k] for k in ("epoch", "history") if k in ck})
    print(f"carpose-adapt-bn: {n_bn} BatchNorm layers re-estimated on {len(crops)} real crops "
          f"({len(crops) // 2} boxes + mirrors, mix {args.mix}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
