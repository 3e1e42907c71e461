"""Interference: what real images do to cars that clean renders do not.

Occluders (poles, other objects, patches of background), the camera (exposure, white balance,
washed-out colour: road cameras give flat, low-saturation images), blur (defocus, motion), sensor
noise (read noise plus shot noise that grows with brightness), colour/brightness/gamma shifts and
JPEG artefacts. Every function takes an explicit
``numpy.random.Generator``, returns a new uint8 image (never modifies its input) and is
deterministic for a given generator state.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.render.backgrounds import BackgroundSource, procedural_background


@dataclass(frozen=True)
class InterferenceConfig:
    enabled: bool = True
    occluder_prob: float = 0.35
    max_occluded_fraction: float = 0.35
    blur_prob: float = 0.3
    noise_prob: float = 0.3
    noise_sigma_max: float = 12.0
    color_jitter_prob: float = 0.8
    jpeg_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (25, 90)
    exposure_prob: float = 0.6
    exposure_ev: tuple[float, float] = (-0.8, 0.5)  # stops, applied in linear light
    white_balance_prob: float = 0.5
    white_balance_sigma: float = 0.07  # sigma of the log red and blue gains (green fixed)
    saturation_prob: float = 0.5
    saturation: tuple[float, float] = (0.55, 1.05)  # nuScenes frames are strongly desaturated
    shot_noise_max: float = 0.6  # shot-noise variance per grey level (sigma^2 = read^2 + k * value)

    @classmethod
    def none(cls) -> InterferenceConfig:
        return cls(enabled=False, occluder_prob=0.0, blur_prob=0.0, noise_prob=0.0, color_jitter_prob=0.0,
                   jpeg_prob=0.0, exposure_prob=0.0, white_balance_prob=0.0, saturation_prob=0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "jpeg_quality", tuple(self.jpeg_quality))
        object.__setattr__(self, "exposure_ev", tuple(self.exposure_ev))
        object.__setattr__(self, "saturation", tuple(self.saturation))


def _occluder_mask(rng: np.random.Generator, shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    """One occluder shape overlapping ``box``: a pole, a rectangle (another object), or a blob."""
    h, w = shape
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    mask = np.zeros((h, w), np.uint8)
    kind = int(rng.integers(3))
    if kind == 0:  # vertical pole / post / tree trunk
        cx = rng.uniform(x1, x2)
        half = rng.uniform(0.03, 0.12) * bw
        cv2.rectangle(mask, (int(cx - half), 0), (int(cx + half), h), 1, -1)
    elif kind == 1:  # object in front, entering from the bottom or a side
        ow, oh = rng.uniform(0.2, 0.6) * bw, rng.uniform(0.2, 0.6) * bh
        side = int(rng.integers(3))
        ox = {0: rng.uniform(x1 - ow / 2, x2 - ow / 2), 1: x1 - ow * rng.uniform(0.3, 0.8),
              2: x2 - ow * rng.uniform(0.2, 0.7)}[side]
        oy = y2 - oh * rng.uniform(0.5, 1.0) if side == 0 else rng.uniform(y1, y2 - oh / 2)
        cv2.rectangle(mask, (int(ox), int(oy)), (int(ox + ow), int(oy + oh)), 1, -1)
    else:  # irregular blob (bush, person, sign)
        centre = np.array([rng.uniform(x1, x2), rng.uniform(y1, y2)])
        r = rng.uniform(0.1, 0.3) * min(bw, bh) + 1
        ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 10))))
        rad = r * rng.uniform(0.6, 1.4, len(ang))
        pts = (centre + np.c_[np.cos(ang) * rad, np.sin(ang) * rad]).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _box_mask(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    h, w = shape
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = np.round(box).astype(int)
    m[max(y1, 0):min(y2, h), max(x1, 0):min(x2, w)] = True
    return m


def add_occluders(img: np.ndarray, rng: np.random.Generator, box_xyxy: np.ndarray, max_fraction: float,
                  source: BackgroundSource | None = None) -> tuple[np.ndarray, float]:
    """Paint 1-3 occluders over the object box; returns (image, occluded fraction of the box).

    An occluder that would push the covered fraction above ``max_fraction`` is dropped, so the
    bound holds by construction.
    """
    h, w = img.shape[:2]
    box = np.asarray(box_xyxy, dtype=np.float64)
    inside = _box_mask((h, w), box)
    box_px = max(int(inside.sum()), 1)
    covered = np.zeros((h, w), bool)
    out = img.copy()
    for _ in range(int(rng.integers(1, 4))):
        m = _occluder_mask(rng, (h, w), box)
        if ((covered | m) & inside).sum() / box_px > max_fraction:
            continue
        if rng.uniform() < 0.5:
            fill = (source or BackgroundSource.procedural()).sample(rng, h, w)
        else:
            fill = procedural_background(rng, h, w) // 2 + np.uint8(rng.integers(0, 128))
        out[m] = fill[m]
        covered |= m
    return out, float((covered & inside).sum() / box_px)


def _blur(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if rng.uniform() < 0.5:
        sigma = rng.uniform(0.5, 2.0)
        return cv2.GaussianBlur(img, (0, 0), sigma), f"gauss{sigma:.1f}"
    k = int(rng.integers(3, 10))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(img, -1, kernel), f"motion{k}"


def exposure(img: np.ndarray, ev: float) -> np.ndarray:
    """Scale light by 2**ev in linear space (gamma 2.2), as a longer or shorter exposure does;
    highlights clip like a sensor's."""
    lin = (img.astype(np.float32) / 255.0) ** 2.2 * (2.0 ** ev)
    return (np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def white_balance(img: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Per-channel gains in linear space (a camera's white balance off by some degrees kelvin)."""
    lin = (img.astype(np.float32) / 255.0) ** 2.2 * np.asarray(gains, np.float32)
    return (np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def saturate(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the luma image: factor < 1 washes colours out, > 1 strengthens them."""
    f = img.astype(np.float32)
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(luma[..., None] + factor * (f - luma[..., None]) + 0.5, 0, 255).astype(np.uint8)


def sensor_noise(img: np.ndarray, rng: np.random.Generator, read_sigma: float, shot: float) -> np.ndarray:
    """Gaussian approximation of read noise plus shot noise (variance proportional to the value)."""
    f = img.astype(np.float32)
    sigma = np.sqrt(read_sigma ** 2 + shot * f)
    return np.clip(f + rng.standard_normal(f.shape, dtype=np.float32) * sigma + 0.5, 0, 255).astype(np.uint8)


def _color_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.4)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out = (out - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + rng.uniform(-35, 35)  # contrast, brightness
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(0.7, 1.5)  # gamma
    return np.clip(out, 0, 255).astype(np.uint8)


def apply_photometric(img: np.ndarray, rng: np.random.Generator, cfg: InterferenceConfig
                      ) -> np.ndarray:
    """Blur, colour jitter, noise and JPEG, each with its probability (see apply_interference)."""
    return _photometric(img, rng, cfg)[0]


def _photometric(img: np.ndarray, rng: np.random.Generator, cfg: InterferenceConfig) -> tuple[np.ndarray, dict]:
    info: dict = {}
    out = img
    if not cfg.enabled:
        return img.copy(), info
    if rng.uniform() < cfg.exposure_prob:
        ev = float(rng.uniform(*cfg.exposure_ev))
        out = exposure(out, ev)
        info["exposure_ev"] = round(ev, 2)
    if rng.uniform() < cfg.white_balance_prob:
        r, b = np.exp(rng.normal(0.0, cfg.white_balance_sigma, 2))
        out = white_balance(out, (float(r), 1.0, float(b)))
        info["white_balance"] = (round(float(r), 3), round(float(b), 3))
    if rng.uniform() < cfg.saturation_prob:
        f = float(rng.uniform(*cfg.saturation))
        out = saturate(out, f)
        info["saturation"] = round(f, 2)
    if rng.uniform() < cfg.blur_prob:
        out, info["blur"] = _blur(out, rng)
    if rng.uniform() < cfg.color_jitter_prob:
        out = _color_jitter(out, rng)
        info["color_jitter"] = True
    if rng.uniform() < cfg.noise_prob:
        sigma = rng.uniform(1.0, cfg.noise_sigma_max)
        shot = float(rng.uniform(0.0, cfg.shot_noise_max))
        out = sensor_noise(out, rng, float(sigma), shot)
        info["noise_sigma"] = round(float(sigma), 2)
        info["shot_noise"] = round(shot, 3)
    if rng.uniform() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, enc = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            info["jpeg_quality"] = q
    return (out.copy() if out is img else out), info


def apply_interference(img: np.ndarray, rng: np.random.Generator, cfg: InterferenceConfig,
                       box_xyxy: np.ndarray | None = None, source: BackgroundSource | None = None
                       ) -> tuple[np.ndarray, dict]:
    """Occluders (when a box is given) then photometric effects; returns the image and a record."""
    info: dict = {}
    out = img.copy()
    if cfg.enabled and box_xyxy is not None and rng.uniform() < cfg.occluder_prob:
        out, info["occluded_fraction"] = add_occluders(out, rng, box_xyxy, cfg.max_occluded_fraction, source)
    out, more = _photometric(out, rng, cfg)
    info.update(more)
    return out, info
