"""Render once, composite many: layers files (``carpose-render layers``) become training crops here.

A layers file holds each car rendered once, with its coverage (alpha) and the shadow it casts on
the ground, and no background. At training time every row is composited anew: a random patch of a
real photo (random scale and column, placed so that the car's wheels fall on the photo's road rows:
``BackgroundSource.sample_on_ground``), darkened by the shadow, the car alpha-blended over it, then
the same steps as a crops file's render (``training.render.crops.finish_crop``): occluders,
truncation by the image edge, a detector-like jittered box cut with ``carpose.crop.crop_box``
exactly as the runtime cuts detector boxes, low resolution and the photometric interference.
``CropStream`` then applies the training augmentation (flip with the label mirrored, colour, blur,
noise). Every epoch therefore shows each render on another background, in
another frame, with other occluders: many training images per render-second instead of one.

Why a second path at all: a render costs ~40-70 ms, a composite a few ms, and what a pose CNN must
learn to ignore (the background, the framing) is what is cheap to vary. What a composite cannot
vary is the car itself: its view, paint and light are fixed at render time.

Every draw comes from the generator it is given; ``CropStream`` seeds one per row (seed, epoch, file,
row) and draws the photos of each block of 64 rows from a pool of 8 (``Compositor.pool``), so a
composite does not depend on the number of workers or ranks. The draws (box jitter, haze,
interference, truncation, low resolution, share of procedural backgrounds) follow the layers file's
``render_config``. Background folders holding real validation frames are refused.

    python -m training.pose.composite preview data/layers.h5 --backgrounds ../shared/real_unlabelled \
        --out docs/composite_preview.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from carpose.convention import QUADRANT_NAMES, azimuth_to_quadrant
from carpose.draw import tile_grid
from carpose.eval.real_sources import refuse_validation_frames
from training.dataset.reader import CarposeDataset, DatasetError
from training.render.backgrounds import BackgroundSource, composite, procedural_background
from training.render.crops import FinishedCrop, finish_crop
from training.render.preview import _label, draw_view_dial
from training.render.sampling import RenderConfig

#: Decoded photos kept per process: the real_unlabelled photos are 0.2-2.8 MB decoded, so 64 of them
#: stay well under 200 MB, and a hit skips a ~3 ms JPEG decode (as long as the composite itself).
PHOTO_CACHE = 64
#: ``CropStream`` draws the backgrounds (and occluder fills) of each block of POOL_ROWS rows of a file
#: from a pool of POOL_PHOTOS photos drawn per block and epoch: a shuffle buffer of 8 chunks of 64 rows
#: then needs 64 decoded photos, which the cache holds, instead of a decode for nearly every row.
POOL_ROWS = 64
POOL_PHOTOS = 8


def layers_config(ds: CarposeDataset) -> RenderConfig:
    """The render config a layers file was made with: it sets the draws of compositing."""
    if ds.kind != "layers":
        raise DatasetError(f"{ds.path} holds {ds.kind}, not layers")
    return RenderConfig.from_json(json.dumps(ds.attrs["render_config"]))


def composite_layers(row: Mapping[str, np.ndarray], background: np.ndarray, rng: np.random.Generator,
                     cfg: RenderConfig, occluders: BackgroundSource | None = None,
                     with_alpha: bool = False) -> FinishedCrop:
    """One training crop from one layers row (``images``, ``alpha``, ``shadow``, ``bbox``) over
    ``background`` (canvas-sized RGB): the shadow multiplied in, the car blended with its coverage
    (the stored alpha is already antialiased: no feathering), haze, then ``finish_crop``. With
    ``with_alpha`` the result also holds the car's coverage cut like the crop."""
    side = row["images"].shape[0]
    if background.shape != (side, side, 3):
        raise ValueError(f"background {background.shape} does not match the {side} px layers canvas")
    alpha = row["alpha"].astype(np.float32) / 255.0
    shadow = 1.0 - row["shadow"].astype(np.float32) / 255.0
    haze = float(rng.uniform(*cfg.haze)) if cfg.haze[1] > 0 else 0.0
    image = composite(row["images"], alpha, background, feather=False, shadow=shadow, haze=haze)
    return finish_crop(image, np.asarray(row["bbox"], np.float64), rng, cfg, occluders,
                       alpha=row["alpha"] if with_alpha else None)


class Compositor:
    """Composites layers rows onto random patches of the photos under ``folder`` (searched
    recursively); a share of procedural backgrounds as the layers file's ``procedural_backgrounds``
    says. Refuses a folder of real validation frames."""

    def __init__(self, folder: str | Path) -> None:
        refuse_validation_frames(folder, "render backgrounds")
        self.folder = Path(folder)
        self.source = BackgroundSource.from_folder(folder)
        self.source.cache_size = PHOTO_CACHE
        self._pools: dict[tuple, BackgroundSource] = {}

    def pool(self, key: tuple[int, ...]) -> BackgroundSource:
        """The photos keyed by ``key`` (e.g. seed, epoch, file, block of rows): POOL_PHOTOS of them
        drawn from the generator of ``key``, sharing the decoded-photo cache."""
        if key not in self._pools:
            if len(self._pools) >= 4 * PHOTO_CACHE // POOL_PHOTOS:
                self._pools.pop(next(iter(self._pools)))
            n = len(self.source.photos)
            pick = np.random.default_rng([*key, 0xB6]).choice(n, size=min(POOL_PHOTOS, n), replace=False)
            self._pools[key] = self.source.subset(np.sort(pick))
        return self._pools[key]

    @staticmethod
    def background(source: BackgroundSource, rng: np.random.Generator, side: int, procedural_fraction: float,
                   ground: float) -> np.ndarray:
        """A ``side`` square background: a patch of a random photo of ``source`` at a random scale whose
        row at ``ground`` (where the car's wheels are) lies on the photo's road (``sample_on_ground``),
        or procedural."""
        if procedural_fraction > 0 and rng.uniform() < procedural_fraction:
            return procedural_background(rng, side, side)
        return source.sample_on_ground(rng, side, ground)

    def __call__(self, row: Mapping[str, np.ndarray], rng: np.random.Generator, cfg: RenderConfig,
                 with_alpha: bool = False, pool: tuple[int, ...] | None = None) -> FinishedCrop:
        """One training crop from a layers row; with ``pool`` (a key, see :meth:`pool`) the background
        and occluder photos come from that pool, else from every photo."""
        source = self.source if pool is None else self.pool(pool)
        side = row["images"].shape[0]
        bg = self.background(source, rng, side, cfg.procedural_backgrounds, float(row["bbox"][3]) / side)
        return composite_layers(row, bg, rng, cfg, source, with_alpha)


def composite_rng(seed: int, epoch: int, file_index: int, row: int) -> np.random.Generator:
    """The generator of one row's composite in one epoch (``CropStream``): independent of workers and
    ranks, new every epoch."""
    return np.random.default_rng([seed, epoch, file_index, row, 0xC0])


# ---------------------------------------------------------------- contact sheet
def _layers_tile(row: Mapping[str, np.ndarray], size: int) -> np.ndarray:
    """What the file stores: the car over a checkerboard ground darkened by its shadow, box drawn."""
    side = row["images"].shape[0]
    y, x = np.mgrid[0:side, 0:side]
    ground = np.where(((x // 12 + y // 12) % 2)[..., None] == 0, 150, 190).astype(np.uint8).repeat(3, axis=2)
    img = composite(row["images"], row["alpha"].astype(np.float32) / 255.0, ground, feather=False,
                    shadow=1.0 - row["shadow"].astype(np.float32) / 255.0)
    x1, y1, x2, y2 = np.round(row["bbox"]).astype(int)
    cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (255, 80, 0), 1)
    img = cv2.cvtColor(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    _label(img, "layers", (4, size - 6), 0.4)
    return img


def preview_sheet(path: str | Path, backgrounds: str | Path, n: int = 8, per_car: int = 3, seed: int = 0,
                  scale: float = 1.5) -> np.ndarray:
    """BGR contact sheet: for each of ``n`` cars its stored layers, then ``per_car`` composites (box and
    azimuth drawn), one car per row."""
    comp = Compositor(backgrounds)
    tiles = []
    with CarposeDataset(path) as ds:
        cfg = layers_config(ds)
        idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False))
        size = int(round(cfg.crop.size * scale))
        for i in idx:
            row = {k: ds.h5[k][int(i)] for k in ("images", "alpha", "shadow", "bbox", "azimuth_deg")}
            tiles.append(_layers_tile(row, size))
            az = float(row["azimuth_deg"])
            for k in range(per_car):
                done = comp(row, composite_rng(seed, k, 0, int(i)), cfg)
                img = cv2.cvtColor(cv2.resize(done.image, (size, size), interpolation=cv2.INTER_LINEAR),
                                   cv2.COLOR_RGB2BGR)
                x1, y1, x2, y2 = np.round(done.bbox * scale).astype(int)
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 1)
                _label(img, f"{az:5.1f} {QUADRANT_NAMES[azimuth_to_quadrant(az)]}", (4, 16), 0.45)
                draw_view_dial(img, az, (size - 20, 20), 15)
                tiles.append(img)
    return tile_grid(tiles, 1 + per_car)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.pose.composite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pv = sub.add_parser("preview", help="contact sheet of a layers file composited onto photos")
    pv.add_argument("layers", help="layers HDF5 file (carpose-render layers)")
    pv.add_argument("--backgrounds", required=True, help="photo folder, e.g. ../shared/real_unlabelled")
    pv.add_argument("--out", required=True, help="image file (.jpg or .png)")
    pv.add_argument("-n", type=int, default=8, help="cars (rows)")
    pv.add_argument("--per-car", type=int, default=3, help="composites per car")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--quality", type=int, default=85, help="JPEG quality")
    args = p.parse_args(argv)
    try:
        sheet = preview_sheet(args.layers, args.backgrounds, n=args.n, per_car=args.per_car, seed=args.seed)
    except (DatasetError, FileNotFoundError, ValueError) as exc:  # ValidationLeakError is a ValueError
        print(f"composite preview: error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
