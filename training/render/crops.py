"""One training crop: render a car, put it on a background, interfere, crop like a detector box.

The crop is cut with :func:`carpose.crop.crop_box`, the function the runtime uses on detector
boxes, from a jittered box, so the network sees the same framing it will see online.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from carpose.crop import box_in_crop, crop_box, crop_region
from training.cars.model import CarModel
from training.render.backgrounds import BackgroundSource, composite
from training.render.interference import add_occluders, apply_photometric
from training.render.lighting import ground_shadow
from training.render.renderer import CarRenderer, mask_box
from training.render.sampling import RenderConfig, jitter_box, sample_car_look, sample_lighting, sample_view


@dataclass
class CropSample:
    """A crop and its labels; field names match the HDF5 datasets (see training.dataset.schema)."""

    image: np.ndarray  # size x size x 3 uint8 RGB
    azimuth_deg: float
    elevation_deg: float
    distance_m: float
    roll_deg: float
    model_id: int
    bbox: np.ndarray  # tight box of the visible car in crop pixels (x1, y1, x2, y2)
    truncation: float  # fraction of the car's width/height cut off by the simulated image edge
    occlusion: float  # fraction of the car box covered by occluders
    paint_rgb: np.ndarray  # uint8 (3,)


def truncate(image: np.ndarray, box: np.ndarray, rng: np.random.Generator, max_frac: float
             ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Pretend the image ends inside the car: cut the image at a random line through the box.

    Returns the smaller image, the visible part of the box in the new image's coordinates, the cut
    fraction, and the (x, y) offset of the new image in the old one.
    """
    x1, y1, x2, y2 = box
    frac = float(rng.uniform(0.1, max_frac))
    side = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom edge of the image cuts the car
    h, w = image.shape[:2]
    ox = oy = 0
    if side == 0:
        ox = int(round(x1 + frac * (x2 - x1)))
        image = image[:, ox:]
    elif side == 1:
        image = image[:, : int(round(x2 - frac * (x2 - x1)))]
    elif side == 2:
        oy = int(round(y1 + frac * (y2 - y1)))
        image = image[oy:, :]
    else:
        image = image[: int(round(y2 - frac * (y2 - y1))), :]
    nh, nw = image.shape[:2]
    vis = np.array([max(x1 - ox, 0), max(y1 - oy, 0), min(x2 - ox, nw), min(y2 - oy, nh)], dtype=np.float64)
    return image, vis, frac, np.array([ox, oy])


def degrade_resolution(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Send the crop through a low resolution, as a far car's few pixels are upscaled online."""
    size = crop.shape[0]
    low = int(rng.integers(24, min(100, size)))
    small = cv2.resize(crop, (low, low), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def make_crop(rng: np.random.Generator, models: list[CarModel], renderer: CarRenderer,
              backgrounds: BackgroundSource, cfg: RenderConfig, azimuth_deg: float | None = None) -> CropSample:
    """Draw and produce one crop sample; all randomness comes from ``rng``. ``azimuth_deg`` fixes
    the azimuth (for side-by-side comparisons with real crops)."""
    model_id = int(rng.integers(len(models)))
    view = sample_view(rng, cfg)
    if azimuth_deg is not None:
        view = replace(view, azimuth_deg=float(azimuth_deg) % 360.0)
    lighting = sample_lighting(rng, cfg)
    look, paint = sample_car_look(rng, cfg)
    side = int(round(cfg.crop.size * cfg.render_scale))
    model = models[model_id]
    res = renderer.render_view(model, view, side, lighting, paint=None if look else paint, fill=1.0, look=look)
    tight = res.box()
    if tight is None:
        raise RuntimeError(f"car {model.name} rendered empty at {view}")
    shadow = ground_shadow([(model, np.eye(4))], res.camera_pose, res.K, side, side, lighting) if cfg.shadows else None
    haze = float(rng.uniform(*cfg.haze)) if cfg.haze[1] > 0 else 0.0
    image = composite(res.color, res.mask, backgrounds.sample(rng, side, side), shadow=shadow, haze=haze)

    occlusion = 0.0
    icfg = cfg.interference
    if icfg.enabled and rng.uniform() < icfg.occluder_prob:
        image, occlusion = add_occluders(image, rng, tight, icfg.max_occluded_fraction, backgrounds)

    truncation = 0.0
    visible = tight
    if rng.uniform() < cfg.truncation_prob:
        image, visible, truncation, _ = truncate(image, tight, rng, cfg.truncation_max)
    h, w = image.shape[:2]
    det = jitter_box(rng, visible, cfg)
    det = np.clip(det, [0, 0, 0, 0], [w, h, w, h])  # detectors report boxes inside the image
    if det[2] - det[0] < 2 or det[3] - det[1] < 2:
        det = visible
    crop = crop_box(image, det, cfg.crop)
    bbox = box_in_crop(visible, crop_region(det, cfg.crop), cfg.crop.size)

    if rng.uniform() < cfg.lowres_prob:
        crop = degrade_resolution(crop, rng)
    if icfg.enabled:
        crop = apply_photometric(crop, rng, icfg)
    return CropSample(image=crop, azimuth_deg=view.azimuth_deg, elevation_deg=view.elevation_deg,
                      distance_m=res.view.distance_m, roll_deg=view.roll_deg, model_id=model_id,
                      bbox=bbox.astype(np.float32), truncation=truncation, occlusion=float(occlusion),
                      paint_rgb=np.round(np.asarray(paint) * 255).astype(np.uint8))


__all__ = ["CropSample", "degrade_resolution", "make_crop", "mask_box", "truncate"]
