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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from carpose.convention import QUADRANT_NAMES, azimuth_to_quadrant
from carpose.crop import nearer_boxes
from carpose.draw import tile_grid
from carpose.eval.real_sources import refuse_validation_frames
from training.dataset.reader import CarposeDataset, DatasetError
from training.render.backgrounds import BackgroundSource, composite, procedural_background
from training.render.crops import FinishedCrop, finish_crop
from training.render.preview import _label, draw_view_dial
from training.render.renderer import mask_box
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


@dataclass(frozen=True)
class NeighbourConfig:
    """A second car beside the one being labelled, as in a parked row or a queue (issue 21: KITTI rear
    views whose crop a nearer parked car's front fills were read as fronts). ``prob`` of the composites
    get one (``carpose-train --neighbours``); ``front_prob`` of those stand nearer, in front: ``front_height``
    times the target's height, their box overlapping the target's by ``front_overlap`` of its width,
    hiding at most ``max_cover`` of its coverage (tried three times, then it goes behind); the rest stand
    farther, behind it (``back_height``, ``back_gap`` target widths from its box; negative: overlapping).
    Wheels on the target's ground row, lower when nearer (a road camera). The label stays the target's."""

    front_prob: float = 0.6
    front_height: tuple[float, float] = (1.0, 1.3)
    front_overlap: tuple[float, float] = (0.15, 0.7)
    max_cover: float = 0.5
    back_height: tuple[float, float] = (0.7, 1.0)
    back_gap: tuple[float, float] = (-0.6, 0.1)


def place_neighbour(target_bbox: np.ndarray, other: Mapping[str, np.ndarray], ratio: float, gap: float,
                    right: bool, dy: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``other``'s car (a layers row) scaled to ``ratio`` times the target's height and moved onto the
    target's canvas, its box ``gap`` target widths to the right (or left) of ``target_bbox`` (negative:
    overlapping), wheels on the target's ground row moved by ``(ratio - 1) / 2 + dy`` target heights
    (a nearer car stands lower in a road camera's image). Its RGB, coverage (0..1) and shadow (0..1)."""
    side = other["images"].shape[0]
    t = np.asarray(target_bbox, np.float64)
    o = np.asarray(other["bbox"], np.float64)
    ht, wt = t[3] - t[1], t[2] - t[0]
    s = ratio * ht / max(o[3] - o[1], 1.0)
    wn = s * (o[2] - o[0])
    left = t[2] + gap * wt if right else t[0] - gap * wt - wn
    bottom = t[3] + ((ratio - 1.0) / 2 + dy) * ht
    m = np.array([[s, 0.0, left - s * o[0]], [0.0, s, bottom - s * o[3]]])
    warp = dict(dsize=(side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    rgb = cv2.warpAffine(other["images"], m, borderValue=(0, 0, 0), **warp)
    alpha = cv2.warpAffine(other["alpha"].astype(np.float32) / 255.0, m, borderValue=0.0, **warp)
    shadow = cv2.warpAffine(1.0 - other["shadow"].astype(np.float32) / 255.0, m, borderValue=0.0, **warp)
    return rgb, alpha, shadow


def draw_neighbour(row: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], rng: np.random.Generator,
                   ncfg: NeighbourConfig) -> tuple[bool, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Where ``other`` stands beside ``row``'s car: (in front?, its layers on the canvas)."""
    alpha = row["alpha"].astype(np.float32) / 255.0
    right = bool(rng.uniform() < 0.5)
    dy = float(rng.uniform(-0.05, 0.05))
    if rng.uniform() < ncfg.front_prob:
        for _ in range(3):
            layers = place_neighbour(row["bbox"], other, float(rng.uniform(*ncfg.front_height)),
                                     -float(rng.uniform(*ncfg.front_overlap)), right, dy)
            if (layers[1] * alpha).sum() <= ncfg.max_cover * max(float(alpha.sum()), 1.0):
                return True, layers
    return False, place_neighbour(row["bbox"], other, float(rng.uniform(*ncfg.back_height)),
                                  float(rng.uniform(*ncfg.back_gap)), right, dy)


def composite_layers(row: Mapping[str, np.ndarray], background: np.ndarray, rng: np.random.Generator,
                     cfg: RenderConfig, occluders: BackgroundSource | None = None,
                     with_alpha: bool = False, neighbour: Mapping[str, np.ndarray] | None = None,
                     ncfg: NeighbourConfig | None = None, nrng: np.random.Generator | None = None,
                     grey_nearer: bool = False) -> FinishedCrop:
    """One training crop from one layers row (``images``, ``alpha``, ``shadow``, ``bbox``) over
    ``background`` (canvas-sized RGB): the shadow multiplied in, the car blended with its coverage
    (the stored alpha is already antialiased: no feathering), haze, then ``finish_crop``. With
    ``with_alpha`` the result also holds the car's coverage cut like the crop. With ``neighbour`` (another
    layers row) that car stands beside this one (``place_neighbour``, drawn from ``nrng`` so that
    ``rng``'s draws stay those of a composite without one). With ``grey_nearer`` a neighbour that stands
    in front has its box painted with the crop fill where the runtime would grey it (``grey_box``)."""
    side = row["images"].shape[0]
    if background.shape != (side, side, 3):
        raise ValueError(f"background {background.shape} does not match the {side} px layers canvas")
    alpha = row["alpha"].astype(np.float32) / 255.0
    shadow = 1.0 - row["shadow"].astype(np.float32) / 255.0
    haze = float(rng.uniform(*cfg.haze)) if cfg.haze[1] > 0 else 0.0
    front = None
    if neighbour is not None:
        in_front, (n_rgb, n_alpha, n_shadow) = draw_neighbour(row, neighbour, nrng if nrng is not None else rng,
                                                              ncfg or NeighbourConfig())
        if in_front:
            front = (n_rgb, n_alpha)
            shadow = np.maximum(shadow, n_shadow)
        else:
            background = composite(n_rgb, n_alpha, background, feather=False, shadow=n_shadow, haze=haze)
    image = composite(row["images"], alpha, background, feather=False, shadow=shadow, haze=haze)
    if front is not None:
        image = composite(front[0], front[1], image, feather=False, haze=haze)
        if grey_nearer:
            image = grey_box(image, np.asarray(row["bbox"], np.float64), front[1], cfg.crop.fill)
    return finish_crop(image, np.asarray(row["bbox"], np.float64), rng, cfg, occluders,
                       alpha=row["alpha"] if with_alpha else None)


def grey_box(image: np.ndarray, target_bbox: np.ndarray, coverage: np.ndarray, fill: int) -> np.ndarray:
    """``image`` with the box of a car's coverage (where it is at least half opaque: the box a detector
    would draw) painted ``fill`` when it stands nearer than the target by the runtime's rule
    (carpose.crop.nearer_boxes: lower by a margin, not covering nearly all of it); else unchanged."""
    box = mask_box(coverage >= 0.5)
    if box is None or not len(nearer_boxes(target_bbox, box[None])):
        return image
    x1, y1, x2, y2 = box.astype(int)
    out = image.copy()
    out[y1:y2, x1:x2] = fill
    return out


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
                 with_alpha: bool = False, pool: tuple[int, ...] | None = None,
                 neighbour: Mapping[str, np.ndarray] | None = None, ncfg: NeighbourConfig | None = None,
                 nrng: np.random.Generator | None = None, grey_nearer: bool = False) -> FinishedCrop:
        """One training crop from a layers row; with ``pool`` (a key, see :meth:`pool`) the background
        and occluder photos come from that pool, else from every photo; with ``neighbour`` another
        layers row's car stands beside it (``composite_layers``, which greys it when nearer with
        ``grey_nearer``)."""
        source = self.source if pool is None else self.pool(pool)
        side = row["images"].shape[0]
        bg = self.background(source, rng, side, cfg.procedural_backgrounds, float(row["bbox"][3]) / side)
        return composite_layers(row, bg, rng, cfg, source, with_alpha, neighbour, ncfg, nrng, grey_nearer)


def composite_rng(seed: int, epoch: int, file_index: int, row: int) -> np.random.Generator:
    """The generator of one row's composite in one epoch (``CropStream``): independent of workers and
    ranks, new every epoch."""
    return np.random.default_rng([seed, epoch, file_index, row, 0xC0])


def neighbour_index(nrng: np.random.Generator, share: float, n: int, own: int) -> int | None:
    """Which of ``n`` rows stands beside row ``own`` (any but itself), drawn from ``nrng`` with
    probability ``share``; None for none."""
    if n < 2 or nrng.uniform() >= share:
        return None
    return (own + 1 + int(nrng.integers(n - 1))) % n


def neighbour_rng(seed: int, epoch: int, file_index: int, row: int) -> np.random.Generator:
    """The generator of one row's neighbour car in one epoch: whether it gets one, which, and where
    (apart from ``composite_rng`` so that the rest of the composite is the same with or without)."""
    return np.random.default_rng([seed, epoch, file_index, row, 0xAE])


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
                  scale: float = 1.5, neighbours: float = 0.0, grey_nearer: bool = False) -> np.ndarray:
    """BGR contact sheet: for each of ``n`` cars its stored layers, then ``per_car`` composites (box and
    azimuth drawn), one car per row; ``neighbours`` of the composites with another car of the file
    beside it (``NeighbourConfig``), greyed when nearer with ``grey_nearer``."""
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
                nrng = neighbour_rng(seed, k, 0, int(i))
                j = neighbour_index(nrng, neighbours, len(ds), int(i))
                other = None if j is None else {c: ds.h5[c][j] for c in ("images", "alpha", "shadow", "bbox")}
                done = comp(row, composite_rng(seed, k, 0, int(i)), cfg, neighbour=other, nrng=nrng,
                            grey_nearer=grey_nearer)
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
    pv.add_argument("--neighbours", type=float, default=0.0, help="share of composites with a second car beside")
    pv.add_argument("--quality", type=int, default=85, help="JPEG quality")
    pv.add_argument("--grey-nearer", action="store_true", help="grey the box of a neighbour in front (carpose-train)")
    args = p.parse_args(argv)
    try:
        sheet = preview_sheet(args.layers, args.backgrounds, n=args.n, per_car=args.per_car, seed=args.seed,
                              neighbours=args.neighbours, grey_nearer=args.grey_nearer)
    except (DatasetError, FileNotFoundError, ValueError) as exc:  # ValidationLeakError is a ValueError
        print(f"composite preview: error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
