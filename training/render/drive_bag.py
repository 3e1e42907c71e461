"""``carpose-make-bag``: a rosbag2 test bag, rendered (a synthetic drive) or from real labelled frames.

    carpose-make-bag data/drive_bag --frames 60 --fps 10 --width 640 --height 480 --storage mcap
    carpose-make-bag --from-kitti ../shared/real/kitti_val data/kitti_bag
    carpose-make-bag --from-kitti data/real/nuscenes_front data/nuscenes_bag \\
        --images ../shared/real/nuscenes_front/image_2

The bag has the camera images, camera info and per-car ground truth (carpose.ros.bag describes the
topics). The drive is rendered by training.render.drive: the same arguments give the same labels
and stamps, and the same images up to a few z-fighting pixels. ``--from-kitti DIR`` writes the
frames of a KITTI-format folder instead (carpose.eval.kitti_bag: which objects count, azimuth from
alpha, no CameraInfo without calib). Either way the bag is written as ``OUT_BAG.partial`` and renamed
when complete, so an interrupted run never leaves a bag under the final name (a stale ``.partial``
is removed by the next run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from carpose.eval.kitti_bag import CUSTOM_DATA_KEY, DEFAULT_MIN_HEIGHT, DEFAULT_TYPES, make_kitti_bag
from carpose.ros.bag import START_NS, STORAGES, BagReader, BagWriter, GtCar, atomic_bag


def frame_gt(cars: list[dict]) -> list[GtCar]:
    """Drive labels (training.render.drive) -> GtCar."""
    out = []
    for c in cars:
        out.append(GtCar(np.asarray(c["bbox"], np.float64), float(c["azimuth_deg"]), int(c["track_id"]),
                         bool(c["ignore"]), np.asarray(c["centre_cam"], np.float64), float(c["rotation_y"])))
    return out


def make_bag(out: str | Path, frames: int = 60, fps: float = 10.0, width: int = 640, height: int = 480,
             storage: str = "mcap", seed: int = 0, cars: int = 5, models_dir: str | None = None,
             procedural: int = 200, split: str = "heldout", overwrite: bool = False, progress: bool = True) -> Path:
    """Render and write the bag; returns its path."""
    from tqdm import tqdm

    from training.render.drive import Drive, DriveConfig, pick_models

    out = Path(out)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    cfg = DriveConfig(frames=frames, fps=fps, width=width, height=height, cars=cars, seed=seed)
    models = pick_models(cfg.cars, seed=seed, models_dir=models_dir, procedural=procedural, split=split)
    drive = Drive(cfg, models)
    period_ns = round(1e9 / fps)
    with atomic_bag(out) as tmp:
        with BagWriter(tmp, storage) as w:
            w.set_custom_data("carpose.drive", json.dumps(
                {"config": asdict(cfg), "models": [a.model.name for a in drive.actors],
                 "roles": [a.role for a in drive.actors], "split": split}))
            bar = tqdm(total=frames, unit="frame", desc="render drive", disable=not progress, dynamic_ncols=True)
            for f in drive.frames():
                w.write_frame(START_NS + f.index * period_ns, f.image_bgr, f.K, frame_gt(f.cars))
                bar.update(1)
            bar.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-make-bag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT_BAG", help="bag directory to create")
    p.add_argument("--frames", type=int, help="drive length (default 60); with --from-kitti: only the first N")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--storage", choices=STORAGES, default="mcap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cars", type=int, default=5, help="scripted cars, 3-6")
    p.add_argument("--models", help="folder of car meshes (default: procedural cars only)")
    p.add_argument("--procedural", type=int, default=200,
                   help="procedural fleet size the split is taken from (200 = the pose model's training fleet)")
    p.add_argument("--split", choices=("heldout", "train", "all"), default="heldout",
                   help="which cars: held out from training (default), training cars, or any")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    real = p.add_argument_group("real frames (--from-kitti; --width/--height/--seed/--cars/--models do not apply)")
    real.add_argument("--from-kitti", metavar="DIR", help="KITTI-format folder: label_2/ (+ image_2/, calib/)")
    real.add_argument("--images", metavar="IMGDIR", help="image folder when it is not DIR/image_2")
    real.add_argument("--types", default=",".join(DEFAULT_TYPES), help="label types that are cars (default Car,Van)")
    real.add_argument("--min-height", type=float, default=DEFAULT_MIN_HEIGHT,
                      help="smaller cars are ignore regions (px; default 25, KITTI moderate)")
    args = p.parse_args(argv)
    if args.images and not args.from_kitti:
        p.error("--images needs --from-kitti")
    t0 = time.perf_counter()
    try:
        if args.from_kitti:
            out = make_kitti_bag(args.from_kitti, args.out, args.images, args.fps,
                                 tuple(t.strip() for t in args.types.split(",") if t.strip()), args.min_height,
                                 args.storage, args.frames, args.overwrite, not args.quiet)
        else:
            out = make_bag(args.out, args.frames or 60, args.fps, args.width, args.height, args.storage, args.seed,
                           args.cars, args.models, args.procedural, args.split, args.overwrite, not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"carpose-make-bag: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    if args.from_kitti:
        info = json.loads(BagReader(out).custom_data[CUSTOM_DATA_KEY])
        what = (f"{info['frames']} real frames of {args.from_kitti} at {args.fps:g} fps, types "
                f"{','.join(info['types'])}, CameraInfo: {info['camera_info']}")
    else:
        what = f"{args.frames or 60} frames {args.width}x{args.height} at {args.fps:g} fps"
    print(f"wrote {out} ({args.storage}, {what}, {size:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
