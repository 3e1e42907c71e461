"""Render settings and the random draw of one sample's parameters.

Why one function per draw, seeded per sample index: sample ``i`` of a job is drawn from
``default_rng([seed, i])`` alone, so the output does not depend on the number of workers or on
where an interrupted run resumed, and a test can regenerate any single sample.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from carpose.crop import CropSpec
from training.render.interference import InterferenceConfig
from training.render.lighting import SkyConfig, sample_sky
from training.render.materials import CarLook, sample_look
from training.render.renderer import Lighting, View

#: Common real paint colours (RGB 0-1) with their rough share on the road; a random tint is added.
PAINT_PALETTE = np.array([
    (0.92, 0.92, 0.92), (0.05, 0.05, 0.06), (0.62, 0.63, 0.65), (0.35, 0.36, 0.38),
    (0.60, 0.05, 0.05), (0.08, 0.18, 0.45), (0.20, 0.30, 0.20), (0.55, 0.45, 0.30),
    (0.85, 0.60, 0.10), (0.40, 0.10, 0.30),
])
PAINT_WEIGHTS = np.array([0.22, 0.20, 0.16, 0.12, 0.09, 0.09, 0.03, 0.04, 0.03, 0.02])


@dataclass(frozen=True)
class RenderConfig:
    """Everything that shapes the images; stored as JSON in every HDF5 file it produced."""

    crop: CropSpec = field(default_factory=CropSpec)
    elevation_deg: tuple[float, float] = (0.0, 35.0)  # the draws that are not road-camera views
    distance_m: tuple[float, float] = (4.0, 30.0)
    road_camera_prob: float = 0.85  # elevation from a camera 1.2-2 m up looking at a car on the road
    camera_height_m: tuple[float, float] = (1.2, 2.0)
    road_slope_deg: float = 2.0  # sigma of the road's slope between camera and car
    roll_deg: float = 5.0  # uniform in [-roll, roll]
    render_scale: float = 1.25  # render side = crop size * render_scale
    box_scale_jitter: float = 0.08  # sigma of log box scale, mimics detector box error
    box_shift_jitter: float = 0.05  # sigma of centre shift as a fraction of box size
    truncation_prob: float = 0.15
    truncation_max: float = 0.4
    lowres_prob: float = 0.3  # crop re-sampled through 24-100 px, like far cars upscaled
    ambient: tuple[float, float] = (0.15, 0.6)
    key_intensity: tuple[float, float] = (1.0, 4.0)
    fill_intensity: tuple[float, float] = (0.2, 1.2)
    lighting: str = "outdoor"  # "outdoor": sun + sky + shadows (lighting.sample_sky); "studio": the old key/fill
    overcast_prob: float = 0.3
    shadows: bool = True  # sun and contact shadows on the background (lighting.ground_shadow)
    self_shadow: bool = False  # pyrender shadow maps on the car itself (slower)
    materials: str = "real"  # "real": materials.sample_look; "flat": paint colour only (old)
    haze: tuple[float, float] = (0.0, 0.1)  # car pulled towards the background's mean colour
    background_labels: str | tuple[str, ...] | None = None  # KITTI label_2 folder(s): photo crops avoid their boxes
    procedural_backgrounds: float = 0.3  # share of procedural backgrounds when photos are given
    background_bottom_margin: float = 0.16  # with labels: rows at the bottom skipped (nuScenes ego hood)
    interference: InterferenceConfig = field(default_factory=InterferenceConfig)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_json(cls, text: str) -> RenderConfig:
        d = json.loads(text)
        d["crop"] = CropSpec(**d["crop"])
        d["interference"] = InterferenceConfig(**d["interference"])
        if "haze" in d and d["haze"] is not None:
            d["haze"] = tuple(d["haze"])
        for k in ("elevation_deg", "distance_m", "ambient", "key_intensity", "fill_intensity", "camera_height_m",
                  "haze"):
            if k not in d:
                continue
            d[k] = tuple(d[k])
        if isinstance(d.get("background_labels"), list):  # several label folders
            d["background_labels"] = tuple(d["background_labels"])
        return cls(**d)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of a job seeded with ``seed``."""
    return np.random.default_rng([seed, index])


#: Height of a car's bounding-box centre (the look-at point), for road-camera elevations.
CAR_CENTRE_HEIGHT_M = 0.75


def sample_view(rng: np.random.Generator, cfg: RenderConfig) -> View:
    """Azimuth uniform over the full circle; distance log-uniform (near cars are as common in crops
    as far ones, and perspective changes fastest up close). Elevation: with ``road_camera_prob``
    that of a camera 1.2-2 m above a road that may slope a little (mostly 0-15 deg, small when
    far), otherwise uniform in ``elevation_deg`` (other mountings, hills)."""
    lo, hi = np.log(cfg.distance_m[0]), np.log(cfg.distance_m[1])
    az = float(rng.uniform(0.0, 360.0))
    dist = float(np.exp(rng.uniform(lo, hi)))
    if rng.uniform() < cfg.road_camera_prob:
        rise = rng.uniform(*cfg.camera_height_m) - CAR_CENTRE_HEIGHT_M
        el = math.degrees(math.atan2(rise, dist)) + rng.normal(0.0, cfg.road_slope_deg)
        el = float(np.clip(el, 0.0, cfg.elevation_deg[1]))
    else:
        el = float(rng.uniform(*cfg.elevation_deg))
    return View(azimuth_deg=az, elevation_deg=el, distance_m=dist,
                roll_deg=float(rng.uniform(-cfg.roll_deg, cfg.roll_deg)))


def sample_lighting(rng: np.random.Generator, cfg: RenderConfig) -> Lighting:
    """Outdoor sun and sky (lighting.sample_sky), or the old studio lights with ``lighting="studio"``."""
    if cfg.lighting == "outdoor":
        light = sample_sky(rng, SkyConfig(overcast_prob=cfg.overcast_prob, self_shadow=cfg.self_shadow))
        if not cfg.shadows:
            from dataclasses import replace

            light = replace(light, shadow=0.0, contact_shadow=0.0)
        return light
    return _studio_lighting(rng, cfg)


def sample_car_look(rng: np.random.Generator, cfg: RenderConfig) -> tuple[CarLook | None, tuple[float, float, float]]:
    """(look, paint RGB): every material of the car with ``materials="real"``, else only a paint."""
    if cfg.materials == "real":
        look = sample_look(rng)
        return look, look.paint.rgb
    return None, sample_paint(rng)


def _studio_lighting(rng: np.random.Generator, cfg: RenderConfig) -> Lighting:
    tint = 1.0 - rng.uniform(0.0, 0.25, size=3) * rng.uniform(0, 1) ** 2
    return Lighting(ambient=float(rng.uniform(*cfg.ambient)),
                    key_intensity=float(rng.uniform(*cfg.key_intensity)),
                    key_color=tuple(float(t) for t in tint),
                    key_azimuth_deg=float(rng.uniform(0.0, 360.0)),
                    key_elevation_deg=float(rng.uniform(15.0, 85.0)),
                    fill_intensity=float(rng.uniform(*cfg.fill_intensity)))


def sample_paint(rng: np.random.Generator) -> tuple[float, float, float]:
    base = PAINT_PALETTE[rng.choice(len(PAINT_PALETTE), p=PAINT_WEIGHTS / PAINT_WEIGHTS.sum())]
    rgb = np.clip(base + rng.normal(0.0, 0.05, size=3), 0.0, 1.0)
    if rng.uniform() < 0.1:  # a few arbitrary colours so no colour means "front" or "rear"
        rgb = rng.uniform(0.0, 1.0, size=3)
    return tuple(float(c) for c in rgb)


def jitter_box(rng: np.random.Generator, box: np.ndarray, cfg: RenderConfig) -> np.ndarray:
    """Perturb a tight box like a detector would: scale and shift, aspect slightly changed."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.normal(0.0, cfg.box_shift_jitter) * w
    cy = (y1 + y2) / 2 + rng.normal(0.0, cfg.box_shift_jitter) * h
    sw = np.exp(rng.normal(0.0, cfg.box_scale_jitter))
    sh = sw * np.exp(rng.normal(0.0, cfg.box_scale_jitter / 2))
    w, h = max(w * sw, 2.0), max(h * sh, 2.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
