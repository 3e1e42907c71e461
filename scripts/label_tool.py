#!/usr/bin/env python
"""Pictures for hand-labelling real frames in KITTI format and for checking the labels by eye.

Labelling is done by a person (or an agent) looking at pictures, so this tool only draws:

    # the frame with a pixel grid (coordinates every 100 px, ticks every 20 px), optionally a zoomed region
    python scripts/label_tool.py grid IMG --out grid.png [--region X1 Y1 X2 Y2] [--zoom 3]
    # the labels of one frame drawn on it (box, index, azimuth, heading arrow, top-down dial),
    # plus a strip of zoomed crops, one per car, each with its label
    python scripts/label_tool.py overlay IMG LABEL_TXT --out overlay.png
    # write a KITTI label file from simple lines "x1 y1 x2 y2 azimuth_deg occluded truncated sure"
    python scripts/label_tool.py write SIMPLE_TXT LABEL_TXT
    # a contact sheet of every labelled car of a folder (KITTI root: image_2/ + label_2/)
    python scripts/label_tool.py sheet --images DIR --labels DIR --out sheet.png

The arrow and the dial use carpose.draw, so they show the convention exactly as the runtime draws
predictions: the dial is the car seen from above with the camera as the dot at the bottom.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from carpose.convention import kitti_alpha_from_azimuth
from carpose.draw import annotate
from carpose.eval.kitti import KittiObject, parse_kitti_label
from carpose.results import CarPoseResult

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def read_image(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read image {path}")
    return img


def grid(img: np.ndarray, region: tuple[int, int, int, int] | None, zoom: float) -> np.ndarray:
    """The image (or a region of it) scaled by ``zoom`` with a labelled pixel grid in full-frame
    coordinates, so boxes can be read off the picture."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = region if region else (0, 0, w, h)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    crop = img[y1:y2, x1:x2]
    out = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC if zoom > 1 else cv2.INTER_AREA)
    span = max(x2 - x1, y2 - y1)
    major = 100 if span > 500 else (50 if span > 200 else 10)
    minor = major // 5 if major // 5 * zoom >= 12 else major  # thin lines only where they leave the picture visible
    for x in range((x1 // minor + 1) * minor, x2, minor):
        px = int(round((x - x1) * zoom))
        strong = x % major == 0
        cv2.line(out, (px, 0), (px, out.shape[0]), (0, 255, 255) if strong else (0, 160, 160), 1)
        if strong:
            cv2.putText(out, str(x), (px + 2, 12), _FONT, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
    for y in range((y1 // minor + 1) * minor, y2, minor):
        py = int(round((y - y1) * zoom))
        strong = y % major == 0
        cv2.line(out, (0, py), (out.shape[1], py), (255, 0, 255) if strong else (160, 0, 160), 1)
        if strong:
            cv2.putText(out, str(y), (2, py - 2), _FONT, 0.4, (255, 0, 255), 1, cv2.LINE_AA)
    return out


def as_results(objs: list[KittiObject]) -> list[CarPoseResult]:
    return [_result(o.box_xyxy, o.azimuth_deg, i) for i, o in enumerate(objs)]


def _result(box: np.ndarray, azimuth_deg: float, track_id: int) -> CarPoseResult:
    """A label dressed as a prediction, so carpose.draw draws it exactly as it draws the runtime's."""
    return CarPoseResult(box_xyxy=np.asarray(box, np.float64), score=1.0, class_id=2, class_name="car",
                         azimuth_deg=float(azimuth_deg), azimuth_confidence=1.0, crop_size=0, track_id=track_id)


def car_tile(img: np.ndarray, obj: KittiObject, text: str, size: int = 200) -> np.ndarray:
    """A square tile: the car's box with 15 % context, scaled to ``size``, with the label drawn."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = obj.box_xyxy
    bw, bh = x2 - x1, y2 - y1
    side = max(bw, bh) * 1.3
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    sx1, sy1 = int(cx - side / 2), int(cy - side / 2)
    sx2, sy2 = int(cx + side / 2), int(cy + side / 2)
    pad = max(0, -sx1, -sy1, sx2 - w, sy2 - h)
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(60, 60, 60))
    crop = padded[sy1 + pad:sy2 + pad, sx1 + pad:sx2 + pad]
    tile = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    scale = size / max(1, sx2 - sx1)
    res = _result(np.array([(x1 - sx1) * scale, (y1 - sy1) * scale, (x2 - sx1) * scale, (y2 - sy1) * scale]),
                  obj.azimuth_deg, -1)
    tile = annotate(tile, [res], label=False, frame_text=False)
    cv2.rectangle(tile, (0, size - 18), (size, size), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, size - 5), _FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def tiles_grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    size = tiles[0].shape[0]
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((rows * size, cols * size, 3), 30, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * size:(r + 1) * size, c * size:(c + 1) * size] = t
    return out


def describe(i: int, o: KittiObject) -> str:
    return f"#{i} {o.azimuth_deg:.0f}d o{o.occluded} t{o.truncated:.1f}{'' if o.sure else ' ?'}"


def overlay(img: np.ndarray, label_path: Path) -> np.ndarray:
    objs = parse_kitti_label(label_path)
    drawn = annotate(img, as_results(objs))
    for i, o in enumerate(objs):
        x1, y1 = int(o.box_xyxy[0]), int(o.box_xyxy[3])
        cv2.putText(drawn, describe(i, o), (x1, min(img.shape[0] - 4, y1 + 16)), _FONT, 0.55,
                    (0, 255, 255), 2, cv2.LINE_AA)
    if not objs:
        return drawn
    strip = tiles_grid([car_tile(img, o, describe(i, o)) for i, o in enumerate(objs)],
                       cols=img.shape[1] // 200)
    strip = cv2.copyMakeBorder(strip, 0, 0, 0, img.shape[1] - strip.shape[1], cv2.BORDER_CONSTANT, value=(30, 30, 30))
    return np.vstack([drawn, strip])


def sheet(images: Path, labels: Path, cols: int = 10) -> np.ndarray:
    tiles = []
    for lab in sorted(labels.glob("*.txt")):
        img = read_image(images / f"{lab.stem}.png")
        for i, o in enumerate(parse_kitti_label(lab)):
            tiles.append(car_tile(img, o, f"{lab.stem}#{i} {o.azimuth_deg:.0f}d{'' if o.sure else ' ?'}", size=160))
    if not tiles:
        raise SystemExit(f"no labelled cars under {labels}")
    return tiles_grid(tiles, cols)


def kitti_line(x1: float, y1: float, x2: float, y2: float, azimuth_deg: float, occluded: int,
               truncated: float, sure: bool) -> str:
    """One KITTI label line for a hand-labelled car. The 3-D fields are unknown (KITTI's -1 / -1000
    / -10 placeholders); the 16th field holds "sure within 30 deg" (1) or not (0)."""
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box {x1} {y1} {x2} {y2} is empty")
    if occluded not in (0, 1, 2):
        raise ValueError(f"occluded must be 0, 1 or 2, got {occluded}")
    alpha = float(kitti_alpha_from_azimuth(azimuth_deg))
    return (f"Car {truncated:.2f} {occluded:d} {alpha:.4f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f} "
            f"-1 -1 -1 -1000 -1000 -1000 -10 {int(bool(sure))}")


def write_labels(simple: Path, out: Path) -> int:
    lines = []
    for ln, raw in enumerate(simple.read_text().splitlines(), 1):
        raw = raw.split("#", 1)[0].strip()
        if not raw:
            continue
        f = raw.split()
        if len(f) != 8:
            raise SystemExit(f"{simple}:{ln}: want 'x1 y1 x2 y2 azimuth occluded truncated sure', got {raw!r}")
        lines.append(kitti_line(*map(float, f[:5]), int(f[5]), float(f[6]), f[7] in ("1", "y", "yes", "sure")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in lines))
    return len(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("image")
    g.add_argument("--region", type=int, nargs=4, metavar=("X1", "Y1", "X2", "Y2"))
    g.add_argument("--zoom", type=float, default=1.0)
    g.add_argument("--out", required=True)
    o = sub.add_parser("overlay")
    o.add_argument("image")
    o.add_argument("label")
    o.add_argument("--out", required=True)
    wr = sub.add_parser("write")
    wr.add_argument("simple", type=Path)
    wr.add_argument("label", type=Path)
    s = sub.add_parser("sheet")
    s.add_argument("--images", required=True, type=Path)
    s.add_argument("--labels", required=True, type=Path)
    s.add_argument("--cols", type=int, default=10)
    s.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "write":
        print(f"{a.label}: {write_labels(a.simple, a.label)} cars")
        return
    if a.cmd == "grid":
        out = grid(read_image(a.image), tuple(a.region) if a.region else None, a.zoom)
    elif a.cmd == "overlay":
        out = overlay(read_image(a.image), Path(a.label))
    else:
        out = sheet(a.images, a.labels, a.cols)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(a.out, out)
    print(a.out, out.shape[1], "x", out.shape[0])


if __name__ == "__main__":
    main()
