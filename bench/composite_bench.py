"""Render once, composite many: full renders/s (crops) vs layers renders/s vs composited crops/s, 1 process.

    python bench/composite_bench.py [--models DIR ...] [--procedural 16] [--renders 64] [--composites 512] \
        [--backgrounds ../shared/real_unlabelled]

Prints a table. Every row is one process, timed after a warm-up (model loading, EGL start, first photo
reads excluded): 'crops' renders a car and composites it onto a photo (carpose-render crops),
'layers' renders a car with its coverage and shadow and no background (carpose-render layers),
'composite' makes training crops from 64 such layers in memory (training/pose/composite.py, photo
pools as in training), and 'CropStream' is what a training worker gets: the layers read back from
HDF5, composited and augmented. torch runs one thread, as in a DataLoader worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from carpose.crop import CropSpec
from training.dataset.reader import CarposeDataset
from training.pose.composite import Compositor, composite_rng, layers_config
from training.pose.data import CropStream
from training.render.backgrounds import BackgroundSource, procedural_background
from training.render.crops import layer_canvas, make_crop, render_layers
from training.render.jobs import ModelSpec, build_models, run_job
from training.render.renderer import CarRenderer
from training.render.sampling import RenderConfig, sample_rng

WARMUP = 4
REPO = Path(__file__).resolve().parents[1]


def rate(fn, count: int) -> float:
    """Calls per second of ``fn(i)`` for i in range(count), after WARMUP untimed calls."""
    for i in range(WARMUP):
        fn(i)
    t0 = time.perf_counter()
    for i in range(WARMUP, WARMUP + count):
        fn(i)
    return count / (time.perf_counter() - t0)


def procedural_photos(folder: Path, n: int = 16) -> Path:
    """``n`` procedural 640x360 'photos' for a machine without ../shared."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), procedural_background(rng, 360, 640))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = REPO.parent / "shared" / "real_unlabelled"
    ap.add_argument("--models", action="append", metavar="DIR", help="car mesh folder(s); default: procedural")
    ap.add_argument("--procedural", type=int, default=None, help="procedural cars (default 16 without --models)")
    ap.add_argument("--backgrounds", default=str(shared) if shared.is_dir() else None,
                    help="photo folder (default ../shared/real_unlabelled when present, else 16 procedural images)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--renders", type=int, default=64, help="timed renders per render row")
    ap.add_argument("--composites", type=int, default=512, help="timed composites")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker: torch's threads only fight over 2 cores here
    procedural = args.procedural if args.procedural is not None else (0 if args.models else 16)
    spec = ModelSpec(models_dir=tuple(args.models) if args.models else None, procedural=procedural)
    cfg = RenderConfig(crop=CropSpec(size=args.size))
    models, _ = build_models(spec)
    tmp = Path(tempfile.mkdtemp(prefix="composite_bench_"))
    photos = args.backgrounds or str(procedural_photos(tmp / "photos"))
    bg = BackgroundSource.from_folder(photos, procedural_fraction=cfg.procedural_backgrounds)
    shown = os.path.relpath(args.backgrounds, REPO) if args.backgrounds else "16 procedural images"
    print(f"models: {', '.join(args.models) if args.models else f'procedural x{procedural}'}; backgrounds: "
          f"{shown}; {args.size} px crops; {os.cpu_count()} cores; "
          f"{platform.processor() or platform.machine()}; 1 process")
    rows = []
    side = int(round(args.size * cfg.render_scale))
    with CarRenderer(side, side) as r:
        rows.append(("crops: render + composite (full render)", f"{side} px",
                     rate(lambda i: make_crop(sample_rng(1, i), models, r, bg, cfg), args.renders)))
    canvas = layer_canvas(cfg)
    with CarRenderer(canvas, canvas) as r:
        rows.append(("layers: render, coverage, shadow", f"{canvas} px",
                     rate(lambda i: render_layers(sample_rng(1, i), models, r, cfg), args.renders)))
    try:
        layers = run_job("layers", tmp / "layers.h5", 64, spec, cfg, seed=2, progress=False)
        with CarposeDataset(layers) as ds:
            lcfg = layers_config(ds)
            data = [{k: ds.h5[k][i] for k in ("images", "alpha", "shadow", "bbox", "azimuth_deg")}
                    for i in range(len(ds))]
        comp = Compositor(photos)
        rows.append(("composite: layers row -> training crop", f"{args.size} px",
                     rate(lambda i: comp(data[i % len(data)], composite_rng(0, 0, 0, i), lcfg, pool=(0, 0, 0, i // 64)),
                          args.composites)))
        stream = CropStream([layers], train=True, seed=0, composite_backgrounds=photos)

        def epoch(e: int) -> None:
            stream.set_epoch(e)
            for _ in stream:
                pass

        rows.append(("CropStream: read + composite + augment", f"{args.size} px",
                     rate(epoch, max(1, args.composites // len(stream))) * len(stream)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'what':<42}{'image':>8}{'per s':>9}{'vs crops':>10}")
    for name, image, per_s in rows:
        print(f"{name:<42}{image:>8}{per_s:>9.1f}{per_s / rows[0][2]:>9.1f}x")


if __name__ == "__main__":
    main()
