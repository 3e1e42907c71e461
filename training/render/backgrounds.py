"""Backgrounds for compositing rendered cars: random crops of real photos, or procedural clutter.

Why both: real photos (``--backgrounds DIR``) give the network real textures to ignore; the
procedural source (gradients, smooth noise, shapes, stripes, road-like layouts) makes the project
work with no data at all and adds variety that a few dozen photos cannot.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class BackgroundSource:
    """Draws background images (uint8 HxWx3 RGB) from photos or procedurally; deterministic per rng."""

    def __init__(self, photos: list[Path] | None = None, cache_size: int = 16) -> None:
        self.photos = photos or []
        self.cache_size = cache_size
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.unreadable: set[Path] = set()

    @classmethod
    def from_folder(cls, folder: str | Path) -> BackgroundSource:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"background folder {root} does not exist")
        photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not photos:
            raise ValueError(f"background folder {root} has no {'/'.join(PHOTO_SUFFIXES)} images")
        return cls(photos)

    @classmethod
    def procedural(cls) -> BackgroundSource:
        return cls(None)

    def describe(self) -> str:
        if not self.photos:
            return "procedural backgrounds"
        return f"{len(self.photos)} photos from {self.photos[0].parent}"

    def _photo(self, path: Path) -> np.ndarray | None:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            if path not in self.unreadable:
                log.warning("skipping unreadable background image %s", path)
                self.unreadable.add(path)
            return None
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        self._cache[path] = img
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        if self.photos:
            for _ in range(8):
                img = self._photo(self.photos[int(rng.integers(len(self.photos)))])
                if img is not None:
                    return photo_crop(img, rng, height, width)
            if len(self.unreadable) == len(self.photos):
                raise ValueError(f"none of the {len(self.photos)} background images can be read")
        return procedural_background(rng, height, width)


def photo_crop(img: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random crop (25-100 % of the shorter side, aspect of the request), random flip, resized."""
    ih, iw = img.shape[:2]
    aspect = width / height
    side = rng.uniform(0.25, 1.0) * min(ih, iw / aspect)
    ch, cw = max(2, int(side)), max(2, int(side * aspect))
    ch, cw = min(ch, ih), min(cw, iw)
    y0 = int(rng.integers(0, ih - ch + 1))
    x0 = int(rng.integers(0, iw - cw + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if ch > height else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (width, height), interpolation=interp))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 200), rng.integers(30, 256)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def smooth_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1]: low-frequency random grids upsampled and summed."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 1)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    return np.clip((out - out.min()) / max(float(out.max() - out.min()), 1e-6), 0, 1)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    if rng.uniform() < 0.5:
        ang = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (x * np.cos(ang) + y * np.sin(ang))
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        t = np.hypot(y - cy, x - cx)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return (a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8)


def _noise_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    n = smooth_noise(rng, h, w, octaves=int(rng.integers(2, 6)))[..., None]
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    return (a * (1 - n) + b * n).astype(np.uint8)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(4, max(6.0, min(h, w) / 3))
    ang = rng.uniform(0, np.pi)
    u = x * np.cos(ang) + y * np.sin(ang)
    if rng.uniform() < 0.3:  # checker
        v = -x * np.sin(ang) + y * np.cos(ang)
        m = ((np.floor(u / period) + np.floor(v / period)) % 2)[..., None]
    else:
        m = (np.sin(u / period * 2 * np.pi) > rng.uniform(-0.5, 0.5))[..., None].astype(np.float32)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    return (a * (1 - m) + b * m).astype(np.uint8)


def _road(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sky-ish top, buildings-ish band, asphalt-grey bottom with lane-ish lines."""
    img = np.empty((h, w, 3), np.uint8)
    horizon = int(h * rng.uniform(0.25, 0.6))
    sky = np.array([rng.integers(120, 230), rng.integers(150, 235), rng.integers(170, 255)], np.uint8)
    img[:horizon] = sky
    x = 0
    while x < w:  # skyline of boxes
        bw = int(rng.integers(max(2, w // 12), max(3, w // 3)))
        top = int(rng.uniform(0, horizon))
        img[top:horizon, x:x + bw] = _colour(rng)
        x += bw
    g = int(rng.integers(50, 140))
    ground = (smooth_noise(rng, h - horizon, w, 3)[..., None] * 30 - 15 + g).clip(0, 255)
    img[horizon:] = ground.astype(np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        x0 = int(rng.uniform(0, w))
        x1 = int(rng.uniform(-w, 2 * w))
        cv2.line(img, (x0, horizon), (x1, h), (230, 230, 220), int(rng.integers(1, max(2, w // 40))))
    return img


def _shapes(img: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    h, w = img.shape[:2]
    for _ in range(count):
        kind = int(rng.integers(4))
        c = _colour(rng)
        p = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        size = int(rng.uniform(2, max(3, min(h, w) / 2)))
        if kind == 0:
            cv2.rectangle(img, p, (p[0] + size, p[1] + int(size * rng.uniform(0.3, 3))), c, -1)
        elif kind == 1:
            cv2.ellipse(img, p, (size, max(1, int(size * rng.uniform(0.2, 1)))), float(rng.uniform(0, 180)),
                        0, 360, c, -1)
        elif kind == 2:
            q = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            cv2.line(img, p, q, c, int(rng.integers(1, max(2, size // 4))))
        else:
            pts = (rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * [w, h]).astype(np.int32)
            cv2.fillPoly(img, [pts], c)
    return img


def procedural_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random mix of gradient / noise / stripes / road layout, with shapes on top and blur."""
    base = [_gradient, _noise_texture, _stripes, _road][int(rng.choice(4, p=[0.2, 0.3, 0.15, 0.35]))]
    img = np.ascontiguousarray(base(rng, height, width))
    img = _shapes(img, rng, int(rng.integers(0, 12)))
    if rng.uniform() < 0.5:
        k = 2 * int(rng.integers(1, 3)) + 1
        img = cv2.GaussianBlur(img, (k, k), 0)
    return img


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, feather: bool = True
              ) -> np.ndarray:
    """Alpha-blend a rendered car over a background. ``alpha`` is HxW bool/uint8/float in [0, 1];
    ``feather`` softens the mask edge by about one pixel so the car has no aliased halo."""
    if foreground.shape != background.shape or foreground.ndim != 3:
        raise ValueError(f"foreground {foreground.shape} and background {background.shape} must both be HxWx3")
    if alpha.shape != foreground.shape[:2]:
        raise ValueError(f"alpha {alpha.shape} does not match image {foreground.shape[:2]}")
    a = alpha.astype(np.float32)
    if alpha.dtype == np.uint8 and a.max() > 1:
        a /= 255.0
    if feather:  # soften only inside the mask: outside it the render is black, which would halo
        a = np.minimum(a, cv2.GaussianBlur(a, (3, 3), 0.6))
    a = a[..., None]
    out = foreground.astype(np.float32) * a + background.astype(np.float32) * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
