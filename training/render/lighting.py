"""Outdoor light: sun + sky draws, and the car's shadow on the ground for compositing.

Why the ground shadow is computed here and not by pyrender's shadow maps: the background is a
photo pasted behind the render, so what is needed is a darkening *factor* per pixel of the
background, not a rendered ground. The shadow of a car on the flat road z = 0 from a directional
sun is the union of the car's points projected along the sun direction; its convex hull (cars are
convex enough seen from the sun) projected into the camera is the hard shadow, blurred a little
for the penumbra. A soft contact shadow (ambient occlusion) under the footprint is added on top,
and it is the only shadow on overcast days. This costs one 2-D hull and two fillPoly calls per
car, far less than a second render pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import trimesh

from training.cars.model import CarModel
from training.render.renderer import Lighting

_HULLS: dict[int, np.ndarray] = {}


@dataclass(frozen=True)
class SkyConfig:
    """Ranges of the sun-and-sky draw (intensities in pyrender units: ~3 lights a white sheet fully)."""

    overcast_prob: float = 0.3
    sun_elevation_deg: tuple[float, float] = (12.0, 70.0)
    sun_intensity: tuple[float, float] = (2.2, 4.0)
    sky_intensity: tuple[float, float] = (0.5, 1.2)
    overcast_sky_intensity: tuple[float, float] = (1.4, 2.4)
    ambient: tuple[float, float] = (0.2, 0.4)
    shadow: tuple[float, float] = (0.45, 0.7)  # darkening of the sunlit road in the sun's shadow
    contact_shadow: tuple[float, float] = (0.35, 0.7)
    self_shadow: bool = False


def sample_sky(rng: np.random.Generator, cfg: SkyConfig | None = None) -> Lighting:
    """A random sunny or overcast sky: sun direction and strength, sky and bounce light, shadows."""
    cfg = cfg or SkyConfig()
    overcast = rng.uniform() < cfg.overcast_prob
    warm = rng.uniform(0.0, 0.12)  # low sun is warmer
    sun_el = float(rng.uniform(*cfg.sun_elevation_deg))
    if overcast:
        sun = float(rng.uniform(0.0, 0.5))
        sky = float(rng.uniform(*cfg.overcast_sky_intensity))
        sky_color = (0.95, 0.97, 1.0)
        shadow = 0.0
        ambient = float(rng.uniform(cfg.ambient[1], cfg.ambient[1] + 0.2))
    else:
        sun = float(rng.uniform(*cfg.sun_intensity))
        sky = float(rng.uniform(*cfg.sky_intensity))
        sky_color = (0.75 + rng.uniform(0, 0.1), 0.85 + rng.uniform(0, 0.08), 1.0)
        shadow = float(rng.uniform(*cfg.shadow))
        ambient = float(rng.uniform(*cfg.ambient))
        warm += 0.1 * max(0.0, (30.0 - sun_el) / 30.0)
    return Lighting(ambient=ambient, key_intensity=sun, key_color=(1.0, 1.0 - warm / 2, 1.0 - warm),
                    key_azimuth_deg=float(rng.uniform(0.0, 360.0)), key_elevation_deg=sun_el,
                    fill_intensity=float(rng.uniform(0.0, 0.4)), sky_intensity=sky, sky_color=sky_color,
                    bounce_intensity=float(rng.uniform(0.15, 0.4)) * (sun + sky) / 3.0, shadow=shadow,
                    contact_shadow=float(rng.uniform(*cfg.contact_shadow)), self_shadow=cfg.self_shadow)


def _hull_points(model: CarModel) -> np.ndarray:
    """Vertices of the car's 3-D convex hull (N x 3, car frame); cached per model."""
    key = id(model)
    if key not in _HULLS:
        pts = np.vstack([np.asarray(p.mesh.vertices) for p in model.parts])
        try:
            pts = np.asarray(trimesh.convex.convex_hull(pts).vertices)
        except Exception:  # degenerate (flat) test meshes: every point is fine, just slower
            pass
        _HULLS[key] = pts
    return _HULLS[key]


def _to_image(points_world: np.ndarray, camera_pose: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """Project world points with a camera-to-world OpenGL pose; None if any is behind the camera."""
    cam = (np.linalg.inv(camera_pose) @ np.c_[points_world, np.ones(len(points_world))].T).T[:, :3]
    z = -cam[:, 2]
    if np.any(z < 0.1):
        return None
    uv = (K @ np.c_[cam[:, 0], -cam[:, 1], z].T).T
    return uv[:, :2] / uv[:, 2:3]


def _fill(mask: np.ndarray, uv: np.ndarray) -> None:
    hull = cv2.convexHull(np.round(uv * 4).astype(np.int32))
    cv2.fillPoly(mask, [hull], 1.0, lineType=cv2.LINE_AA, shift=2)


def ground_shadow(cars: list[tuple[CarModel, np.ndarray]], camera_pose: np.ndarray, K: np.ndarray, width: int,
                  height: int, lighting: Lighting) -> np.ndarray | None:
    """HxW float32 in [0, 1]: how much each background pixel is darkened by the cars' sun and
    contact shadows on the ground z = 0 (0 = not at all). None when the lighting casts none."""
    if lighting.shadow <= 0 and lighting.contact_shadow <= 0:
        return None
    sun = lighting.sun_direction()
    sun_mask = np.zeros((height, width), np.float32)
    contact = np.zeros((height, width), np.float32)
    contact_sigma = penumbra = 1.0
    for model, pose in cars:
        lo, hi = model.bounds
        # Contact shadow: the footprint, a little smaller than the box, blurred by a quarter width.
        cx, cy = (lo[:2] + hi[:2]) / 2
        hx, hy = (hi[:2] - lo[:2]) / 2 * np.array([0.95, 0.9])
        foot = np.array([[cx + sx * hx, cy + sy * hy, 0.0, 1.0] for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))])
        foot_uv = _to_image((pose @ foot.T).T[:, :3], camera_pose, K)
        if foot_uv is None:
            continue
        _fill(contact, foot_uv)
        px_per_m = float(np.ptp(foot_uv[:, 0]) + np.ptp(foot_uv[:, 1])) / float(2 * hx + 2 * hy) + 1e-6
        contact_sigma = max(contact_sigma, 0.3 * px_per_m)
        penumbra = max(penumbra, 0.04 * px_per_m)
        if lighting.shadow > 0 and sun[2] > 0.05:
            pts = (pose @ np.c_[_hull_points(model), np.ones(len(_hull_points(model)))].T).T[:, :3]
            ground = pts - pts[:, 2:3] / sun[2] * sun[None, :]
            uv = _to_image(ground, camera_pose, K)
            if uv is not None:
                _fill(sun_mask, uv)
    out = np.zeros((height, width), np.float32)
    if lighting.shadow > 0 and sun_mask.any():
        out = lighting.shadow * cv2.GaussianBlur(sun_mask, (0, 0), penumbra)
    if lighting.contact_shadow > 0 and contact.any():
        c = lighting.contact_shadow * cv2.GaussianBlur(contact, (0, 0), contact_sigma)
        out = 1.0 - (1.0 - out) * (1.0 - c)
    return np.clip(out, 0.0, 1.0)


def shadow_length_m(height_m: float, sun_elevation_deg: float) -> float:
    """Length of the shadow of something ``height_m`` tall (for docs and sanity checks)."""
    return height_m / math.tan(math.radians(sun_elevation_deg))
