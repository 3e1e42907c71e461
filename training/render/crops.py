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
from training.render.renderer import CarRenderer, RenderResult, View, mask_box
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


@dataclass
class RenderedCar:
    """One car rendered for a sample, before any background: what make_crop and render_layers share."""

    model_id: int
    view: View  # the view drawn (its distance as drawn; ``result.view`` has the rendered one)
    paint: tuple[float, float, float]
    result: RenderResult
    tight: np.ndarray  # tight box of the car in render pixels
    shadow: np.ndarray | None  # ground-shadow darkening in [0, 1] (lighting.ground_shadow), None without


def render_car(rng: np.random.Generator, models: list[CarModel], renderer: CarRenderer, cfg: RenderConfig,
               side: int, fill: float, azimuth_deg: float | None = None, coverage: bool = False) -> RenderedCar:
    """Draw a car, a view, a sky and a look from ``rng`` and render it into a ``side`` square whose
    width the car's bounding sphere spans ``fill`` of, with its ground shadow (``cfg.shadows``)."""
    model_id = int(rng.integers(len(models)))
    view = sample_view(rng, cfg)
    if azimuth_deg is not None:
        view = replace(view, azimuth_deg=float(azimuth_deg) % 360.0)
    lighting = sample_lighting(rng, cfg)
    look, paint = sample_car_look(rng, cfg)
    model = models[model_id]
    res = renderer.render_view(model, view, side, lighting, paint=None if look else paint, fill=fill, look=look,
                               coverage=coverage)
    tight = res.box() if res.alpha is None else mask_box(res.alpha > 0)
    if tight is None:
        raise RuntimeError(f"car {model.name} rendered empty at {view}")
    shadow = ground_shadow([(model, np.eye(4))], res.camera_pose, res.K, side, side, lighting) if cfg.shadows else None
    return RenderedCar(model_id, view, paint, res, tight, shadow)


@dataclass
class FinishedCrop:
    image: np.ndarray  # the crop, size x size x 3 uint8 RGB
    bbox: np.ndarray  # the visible car box in crop pixels
    truncation: float
    occlusion: float
    alpha: np.ndarray | None = None  # the car's coverage cut the same way (when asked for)


def finish_crop(image: np.ndarray, tight: np.ndarray, rng: np.random.Generator, cfg: RenderConfig,
                backgrounds: BackgroundSource | None, alpha: np.ndarray | None = None) -> FinishedCrop:
    """A car composited on its background -> a training crop: occluders, truncation by the image edge,
    a detector-like jittered box cut with ``crop_box`` (as the runtime cuts detector boxes), low
    resolution and the photometric interference, each with its ``cfg`` probability. ``alpha`` (the
    car's HxW coverage) is cut along with the image, for checks and contact sheets."""
    occlusion = 0.0
    icfg = cfg.interference
    if icfg.enabled and rng.uniform() < icfg.occluder_prob:
        image, occlusion = add_occluders(image, rng, tight, icfg.max_occluded_fraction, backgrounds)

    truncation = 0.0
    visible = tight
    if rng.uniform() < cfg.truncation_prob:
        image, visible, truncation, (ox, oy) = truncate(image, tight, rng, cfg.truncation_max)
        if alpha is not None:
            alpha = alpha[oy:oy + image.shape[0], ox:ox + image.shape[1]]
    h, w = image.shape[:2]
    det = jitter_box(rng, visible, cfg)
    det = np.clip(det, [0, 0, 0, 0], [w, h, w, h])  # detectors report boxes inside the image
    if det[2] - det[0] < 2 or det[3] - det[1] < 2:
        det = visible
    crop = crop_box(image, det, cfg.crop)
    bbox = box_in_crop(visible, crop_region(det, cfg.crop), cfg.crop.size)
    alpha_crop = None
    if alpha is not None:
        alpha_crop = crop_box(np.repeat(alpha[..., None], 3, axis=2), det, replace(cfg.crop, fill=0))[..., 0]

    if rng.uniform() < cfg.lowres_prob:
        crop = degrade_resolution(crop, rng)
    if icfg.enabled:
        crop = apply_photometric(crop, rng, icfg)
    return FinishedCrop(crop, bbox.astype(np.float32), truncation, float(occlusion), alpha_crop)


def make_crop(rng: np.random.Generator, models: list[CarModel], renderer: CarRenderer,
              backgrounds: BackgroundSource, cfg: RenderConfig, azimuth_deg: float | None = None) -> CropSample:
    """Draw and produce one crop sample; all randomness comes from ``rng``. ``azimuth_deg`` fixes
    the azimuth (for side-by-side comparisons with real crops)."""
    side = int(round(cfg.crop.size * cfg.render_scale))
    car = render_car(rng, models, renderer, cfg, side, 1.0, azimuth_deg)
    haze = float(rng.uniform(*cfg.haze)) if cfg.haze[1] > 0 else 0.0
    res = car.result
    image = composite(res.color, res.mask, backgrounds.sample(rng, side, side), shadow=car.shadow, haze=haze)
    done = finish_crop(image, car.tight, rng, cfg, backgrounds)
    return CropSample(image=done.image, azimuth_deg=car.view.azimuth_deg, elevation_deg=car.view.elevation_deg,
                      distance_m=res.view.distance_m, roll_deg=car.view.roll_deg, model_id=car.model_id,
                      bbox=done.bbox, truncation=done.truncation, occlusion=done.occlusion,
                      paint_rgb=paint_bytes(car.paint))


def paint_bytes(paint: tuple[float, float, float]) -> np.ndarray:
    return np.round(np.asarray(paint) * 255).astype(np.uint8)


#: Side of a layers canvas as a multiple of the crop size, and the share of it the car's bounding
#: sphere spans: a car about a crop wide with room around it for the box jitter and scale of
#: training-time compositing (training/pose/composite.py).
LAYER_CANVAS = 1.5
LAYER_FILL = 1.0 / LAYER_CANVAS


@dataclass
class LayerSample:
    """A car rendered once for compositing at training time; field names match the HDF5 datasets of a
    layers file (see training.dataset.schema)."""

    image: np.ndarray  # canvas x canvas x 3 uint8: the car's straight colour, 0 where alpha is 0
    alpha: np.ndarray  # canvas x canvas uint8 coverage (0 = background, 255 = car)
    shadow: np.ndarray  # canvas x canvas uint8 ground factor: 255 = no shadow, lower = darker
    azimuth_deg: float
    elevation_deg: float
    distance_m: float
    roll_deg: float
    model_id: int
    bbox: np.ndarray  # tight box of the car (alpha > 0) in canvas pixels (x1, y1, x2, y2)
    paint_rgb: np.ndarray  # uint8 (3,)


def layer_canvas(cfg: RenderConfig) -> int:
    """Side in pixels of the layers canvas for crops of ``cfg.crop.size``."""
    return int(round(cfg.crop.size * LAYER_CANVAS))


def render_layers(rng: np.random.Generator, models: list[CarModel], renderer: CarRenderer, cfg: RenderConfig,
                  azimuth_deg: float | None = None) -> LayerSample:
    """Render one car with its coverage and ground shadow, no background: the draws of :func:`make_crop`
    up to the render (car, view, sky, look); the rest (background, haze, occluders, box, photometric)
    is drawn when the sample is composited (training/pose/composite.py)."""
    side = layer_canvas(cfg)
    car = render_car(rng, models, renderer, cfg, side, LAYER_FILL, azimuth_deg, coverage=True)
    res = car.result
    shadow = np.full((side, side), 255, np.uint8) if car.shadow is None else \
        np.round(255.0 * (1.0 - car.shadow)).astype(np.uint8)
    return LayerSample(image=res.straight_color(), alpha=res.alpha, shadow=shadow, azimuth_deg=car.view.azimuth_deg,
                       elevation_deg=car.view.elevation_deg, distance_m=res.view.distance_m,
                       roll_deg=car.view.roll_deg, model_id=car.model_id, bbox=car.tight.astype(np.float32),
                       paint_rgb=paint_bytes(car.paint))


__all__ = ["CropSample", "FinishedCrop", "LayerSample", "RenderedCar", "degrade_resolution", "finish_crop",
           "layer_canvas", "make_crop", "mask_box", "render_car", "render_layers", "truncate"]
