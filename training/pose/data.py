"""Stream crops from carpose HDF5 files into training batches, with augmentation.

Why chunk streaming: images are stored gzip-compressed in chunks of 64 rows, so reading one random
row decompresses 64. Each epoch therefore shuffles the *chunks* (across all files), each worker reads
whole chunks and shuffles rows inside a buffer of several chunks. Memory stays at a few chunks per
worker however large the files are, and every row is read exactly once per epoch.

Under ``torchrun`` (``rank``/``world_size``) every rank draws the same chunk permutation (same seed)
and takes every ``world_size``-th chunk of it, so the ranks read disjoint shards that together cover
the epoch; the workers of a rank split that shard further. Shards differ by up to a chunk in rows,
so the training loop runs ``batches_per_epoch`` steps on every rank (the fewest any rank has) and
DDP never waits on a rank that ran out of data; the few rows past that are skipped for the epoch.

Layers files (``carpose-render layers``: cars with coverage and shadow, no background) are composited
onto real photos as they stream (``composite_backgrounds``, training/pose/composite.py): each row
becomes a new crop every epoch, seeded per (seed, epoch, file, row), its photo drawn from a pool of 8
per block of 64 rows (so a shuffle buffer decodes each photo once). Crops and layers files mix in
one stream. The compositor already cuts a jittered detector box, so a composited crop skips the
augmentation's own shift/scale jitter (grey borders a crop file's jitter needs).

Augmentation (train only) mimics what the renderer cannot: camera colour response, focus, sensor
noise, detector box jitter. A horizontal flip is applied with its label mirrored (a -> 360 - a,
``carpose.convention.flip_azimuth``); nothing else changes the label.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from carpose.convention import flip_azimuth
from training.dataset.reader import CarposeDataset, DatasetError

#: The columns a layers chunk is read with: what the compositor needs and the label.
LAYER_COLUMNS = ("images", "alpha", "shadow", "bbox", "azimuth_deg")


@dataclass(frozen=True)
class AugmentConfig:
    flip_prob: float = 0.5
    color_prob: float = 0.8
    brightness: float = 0.35  # +- fraction
    contrast: float = 0.35
    saturation: float = 0.5
    hue_deg: float = 12.0
    gray_prob: float = 0.05
    blur_prob: float = 0.2
    noise_prob: float = 0.3
    noise_sigma: float = 8.0
    jitter_prob: float = 0.7
    jitter_shift: float = 0.06  # of the crop side
    jitter_scale: float = 0.10
    blur_sigma: float = 1.5  # largest Gaussian blur sigma (px)
    erase_prob: float = 0.0  # random erasing: 1-2 rectangles of noise or a flat colour
    erase_max_area: float = 0.2  # of the crop, per rectangle

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(flip_prob=0, color_prob=0, gray_prob=0, blur_prob=0, noise_prob=0, jitter_prob=0)

    @classmethod
    def strong(cls) -> AugmentConfig:
        """Wider photometric ranges, heavier blur/noise/box jitter, random erasing: real cameras differ
        from the renderer in exposure, colour, sharpness and what hides part of a car."""
        return cls(brightness=0.5, contrast=0.5, saturation=0.7, hue_deg=20.0, gray_prob=0.15,
                   blur_prob=0.4, blur_sigma=2.5, noise_prob=0.5, noise_sigma=12.0, jitter_prob=0.9,
                   jitter_shift=0.1, jitter_scale=0.2, erase_prob=0.5)

    @classmethod
    def named(cls, name: str) -> AugmentConfig:
        presets = {"default": cls, "strong": cls.strong, "none": cls.none}
        if name not in presets:
            raise ValueError(f"unknown augmentation {name!r}; choose one of {sorted(presets)}")
        return presets[name]()


def augment(img: np.ndarray, az: float, rng: np.random.Generator, cfg: AugmentConfig,
            fill: int = 114) -> tuple[np.ndarray, float]:
    """One RGB uint8 crop and its azimuth -> augmented crop and (possibly mirrored) azimuth."""
    out = img
    if rng.uniform() < cfg.flip_prob:
        out = out[:, ::-1]
        az = float(flip_azimuth(az))
    if rng.uniform() < cfg.jitter_prob:
        s = out.shape[0]
        scale = 1.0 + rng.uniform(-cfg.jitter_scale, cfg.jitter_scale)
        tx, ty = rng.uniform(-cfg.jitter_shift, cfg.jitter_shift, 2) * s
        m = np.array([[scale, 0, (1 - scale) * s / 2 + tx], [0, scale, (1 - scale) * s / 2 + ty]], np.float32)
        out = cv2.warpAffine(np.ascontiguousarray(out), m, (s, s), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))
    f = out.astype(np.float32)
    if rng.uniform() < cfg.color_prob:
        f *= 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
        mean = f.mean()
        f = (f - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
        gray = f.mean(axis=2, keepdims=True)
        f = gray + (f - gray) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation))
        if cfg.hue_deg > 0:  # rotate chroma around the grey axis: a cheap hue shift
            t = math.radians(rng.uniform(-cfg.hue_deg, cfg.hue_deg))
            c, s_ = math.cos(t), math.sin(t)
            k = (1 - c) / 3.0
            sq = math.sqrt(1 / 3) * s_
            rot = np.array([[c + k, k - sq, k + sq], [k + sq, c + k, k - sq], [k - sq, k + sq, c + k]], np.float32)
            f = f @ rot.T
    if rng.uniform() < cfg.gray_prob:
        f[:] = f.mean(axis=2, keepdims=True)
    if rng.uniform() < cfg.blur_prob:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.4, cfg.blur_sigma))
    if rng.uniform() < cfg.noise_prob:
        f += rng.normal(0.0, rng.uniform(1.0, cfg.noise_sigma), f.shape).astype(np.float32)
    if rng.uniform() < cfg.erase_prob:
        random_erase(f, rng, cfg.erase_max_area)
    return np.clip(f, 0, 255).astype(np.uint8), az


def random_erase(f: np.ndarray, rng: np.random.Generator, max_area: float) -> None:
    """Paint 1-2 random rectangles (2 %..max_area of the crop each, any aspect) with noise or one
    colour, in place: a pole, a pedestrian or another car hiding part of the car; the label stays."""
    s = f.shape[0]
    for _ in range(int(rng.integers(1, 3))):
        area = rng.uniform(0.02, max_area) * s * s
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        h = int(min(s, round(math.sqrt(area * aspect))))
        w = int(min(s, round(math.sqrt(area / aspect))))
        y, x = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
        if rng.uniform() < 0.5:
            f[y:y + h, x:x + w] = rng.uniform(0, 255, 3).astype(np.float32)
        else:
            f[y:y + h, x:x + w] = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)


class CropStream(IterableDataset):
    """Iterates (image float32 CHW 0..255, azimuth_deg float32) over one or more crops files, and
    layers files composited onto the photos under ``composite_backgrounds``; with ``grey_nearer`` a
    neighbour car in front is greyed (carpose.crop: what a ``grey_nearer`` model sees at run time)."""

    def __init__(self, paths: list[str | Path], train: bool, aug: AugmentConfig | None = None,
                 seed: int = 0, buffer_chunks: int = 8, limit: int | None = None, rank: int = 0,
                 world_size: int = 1, composite_backgrounds: str | Path | None = None,
                 neighbours: float = 0.0, grey_nearer: bool = False, neighbour_config=None) -> None:
        super().__init__()
        if not paths:
            raise ValueError("no dataset files given")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.rank, self.world_size = rank, world_size
        self.paths = [Path(p) for p in paths]
        self.chunks: list[tuple[int, int, int]] = []  # (file, start, stop)
        self.size: int | None = None
        self.fill = 114
        self.compositor = None
        if not 0.0 <= neighbours <= 1.0:
            raise ValueError(f"neighbours is a share of the composites, 0..1, not {neighbours}")
        self.neighbours = neighbours
        self.neighbour_config = neighbour_config  # a composite.NeighbourConfig; None: its defaults
        self.grey_nearer = grey_nearer
        if composite_backgrounds is not None:  # imported here: it brings the renderer (pyrender) along
            from training.pose.composite import Compositor, layers_config

            # refuses validation frames, and fails here rather than in a worker on a bad folder
            self.compositor = Compositor(composite_backgrounds)
        self.layer_configs: dict = {}  # file index -> RenderConfig of each layers file
        for fi, p in enumerate(self.paths):
            with CarposeDataset(p) as ds:
                if ds.kind not in ("crops", "layers"):
                    raise DatasetError(f"{p} holds {ds.kind}; the pose CNN trains on crops or layers files")
                if ds.kind == "layers":
                    if self.compositor is None:
                        raise DatasetError(f"{p} holds layers (cars without backgrounds): give the photos to "
                                           "composite them onto (carpose-train --composite-backgrounds DIR)")
                    self.layer_configs[fi] = layers_config(ds)
                shape = ds.image_shape
                if self.size is None:
                    self.size = shape[0]
                elif shape[0] != self.size:
                    raise DatasetError(f"{p} has {shape[0]} px crops, {self.paths[0]} has {self.size} px")
                crop = ds.attrs["render_config"].get("crop", {})
                self.fill = int(crop.get("fill", 114))
                if "pseudo_pose" in ds.attrs["render_config"] and \
                        (crop.get("occluders", "none") == "grey_nearer") != grey_nearer:
                    raise DatasetError(f"{p}: real crops cut with occluders={crop.get('occluders', 'none')!r}, but "
                                       f"this run {'greys' if grey_nearer else 'does not grey'} nearer cars: "
                                       "cut them as the run does (carpose-pseudo-pose --grey-nearer)")
                chunk = ds.h5["images"].chunks[0] if ds.h5["images"].chunks else 64
                n = len(ds) if limit is None else min(len(ds), limit)
                self.chunks += [(fi, s, min(s + chunk, n)) for s in range(0, n, chunk)]
        self.train = train
        self.aug = aug if aug is not None else (AugmentConfig() if train else AugmentConfig.none())
        self.composite_aug = replace(self.aug, jitter_prob=0.0)  # the compositor jittered the box already
        self.seed = seed
        self.buffer_chunks = buffer_chunks
        self.epoch = 0

    def __len__(self) -> int:
        return sum(b - a for _, a, b in self.chunks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int | None = None, worker: int = 0, workers: int = 1) -> np.ndarray:
        """Chunk indices that ``rank`` (default: this stream's) and its ``worker`` read this epoch, in order."""
        rank = self.rank if rank is None else rank
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.chunks)) if self.train \
            else np.arange(len(self.chunks))
        return order[rank::self.world_size][worker::workers]

    def batches_per_epoch(self, batch_size: int, workers: int) -> int:
        """Full batches the rank with the fewest yields this epoch through ``make_loader(self, batch_size,
        workers)`` (each worker drops its own last partial batch): the step count every rank runs."""
        nw = max(1, workers)
        return min(sum(sum(self.chunks[c][2] - self.chunks[c][1] for c in self.shard(r, w, nw)) // batch_size
                       for w in range(nw)) for r in range(self.world_size))

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        # augmentation stream per (rank, worker); rank 0 keeps the single-process seeds
        rng = np.random.default_rng([self.seed, self.epoch, self.rank * nw + wid])
        mine = self.shard(self.rank, wid, nw)
        files: dict[int, h5py.File] = {}
        try:
            buf: list[tuple[int, int, dict[str, np.ndarray]]] = []  # (file, first row, columns) per chunk
            for k, ci in enumerate(mine):
                fi, a, b = self.chunks[ci]
                if fi not in files:
                    files[fi] = h5py.File(self.paths[fi], "r")
                columns = LAYER_COLUMNS if fi in self.layer_configs else ("images", "azimuth_deg")
                buf.append((fi, a, {c: files[fi][c][a:b] for c in columns}))
                if len(buf) >= self.buffer_chunks or k == len(mine) - 1:
                    rows = [(c, i) for c, (_, _, cols) in enumerate(buf) for i in range(len(cols["azimuth_deg"]))]
                    order = rng.permutation(len(rows)) if self.train else np.arange(len(rows))
                    for j in order:
                        c, i = rows[j]
                        fi, a, cols = buf[c]
                        img, az = self._row(fi, a + i, {name: col[i] for name, col in cols.items()}, rng,
                                            chunk=(a, cols))
                        yield (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float(),
                               torch.tensor(az, dtype=torch.float32))
                    buf = []
        finally:
            for f in files.values():
                f.close()

    def _row(self, fi: int, row: int, cols: dict[str, np.ndarray], rng: np.random.Generator,
             chunk: tuple[int, dict[str, np.ndarray]] | None = None) -> tuple[np.ndarray, float]:
        """One crop and its label: a crops row as stored, a layers row composited (own generator); both
        augmented when training. With ``neighbours`` a share of the composites get another car of the
        same ``chunk`` (first row, columns) beside them: the chunk, not the shuffle buffer, so the
        composite does not depend on the number of workers."""
        az = float(cols["azimuth_deg"])
        aug = self.aug
        if fi in self.layer_configs:
            from training.pose.composite import POOL_ROWS, composite_rng, neighbour_index, neighbour_rng

            crop_rng = composite_rng(self.seed, self.epoch, fi, row)
            pool = (self.seed, self.epoch, fi, row // POOL_ROWS)  # photos shared by a block of rows
            other = nrng = None
            if self.neighbours > 0 and chunk is not None:
                nrng = neighbour_rng(self.seed, self.epoch, fi, row)
                first, ccols = chunk
                j = neighbour_index(nrng, self.neighbours, len(ccols["azimuth_deg"]), row - first)
                other = None if j is None else {name: col[j] for name, col in ccols.items()}
            img = self.compositor(cols, crop_rng, self.layer_configs[fi], pool=pool, neighbour=other,
                                  ncfg=self.neighbour_config, nrng=nrng, grey_nearer=self.grey_nearer).image
            aug = self.composite_aug
        else:
            img = cols["images"]
        if self.train:
            img, az = augment(img, az, rng, aug, self.fill)
        return img, az


def make_loader(stream: CropStream, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(stream, batch_size=batch_size, num_workers=workers, persistent_workers=False,
                      drop_last=stream.train, pin_memory=False)


def data_fingerprint(paths: list[str | Path]) -> str:
    """Short hash identifying the training data: each file's identifying attributes (seed, count,
    render settings, model list, split, creation time). Reading every image would take minutes."""
    h = hashlib.sha256()
    for p in paths:
        with CarposeDataset(p) as ds:
            a = ds.attrs
            h.update(json.dumps({k: a[k] for k in ("seed", "count", "render_config", "models", "split", "created")},
                                sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
