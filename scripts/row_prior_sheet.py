#!/usr/bin/env python
"""Where the row prior changes what the pipeline says, on photos without labels (issue 21).

    python scripts/row_prior_sheet.py ../shared/real_unlabelled --out runs/row_prior_sheet.jpg

Runs the shipped detector and pose model on every photo under the folder twice, with the row prior
(carpose/row_prior.py) and without it on the same boxes, and draws each car whose azimuth moved by more
than ``--min-change`` degrees: a region around it (cyan: the car, grey: the frame's other boxes), red the
network's reading alone, green the reading with the row prior, and the share of its box hidden. Labels
are not needed: the point is to look, on cameras the validation sets do not hold, at whether the cars
the prior moves are parked rows and queues (it is right) or oncoming cars behind parked ones (its cost).
The sheet is written outside the repository's docs: the photos' licences keep them out of anything
shipped (../shared/real_unlabelled/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.convention import angular_error
from carpose.crop import hidden_share
from carpose.draw import arrow_vector, tile_grid
from carpose.pipeline import Pipeline, PipelineConfig

TILE_W, TILE_H = 480, 340


def tile(img: np.ndarray, boxes: np.ndarray, i: int, alone: float, row: float, text: str) -> np.ndarray:
    """A region around car ``i`` of ``boxes`` with both readings drawn on it."""
    x1, y1, x2, y2 = boxes[i]
    s = max(x2 - x1, y2 - y1) * 1.8
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rx1, ry1 = int(max(0, cx - s)), int(max(0, cy - s / 2))
    rx2, ry2 = int(min(img.shape[1], cx + s)), int(min(img.shape[0], cy + s / 2))
    region = img[ry1:ry2, rx1:rx2]
    k = min(TILE_W / region.shape[1], (TILE_H - 40) / region.shape[0])
    out = np.zeros((TILE_H, TILE_W, 3), np.uint8)
    small = cv2.resize(region, None, fx=k, fy=k)
    out[:small.shape[0], :small.shape[1]] = small
    shifted = (boxes - [rx1, ry1, rx1, ry1]) * k
    for j, b in enumerate(shifted.astype(int)):
        cv2.rectangle(out, tuple(b[:2]), tuple(b[2:]), (255, 255, 0) if j == i else (128, 128, 128), 1)
    c = (int(shifted[i, [0, 2]].mean()), int(shifted[i, [1, 3]].mean()))
    for az, color in ((alone, (0, 0, 255)), (row, (0, 255, 0))):
        dx, dy = arrow_vector(az)
        cv2.arrowedLine(out, c, (int(c[0] + 60 * dx), int(c[1] + 60 * dy)), color, 2, tipLength=0.3)
    for n, line in enumerate(text.splitlines()):
        cv2.putText(out, line, (3, TILE_H - 24 + 16 * n), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", help="a folder of photos (searched recursively)")
    p.add_argument("--out", default="runs/row_prior_sheet.jpg")
    p.add_argument("--min-change", type=float, default=30.0, help="draw cars the prior moves by more (deg)")
    p.add_argument("--max-tiles", type=int, default=48)
    args = p.parse_args(argv)
    photos = sorted(f for f in Path(args.photos).rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        print(f"row_prior_sheet: no photos under {args.photos}", file=sys.stderr)
        return 2
    with_prior = Pipeline(PipelineConfig())
    alone = Pipeline(PipelineConfig(detector_weights=None, row_prior=False))
    tiles, cars, behind = [], 0, 0
    for f in tqdm(photos, desc="photos"):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            continue
        a = with_prior.process(img)
        cars += len(a.cars)
        if len(a.cars) < 2:
            continue
        boxes = np.array([c.box_xyxy for c in a.cars], np.float64)
        b = alone.process(img, boxes=np.array([[*c.box_xyxy, c.score] for c in a.cars]))
        for i, (ca, cb) in enumerate(zip(a.cars, b.cars, strict=True)):
            h = hidden_share(boxes[i], boxes)
            behind += h > 0
            if angular_error(ca.azimuth_deg, cb.azimuth_deg) > args.min_change:
                text = (f"{f.parent.name}/{f.stem} hidden {h:.2f}\nalone {cb.azimuth_deg:.0f} "
                        f"c{cb.azimuth_confidence:.2f}  row {ca.azimuth_deg:.0f} c{ca.azimuth_confidence:.2f}")
                tiles.append(tile(img, boxes, i, cb.azimuth_deg, ca.azimuth_deg, text))
    print(f"{len(photos)} photos, {cars} cars, {behind} with a nearer car's box over them, {len(tiles)} moved by more "
          f"than {args.min_change:g} deg by the row prior")
    if tiles:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(args.out, tile_grid(tiles[:args.max_tiles], 4))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
