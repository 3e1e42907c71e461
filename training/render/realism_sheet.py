"""Side-by-side sheet: real car crops from hand-labelled road frames next to rendered crops at the
same azimuths, to judge by eye how far the renders are from real photos.

    python -m training.render.realism_sheet --images ../shared/real/nuscenes_front/image_2 \\
        --labels data/real/nuscenes_front/label_2 --out docs/realism_sheet.jpg

The real frames are the validation set: they are only *shown* here (and used as car-free
backgrounds by the renders), never rendered into positives.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from carpose.crop import CropSpec, crop_box
from carpose.draw import tile_grid
from training.cars.model import CarModel
from training.render.backgrounds import BackgroundSource
from training.render.crops import make_crop
from training.render.renderer import CarRenderer
from training.render.sampling import RenderConfig

SHARED = Path(__file__).resolve().parents[3] / "shared"


def real_crops(images: Path, labels: Path, size: int, min_height: float = 40.0) -> list[tuple[np.ndarray, float]]:
    """(crop RGB, azimuth deg) of every labelled Car at least ``min_height`` px tall, not truncated
    or heavily occluded; azimuth from KITTI alpha (docs/conventions.md: azimuth = alpha - 90)."""
    out = []
    for lab in sorted(labels.glob("*.txt")):
        img_path = images / f"{lab.stem}.png"
        if not img_path.exists():
            continue
        img = None
        for line in lab.read_text().splitlines():
            f = line.split()
            if len(f) < 8 or f[0] not in ("Car", "Van"):
                continue
            trunc, occ, alpha = float(f[1]), int(float(f[2])), float(f[3])
            box = np.array([float(v) for v in f[4:8]])
            if trunc > 0.2 or occ > 1 or box[3] - box[1] < min_height or alpha < -9:
                continue
            if img is None:
                img = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB)
            out.append((crop_box(img, box, CropSpec(size=size)), (math.degrees(alpha) - 90.0) % 360.0))
    return out


def sheet_models() -> list[CarModel]:
    """ApolloCar3D cars through the project's loader when it knows them, plus procedural cars."""
    from training.cars.procedural import generate_fleet

    models = generate_fleet(6, seed=0)
    apollo = SHARED / "cars_more" / "apollocar3d"
    if apollo.is_dir():
        try:
            from training.cars.loader import load_car_folder

            models = load_car_folder(apollo)[:12] + models
        except Exception as exc:  # loader without ApolloCar3D support yet: procedural only
            print(f"ApolloCar3D not loadable ({exc}); procedural cars only")
    return models


def _tile(img: np.ndarray, text: str) -> np.ndarray:
    t = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    cv2.putText(t, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(t, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def build_sheet(images: Path, labels: Path, n: int = 12, size: int = 128, seed: int = 0,
                cfg: RenderConfig | None = None) -> np.ndarray:
    """BGR sheet, pairs of columns: real crop | rendered crop at the same azimuth."""
    cfg = cfg or RenderConfig(background_labels=str(labels))
    reals = real_crops(images, labels, size)
    if not reals:
        raise ValueError(f"no usable labelled cars in {labels}")
    reals.sort(key=lambda r: r[1])
    # One car per 30-degree bin first (the frames come in sequences of the same car), then the rest.
    seen: set[int] = set()
    pick = [r for r in reals if int(r[1] // 30) not in seen and not seen.add(int(r[1] // 30))]
    rest = [r for r in reals if all(r is not q for q in pick)]
    pick = (pick + [rest[int(i)] for i in np.linspace(0, len(rest) - 1, max(n - len(pick), 0)).round()]
            if rest else pick)[:n]
    bg = BackgroundSource.from_folder(images, labels=labels, procedural_fraction=cfg.procedural_backgrounds,
                                      bottom_margin=cfg.background_bottom_margin)
    models = sheet_models()
    tiles = []
    side = int(round(size * cfg.render_scale))
    with CarRenderer(side, side) as renderer:
        for i, (crop, az) in enumerate(pick):
            rng = np.random.default_rng([seed, i])
            s = make_crop(rng, models, renderer, bg, cfg, azimuth_deg=az)
            tiles.append(np.hstack([_tile(crop, f"real {az:.0f}"), _tile(s.image, f"render {s.azimuth_deg:.0f}"),
                                    np.full((size, 4, 3), 255, np.uint8)]))
    return tile_grid(tiles, cols=3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=str(SHARED / "real" / "nuscenes_front" / "image_2"))
    ap.add_argument("--labels", default="data/real/nuscenes_front/label_2")
    ap.add_argument("--out", default="docs/realism_sheet.jpg")
    ap.add_argument("-n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--studio", action="store_true", help="the old look, for a before picture")
    args = ap.parse_args(argv)
    cfg = RenderConfig(background_labels=args.labels)
    if args.studio:
        from training.render.interference import InterferenceConfig

        cfg = RenderConfig(lighting="studio", materials="flat", shadows=False, haze=(0.0, 0.0), road_camera_prob=0.0,
                           procedural_backgrounds=0.0, background_labels=args.labels,
                           interference=InterferenceConfig(exposure_prob=0.0, white_balance_prob=0.0,
                                                           saturation_prob=0.0, shot_noise_max=0.0))
    sheet = build_sheet(Path(args.images), Path(args.labels), n=args.n, seed=args.seed, cfg=cfg)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
