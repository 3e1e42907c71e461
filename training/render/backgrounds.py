"""Backgrounds for compositing rendered cars: random crops of real photos, or procedural clutter.

Why both: real photos (``--backgrounds DIR``) give the network real textures to ignore; the
procedural source (gradients, smooth noise, shapes, stripes, road-like layouts) makes the project
work with no data at all and adds variety that a few dozen photos cannot.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from carpose.eval.real_sources import refuse_validation_frames

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: Rows of a road camera's frame (fractions of its height) where the road under a car 4-30 m away is:
#: below the horizon (~0.45-0.5) and above the ego hood some frames show at the bottom.
GROUND_ROWS = (0.55, 0.85)


def read_kitti_boxes(path: str | Path) -> np.ndarray:
    """Every 2-D box (x1, y1, x2, y2; KITTI fields 5-8) of a KITTI label file, whatever its class
    (DontCare and pedestrians included: a background must avoid them all). (N, 4) float."""
    rows = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 8:
            rows.append([float(v) for v in f[4:8]])
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


class BackgroundSource:
    """Draws background images (uint8 HxWx3 RGB) from photos or procedurally; deterministic per rng.

    With ``boxes`` (photo -> (N, 4) boxes to avoid, e.g. the labelled cars of real road frames)
    every crop of that photo lies clear of every box: the real frames give real road, kerb, tree
    and building textures with the cars *removed*. Why avoid rather than inpaint: an inpainted car
    leaves a smeared car-shaped blob, exactly the kind of cue the pose network must not learn from,
    and there is plenty of car-free road in a 1600x900 frame. ``procedural_fraction`` of the draws
    use procedural backgrounds instead (variety the 50 frames lack).
    """

    def __init__(self, photos: list[Path] | None = None, cache_size: int = 16,
                 boxes: dict[Path, np.ndarray] | None = None, procedural_fraction: float = 0.0,
                 bottom_margin: float = 0.0) -> None:
        self.photos = photos or []
        self.cache_size = cache_size
        self.boxes = boxes
        self.procedural_fraction = procedural_fraction
        self.bottom_margin = bottom_margin  # fraction of rows at the bottom to avoid (ego hood)
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.unreadable: set[Path] = set()
        self.misses = 0  # draws that found no free crop in a photo (then another photo is tried)

    @classmethod
    def from_folder(cls, folder: str | Path, labels: str | Path | Sequence[str | Path] | None = None,
                    procedural_fraction: float = 0.0, bottom_margin: float = 0.0) -> BackgroundSource:
        """Photos under ``folder``; with ``labels`` (a KITTI label_2 folder, or several) only the photos
        that have a label file in one of them, cropped away from every box any of them lists (see the
        class doc). Several folders: the labels of two teachers, or a teacher's and the boxes people
        judged to be cars, so that a real car one list missed is still kept out of the renders, where it
        would be an unlabelled car the detector learns to call background."""
        root = Path(folder)
        folders = [] if labels is None else [Path(labels)] if isinstance(labels, (str, Path)) else \
            [Path(f) for f in labels]
        refuse_validation_frames(root, "render backgrounds")
        for lab in folders:
            refuse_validation_frames(lab, "render backgrounds")
        if not root.is_dir():
            raise FileNotFoundError(f"background folder {root} does not exist")
        photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not photos:
            raise ValueError(f"background folder {root} has no {'/'.join(PHOTO_SUFFIXES)} images")
        boxes = None
        if folders:
            for lab in folders:
                if not lab.is_dir():
                    raise FileNotFoundError(f"background label folder {lab} does not exist")
            boxes = {}
            for p in photos:
                files = [lab / f"{p.stem}.txt" for lab in folders if (lab / f"{p.stem}.txt").is_file()]
                if files:
                    boxes[p] = np.vstack([read_kitti_boxes(f) for f in files])
            if not boxes:
                where = " or ".join(str(f) for f in folders)
                raise ValueError(f"no photo in {root} has a label file in {where}: cars could not be avoided")
            photos = sorted(boxes)
        return cls(photos, boxes=boxes, procedural_fraction=procedural_fraction, bottom_margin=bottom_margin)

    @classmethod
    def procedural(cls) -> BackgroundSource:
        return cls(None)

    def subset(self, indices: list[int] | np.ndarray) -> BackgroundSource:
        """The same source drawing only from the photos at ``indices``, sharing this one's cache of
        decoded photos (a few photos drawn many times are decoded once)."""
        sub = BackgroundSource([self.photos[int(i)] for i in indices], cache_size=self.cache_size, boxes=self.boxes,
                               procedural_fraction=self.procedural_fraction, bottom_margin=self.bottom_margin)
        sub._cache, sub.unreadable = self._cache, self.unreadable
        return sub

    def describe(self) -> str:
        if not self.photos:
            return "procedural backgrounds"
        text = f"{len(self.photos)} photos from {self.photos[0].parent}"
        if self.boxes is not None:
            text += f", crops avoiding {sum(len(b) for b in self.boxes.values())} labelled boxes"
        if self.procedural_fraction:
            text += f", {self.procedural_fraction:.0%} procedural"
        return text

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
        return self.sample_with_region(rng, height, width)[0]

    def sample_frame(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A whole road photo (zoomed in up to 15 %, mirrored half the time) for a road scene, whose
        ground plane and horizon then match the rendered street's; its labelled cars are inpainted
        away (for a detector an inpainted smear is just more background, unlike for the pose CNN).
        Procedural road backgrounds for ``procedural_fraction`` of the draws or without photos."""
        if self.photos and not (self.procedural_fraction and rng.uniform() < self.procedural_fraction):
            for _ in range(8):
                path = self.photos[int(rng.integers(len(self.photos)))]
                img = self._photo(path)
                if img is not None:
                    return frame_without_cars(img, self.boxes.get(path) if self.boxes else None, rng, height, width)
        return procedural_background(rng, height, width)

    def sample_on_ground(self, rng: np.random.Generator, side: int, ground: float,
                         rows: tuple[float, float] = GROUND_ROWS) -> np.ndarray:
        """A ``side`` square photo patch (random scale and column, mirrored half the time) placed so that
        its row at ``ground`` (a fraction of its height: where a car's wheels are) falls on a random row
        in ``rows`` of the photo, the road in a road camera's frame: the car then stands on the road,
        not on a wall or in the sky. Procedural without photos."""
        if self.photos:
            for _ in range(8):
                img = self._photo(self.photos[int(rng.integers(len(self.photos)))])
                if img is not None:
                    return ground_crop(img, rng, side, ground, rows)
            if len(self.unreadable) == len(self.photos):
                raise ValueError(f"none of the {len(self.photos)} background images can be read")
        return procedural_background(rng, side, side)

    def sample_with_region(self, rng: np.random.Generator, height: int, width: int
                           ) -> tuple[np.ndarray, tuple[Path, np.ndarray] | None]:
        """A background and where it came from: (photo, crop box x1 y1 x2 y2) or None (procedural)."""
        if self.photos and not (self.procedural_fraction and rng.uniform() < self.procedural_fraction):
            for _ in range(8):
                path = self.photos[int(rng.integers(len(self.photos)))]
                img = self._photo(path)
                if img is None:
                    continue
                if self.boxes is None:
                    return photo_crop(img, rng, height, width), None
                avoid = self.boxes[path]
                if self.bottom_margin > 0:
                    ih, iw = img.shape[:2]
                    avoid = np.vstack([avoid, [0, ih * (1 - self.bottom_margin), iw, ih]])
                region = free_region(img.shape[:2], avoid, rng, width / height)
                if region is None:
                    self.misses += 1
                    continue
                return crop_region_resized(img, region, rng, height, width), (path, region)
            if len(self.unreadable) == len(self.photos):
                raise ValueError(f"none of the {len(self.photos)} background images can be read")
        return procedural_background(rng, height, width), None


def frame_without_cars(img: np.ndarray, boxes: np.ndarray | None, rng: np.random.Generator, height: int,
                       width: int) -> np.ndarray:
    """``img`` resized to ``width`` x ``height`` (a random crop of that aspect, 87-100 % of the
    frame, so the horizon stays near where the camera puts it), the ``boxes`` inpainted, mirrored
    with probability 0.5."""
    ih, iw = img.shape[:2]
    zoom = float(rng.uniform(0.87, 1.0))
    ch = min(ih, int(round(min(iw * height / width, ih) * zoom)))
    cw = min(iw, int(round(ch * width / height)))
    x0, y0 = int(rng.integers(0, iw - cw + 1)), int(rng.integers(0, ih - ch + 1))
    out = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_AREA)
    if boxes is not None and len(boxes):
        sx, sy = width / cw, height / ch
        mask = np.zeros((height, width), np.uint8)
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64):
            mx, my = 0.1 * (x2 - x1) + 2, 0.1 * (y2 - y1) + 2
            cv2.rectangle(mask, (int((x1 - x0 - mx) * sx), int((y1 - y0 - my) * sy)),
                          (int((x2 - x0 + mx) * sx), int((y2 - y0 + my) * sy)), 255, -1)
        if mask.any():
            out = cv2.inpaint(out, mask, 5, cv2.INPAINT_TELEA)
    return np.ascontiguousarray(out[:, ::-1]) if rng.uniform() < 0.5 else out


def boxes_overlap(a: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> bool:
    """Whether box ``a`` (x1 y1 x2 y2) overlaps any of ``boxes`` grown by ``margin`` pixels."""
    if len(boxes) == 0:
        return False
    b = np.asarray(boxes, dtype=np.float64)
    return bool(np.any((a[0] < b[:, 2] + margin) & (a[2] > b[:, 0] - margin)
                       & (a[1] < b[:, 3] + margin) & (a[3] > b[:, 1] - margin)))


def free_region(shape: tuple[int, int], avoid: np.ndarray, rng: np.random.Generator, aspect: float,
                tries: int = 40, min_side: int = 48, margin: float = 4.0) -> np.ndarray | None:
    """A random crop box of ``aspect`` (w/h) inside an image of ``shape`` that overlaps none of
    ``avoid`` (grown by ``margin``); sides log-uniform from ``min_side`` to 60 % of the image height,
    shrinking as tries fail. None if nothing fits."""
    ih, iw = shape
    hi = max(min_side + 1.0, 0.6 * min(ih, iw / aspect))
    for t in range(tries):
        top = hi * (1.0 - 0.8 * t / tries)
        h = float(np.exp(rng.uniform(np.log(min_side), np.log(max(top, min_side + 1.0)))))
        w = h * aspect
        if w > iw or h > ih:
            continue
        x0, y0 = rng.uniform(0, iw - w), rng.uniform(0, ih - h)
        box = np.array([x0, y0, x0 + w, y0 + h])
        if not boxes_overlap(box, avoid, margin):
            return box
    return None


def crop_region_resized(img: np.ndarray, region: np.ndarray, rng: np.random.Generator, height: int, width: int
                        ) -> np.ndarray:
    """``region`` of ``img`` (pixels inside it only), randomly flipped, resized to height x width."""
    x1, y1, x2, y2 = region
    x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
    x2, y2 = max(int(np.floor(x2)), x1 + 1), max(int(np.floor(y2)), y1 + 1)
    crop = img[y1:y2, x1:x2]
    return mirror_resize(crop, rng, height, width)


def mirror_resize(crop: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``crop`` mirrored with probability 0.5 and resized to height x width (area when shrinking)."""
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (width, height), interpolation=interp))


def ground_crop(img: np.ndarray, rng: np.random.Generator, side: int, ground: float,
                rows: tuple[float, float] = GROUND_ROWS) -> np.ndarray:
    """A square crop of ``img`` (``side`` px to its shorter side, at least 25 % of it) whose row at
    ``ground`` of its height lies on a random photo row in ``rows`` (as near as the photo's edges
    allow), mirrored half the time, resized to ``side``. Never enlarged where the photo allows it: an
    enlarged patch is blurrier than the crisp car in front of it, a cue real crops do not have."""
    ih, iw = img.shape[:2]
    short = min(ih, iw)
    s = max(2, min(int(rng.uniform(min(short, max(0.25 * short, side)), short)), short))
    y0 = int(np.clip(round(rng.uniform(*rows) * ih - ground * s), 0, ih - s))
    x0 = int(rng.integers(0, iw - s + 1))
    crop = img[y0:y0 + s, x0:x0 + s]
    return mirror_resize(crop, rng, side, side)


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
    return mirror_resize(crop, rng, height, width)


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


#: Shadowed road is lit by the blue sky only: red loses more than blue.
SHADOW_TINT = np.array([1.0, 0.97, 0.88], np.float32)


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray, feather: bool = True,
              shadow: np.ndarray | None = None, haze: float = 0.0) -> np.ndarray:
    """Alpha-blend a rendered car over a background. ``alpha`` is HxW bool/uint8/float in [0, 1];
    ``feather`` softens the mask edge by about one pixel so the car has no aliased halo.

    ``shadow`` (HxW in [0, 1], lighting.ground_shadow) darkens the background first, bluish like
    sky-lit shade. ``haze`` in [0, 1] pulls the car towards the background's mean colour (air
    light and the camera's colour cast, which the photo has and a clean render lacks)."""
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
    bg = background.astype(np.float32)
    fg = foreground.astype(np.float32)
    if haze > 0:
        fg = fg * (1.0 - haze) + haze * bg.reshape(-1, 3).mean(axis=0)
    if shadow is not None:
        if shadow.shape != background.shape[:2]:
            raise ValueError(f"shadow {shadow.shape} does not match image {background.shape[:2]}")
        bg = bg * (1.0 - shadow[..., None].astype(np.float32) * SHADOW_TINT)
    out = fg * a + bg * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
