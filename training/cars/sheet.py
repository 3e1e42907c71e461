"""Eight-view contact sheets of car models, to check their normalised axes by eye.

Why: nothing in a mesh file says which end is the front, and a car loaded back to front flips every
label by 180 degrees. Each row shows one car at azimuth 0, 45, ..., 315 (about 10 deg elevation),
rendered by the project's renderer after normalisation, so a correct car shows its FRONT at 0, its
LEFT side with the nose pointing image-left at 90, its REAR at 180 and its right side at 270.

    python -m training.cars.sheet ../shared/cars_more/kenney --out docs/car_sources/kenney.jpg
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from training.cars.loader import excluded_reason, find_model_files, load_car
from training.cars.model import CarModel

AZIMUTHS = tuple(range(0, 360, 45))
VIEW_NAMES = {0: "front", 90: "left", 180: "rear", 270: "right"}
NEUTRAL_PAINT = (0.62, 0.64, 0.68)  # untextured (paint-role) meshes: light grey-blue shows shading well


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def car_row(model: CarModel, renderer, size: int, elevation_deg: float = 10.0, note: str = "") -> np.ndarray:
    """BGR strip of the 8 views of one car, labelled with its name, size, azimuths and ``note``
    (e.g. "LEFT OUT")."""
    from training.render.renderer import Lighting, View

    light = Lighting()
    tiles = []
    for az in AZIMUTHS:
        res = renderer.render_view(model, View(az, elevation_deg, 12.0), size, light, paint=NEUTRAL_PAINT, fill=0.9)
        img = cv2.cvtColor(res.color, cv2.COLOR_RGB2BGR)
        img[~res.mask] = (70, 96, 70)  # dull green: the car's silhouette stands out
        _label(img, f"{az} {VIEW_NAMES.get(az, '')}", (3, 12))
        tiles.append(img)
    strip = np.concatenate(tiles, axis=1)
    L, W, H = model.extents
    _label(strip, f"{model.name[:28]}  {L:.2f}x{W:.2f}x{H:.2f} m  {note}", (3, size - 5))
    return strip


def contact_sheet(models: list[CarModel], size: int = 112, elevation_deg: float = 10.0,
                  notes: list[str] | None = None) -> np.ndarray:
    """BGR sheet, one row of 8 views per car."""
    from training.render.renderer import CarRenderer

    notes = notes or [""] * len(models)
    with CarRenderer(size, size) as renderer:
        rows = [car_row(m, renderer, size, elevation_deg, n) for m, n in zip(models, notes, strict=True)]
    return np.concatenate(rows, axis=0)


def write_sheets(folder: str | Path, out: str | Path, per_page: int = 20, size: int = 112,
                 quality: int = 80) -> list[Path]:
    """Sheets of every model below ``folder`` (excluded ones too: the sheet is how they are judged),
    ``per_page`` cars per JPEG: ``out`` itself when one page, else ``<stem>_<page>.jpg``."""
    files = find_model_files(folder)
    models = [load_car(p) for p in files]
    notes = ["LEFT OUT" if excluded_reason(p) else "" for p in files]
    pages = math.ceil(len(models) / per_page)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(pages):
        page = slice(k * per_page, (k + 1) * per_page)
        sheet = contact_sheet(models[page], size, notes=notes[page])
        path = out if pages == 1 else out.with_name(f"{out.stem}_{k + 1}{out.suffix}")
        cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, quality])
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="folder of car models (or one model file)")
    p.add_argument("--out", required=True, help="JPEG/PNG path (pages get _1, _2, ... suffixes)")
    p.add_argument("--per-page", type=int, default=20)
    p.add_argument("--size", type=int, default=112, help="tile side in pixels")
    args = p.parse_args(argv)
    for path in write_sheets(args.folder, args.out, args.per_page, args.size):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
