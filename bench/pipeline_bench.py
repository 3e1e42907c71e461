"""End-to-end runtime speed: frames/s and per-stage latency (p50/p95) of ``Pipeline.process``.

    python bench/pipeline_bench.py [--frames 30] [--sizes 640x480,1280x720] [--cars 1,4,16]

Frames: ``N`` rendered cars (procedural fleet, real renderer) pasted in a grid on a procedural
background, so each frame holds exactly N cars that the shipped detector can find. Each row runs
the real detector and the real pose model (ONNX Runtime; CUDA provider when present) and reports
how many cars were found per frame, since the pose stage's cost grows with them. A second block
gives the pose+crop stages alone with the N true boxes passed in (detector skipped).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from carpose.pipeline import Pipeline, PipelineConfig


def car_tiles(n: int, size: int = 160, seed: int = 0) -> list[np.ndarray]:
    """n BGR renders of procedural cars at random azimuths, with alpha masks, ``size`` px square."""
    from training.cars.procedural import generate_fleet
    from training.render.renderer import CarRenderer, Lighting, View

    rng = np.random.default_rng(seed)
    fleet = generate_fleet(8, seed=seed)
    tiles = []
    with CarRenderer(size, size) as r:
        for i in range(n):
            res = r.render_view(fleet[i % len(fleet)], View(float(rng.uniform(0, 360)), 8.0, 7.5), size,
                                Lighting(key_intensity=3.0), paint=tuple(rng.uniform(0.1, 0.9, 3)))
            tiles.append((cv2.cvtColor(res.color, cv2.COLOR_RGB2BGR), res.mask))
    return tiles


def make_frame(w: int, h: int, tiles: list, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A frame with the tiles pasted in a grid, and the pasted cars' boxes."""
    rng = np.random.default_rng(seed)
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = np.linspace(180, 90, h, dtype=np.uint8)[:, None, None]  # sky-to-road gradient
    frame = cv2.add(frame, rng.integers(0, 20, frame.shape, dtype=np.uint8))
    n = len(tiles)
    cols = int(np.ceil(np.sqrt(n * w / h)))
    rows = int(np.ceil(n / cols))
    cw, ch = w // cols, h // rows
    side = min(cw, ch)
    boxes = []
    for k, (img, mask) in enumerate(tiles):
        r, c = divmod(k, cols)
        t = cv2.resize(img, (side, side))
        m = cv2.resize(mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST).astype(bool)
        y0, x0 = r * ch + (ch - side) // 2, c * cw + (cw - side) // 2
        frame[y0:y0 + side, x0:x0 + side][m] = t[m]
        ys, xs = np.nonzero(m)
        boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
    return frame, np.array(boxes, np.float64)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--sizes", default="640x480,1280x720")
    p.add_argument("--cars", default="1,4,16")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto")
    p.add_argument("--pose-model")
    p.add_argument("--det-model")
    args = p.parse_args()
    cfg = PipelineConfig(device=args.device, pose_backend=args.backend)
    if args.pose_model:
        cfg.pose_model = args.pose_model
    if args.det_model:
        cfg.detector_weights = args.det_model
    pipe = Pipeline(cfg)
    counts = [int(c) for c in args.cars.split(",")]
    tiles = car_tiles(max(counts))
    print(f"pipeline bench: {platform.machine()}, {os.cpu_count()} cores, pose backend "
          f"{pipe.pose.backend_name} ({getattr(pipe.pose.backend, 'providers', ['-'])[0]}), "
          f"detector {Path(str(cfg.detector_weights)).name} imgsz {pipe.detector.config.imgsz}, "
          f"{args.frames} frames per row")
    head = f"{'frame':>9} {'cars':>4} {'found':>5} {'fps':>6} | {'p50 ms':>7} {'p95 ms':>7} | " \
           f"{'detect p50/p95':>15} {'crop p50/p95':>13} {'pose p50/p95':>13}"
    for mode in ("detector + pose (end to end)", "pose only (true boxes given)"):
        print(f"\n{mode}\n{head}")
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            for n in counts:
                frame, boxes = make_frame(w, h, tiles[:n])
                given = boxes if mode.startswith("pose") else None
                for _ in range(3):
                    pipe.process(frame, boxes=given)
                t: dict[str, list[float]] = {"total": [], "detect": [], "crop": [], "pose": []}
                found = []
                for _ in range(args.frames):
                    r = pipe.process(frame, boxes=given)
                    found.append(len(r.cars))
                    for k in t:
                        t[k].append(r.timings_ms.get(k, 0.0))
                fps = 1000.0 / np.mean(t["total"])
                print(f"{size:>9} {n:>4} {np.mean(found):>5.1f} {fps:>6.1f} | {pct(t['total'], 50):>7.1f} "
                      f"{pct(t['total'], 95):>7.1f} | {pct(t['detect'], 50):>7.1f}/{pct(t['detect'], 95):<7.1f} "
                      f"{pct(t['crop'], 50):>5.1f}/{pct(t['crop'], 95):<7.1f} "
                      f"{pct(t['pose'], 50):>5.1f}/{pct(t['pose'], 95):<7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
