"""Contact sheets and summaries so a person can check labels by eye."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from carpose.convention import QUADRANT_NAMES, azimuth_to_quadrant
from carpose.draw import tile_grid
from training.dataset.reader import CarposeDataset

#: What one row of each dataset kind is, for summaries.
ROW_NAMES = {"crops": "crops", "layers": "cars (layers, composited at training time)", "scenes": "frames"}


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_view_dial(img: np.ndarray, azimuth_deg: float, centre: tuple[int, int], r: int) -> None:
    """Top view: the car as a box pointing up (its front), a dot where the camera stands.

    Azimuth turns counter-clockwise seen from above, so 90 deg (the car's left) puts the dot on the
    left of the dial.
    """
    cx, cy = centre
    cv2.circle(img, centre, r, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.rectangle(img, (cx - r // 4, cy - r // 2), (cx + r // 4, cy + r // 2), (200, 200, 200), -1)
    cv2.rectangle(img, (cx - r // 4, cy - r // 2), (cx + r // 4, cy - r // 4), (60, 200, 255), -1)  # front
    a = math.radians(azimuth_deg)
    px, py = int(round(cx - r * math.sin(a))), int(round(cy - r * math.cos(a)))
    cv2.circle(img, (px, py), max(2, r // 5), (0, 0, 255), -1, cv2.LINE_AA)


def crops_sheet(path: str | Path, n: int = 32, cols: int = 8, seed: int = 0, scale: int = 2) -> np.ndarray:
    """BGR contact sheet of ``n`` random crops, each with its azimuth, quadrant and box."""
    with CarposeDataset(path) as ds:
        if ds.kind != "crops":
            raise ValueError(f"{path} holds {ds.kind}; crops_sheet needs a crops file")
        idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False))
        labels = ds.labels()
        tiles = []
        for i in idx:
            img = cv2.cvtColor(ds.image(int(i)), cv2.COLOR_RGB2BGR)
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            x1, y1, x2, y2 = (labels["bbox"][i] * scale).astype(int)
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 1)
            az = float(labels["azimuth_deg"][i])
            _label(img, f"{az:5.1f} {QUADRANT_NAMES[azimuth_to_quadrant(az)]}", (4, 16), 0.5)
            _label(img, ds.models[int(labels["model_id"][i])]["name"][:18], (4, img.shape[0] - 6), 0.35)
            draw_view_dial(img, az, (img.shape[1] - 24, 24), 18)
            tiles.append(img)
    return tile_grid(tiles, cols)


def scenes_sheet(path: str | Path, n: int = 4, cols: int = 2) -> np.ndarray:
    """BGR sheet of the first ``n`` scene frames with every car's box and azimuth."""
    tiles = []
    with CarposeDataset(path) as ds:
        for i in range(min(n, len(ds))):
            img = cv2.cvtColor(ds.image(i), cv2.COLOR_RGB2BGR)
            cars = ds.cars_of_frame(i)
            for box, az, vis in zip(cars["bbox"], cars["azimuth_deg"], cars["visible_fraction"], strict=True):
                if box[2] <= box[0]:
                    continue
                x1, y1, x2, y2 = box.astype(int)
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0) if vis > 0.3 else (0, 160, 255), 1)
                _label(img, f"{az:.0f}", (x1 + 2, max(y1 - 4, 12)))
            tiles.append(img)
    return tile_grid(tiles, cols)


def summary(path: str | Path) -> str:
    """Human-readable summary of a dataset: size, split, label coverage."""
    with CarposeDataset(path) as ds:
        lab = ds.labels()
        az = lab["azimuth_deg"]
        hist = np.bincount(azimuth_to_quadrant(az), minlength=4) if len(az) else np.zeros(4, int)
        split = ds.attrs["split"]
        lines = [
            f"{path}: {ds.kind}, {len(ds)} {ROW_NAMES[ds.kind]} of "
            f"{'x'.join(map(str, ds.canvas_shape))}, {Path(path).stat().st_size / 1e6:.1f} MB",
            f"  seed {ds.attrs['seed']}, convention v{ds.attrs['convention_version']}, "
            f"schema v{ds.attrs['schema_version']}, {ds.attrs['generator_version']}",
            f"  split {split['split']!r}: {len(ds.models)} models used, held out {len(split['heldout'])} of "
            f"{len(split['all_models'])}: {', '.join(split['heldout'][:6])}"
            f"{' ...' if len(split['heldout']) > 6 else ''}",
            f"  backgrounds: {ds.attrs.get('backgrounds', '?')}",
        ]
        if ds.kind == "scenes":
            lines.append(f"  cars: {len(az)} ({len(az) / max(len(ds), 1):.1f}/frame), "
                         f"visible fraction median {np.median(lab['visible_fraction']):.2f}")
        lines += [
            "  azimuth quadrants " + ", ".join(f"{q} {c}" for q, c in zip(QUADRANT_NAMES, hist, strict=True)),
            f"  azimuth {az.min():.1f}..{az.max():.1f} deg, elevation {lab['elevation_deg'].min():.1f}.."
            f"{lab['elevation_deg'].max():.1f} deg, distance {lab['distance_m'].min():.1f}.."
            f"{lab['distance_m'].max():.1f} m",
        ]
        if ds.kind == "crops":
            lines.append(f"  occluded {np.mean(lab['occlusion'] > 0):.0%} (mean {lab['occlusion'].mean():.2f}), "
                         f"truncated {np.mean(lab['truncation'] > 0):.0%}")
    return "\n".join(lines)
