"""Full synthetic frames with several cars on a ground plane, labelled like KITTI.

Used for detector training, test bags and end-to-end evaluation. Geometry: a world frame with the
ground at z=0, a camera at driver height looking along +X with a small pitch; cars stand on the
ground with random yaw. Each car's azimuth label is computed from where the camera is *in that
car's frame* (carpose.convention.view_from_camera_position), i.e. along the viewing ray, which is
exactly what a crop of that car shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carpose.convention import look_at_pose, view_from_camera_position, wrap_deg
from training.cars.model import CarModel
from training.dataset.schema import SCENE_CAR_FIELDS
from training.render.backgrounds import BackgroundSource, composite
from training.render.interference import apply_photometric
from training.render.lighting import ground_shadow
from training.render.renderer import CarRenderer, mask_box
from training.render.sampling import RenderConfig, sample_car_look, sample_lighting


@dataclass(frozen=True)
class SceneConfig:
    width: int = 640
    height: int = 480
    max_cars: int = 6
    hfov_deg: tuple[float, float] = (50.0, 90.0)
    camera_height_m: tuple[float, float] = (1.2, 2.2)
    pitch_deg: tuple[float, float] = (0.0, 8.0)  # downwards
    distance_m: tuple[float, float] = (5.0, 45.0)


@dataclass
class SceneSample:
    image: np.ndarray  # H x W x 3 uint8
    K: np.ndarray  # 3x3
    cars: dict[str, np.ndarray]  # columns of training.dataset.schema.SCENE_CAR_FIELDS except 'frame'


def camera_pose_world(height_m: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world pose (OpenGL convention) at (0, 0, height) looking along +X, pitched down."""
    eye = np.array([0.0, 0.0, height_m])
    target = eye + np.array([math.cos(math.radians(pitch_deg)), 0.0, -math.sin(math.radians(pitch_deg))])
    return look_at_pose(eye, target, roll_deg=roll_deg)


def car_pose_world(x: float, y: float, yaw_deg: float) -> np.ndarray:
    """Car-to-world pose: car frame origin (footprint centre on the ground) at (x, y, 0), front
    rotated ``yaw_deg`` counter-clockwise from world +X."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:2, 3] = (x, y)
    return pose


def gl_to_kitti(points_cam_gl: np.ndarray) -> np.ndarray:
    """OpenGL camera coordinates (x right, y up, z back) -> KITTI camera (x right, y down, z forward)."""
    return points_cam_gl * np.array([1.0, -1.0, -1.0])


def project(K: np.ndarray, pts_kitti: np.ndarray) -> np.ndarray:
    uv = (K @ pts_kitti.T).T
    return uv[:, :2] / uv[:, 2:3]


def _box_corners(model: CarModel) -> np.ndarray:
    lo, hi = model.bounds
    return np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def place_cars(rng: np.random.Generator, models: list[CarModel], cfg: SceneConfig, half_fov: float
               ) -> list[tuple[int, float, float, float]]:
    """(model id, x, y, yaw) for 1..max_cars cars in view, footprints not intersecting."""
    n = int(rng.integers(1, cfg.max_cars + 1))
    placed: list[tuple[int, float, float, float, float]] = []
    for _ in range(n * 10):
        if len(placed) == n:
            break
        mid = int(rng.integers(len(models)))
        ext = models[mid].extents
        radius = 0.5 * math.hypot(ext[0], ext[1])
        x = float(np.exp(rng.uniform(np.log(cfg.distance_m[0]), np.log(cfg.distance_m[1]))))
        y = x * math.tan(rng.uniform(-half_fov, half_fov) * 0.95)
        if all(math.hypot(x - px, y - py) > radius + pr for _, px, py, _, pr in placed):
            placed.append((mid, x, y, float(rng.uniform(0.0, 360.0)), radius))
    return [(m, x, y, yaw) for m, x, y, yaw, _ in placed]


def make_scene(rng: np.random.Generator, models: list[CarModel], renderer: CarRenderer,
               backgrounds: BackgroundSource, cfg: RenderConfig, scfg: SceneConfig) -> SceneSample:
    W, H = scfg.width, scfg.height
    hfov = math.radians(rng.uniform(*scfg.hfov_deg))
    f = W / 2 / math.tan(hfov / 2)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    cam_pose = camera_pose_world(rng.uniform(*scfg.camera_height_m), rng.uniform(*scfg.pitch_deg),
                                 rng.uniform(-2.0, 2.0))
    placements = place_cars(rng, models, scfg, hfov / 2)
    lighting = sample_lighting(rng, cfg)
    drawn = [sample_car_look(rng, cfg) for _ in placements]
    looks = [look for look, _ in drawn]
    paints = [None if look else paint for look, paint in drawn]
    cars = [(models[m], car_pose_world(x, y, yaw)) for m, x, y, yaw in placements]
    res, seg = renderer.render(cars, cam_pose, K, W, H, lighting, paints=paints, segment=True, looks=looks)
    rows: dict[str, list] = {k: [] for k in ("model_id", "bbox", "bbox_full", "azimuth_deg", "elevation_deg",
                                            "distance_m", "location_cam", "dimensions", "rotation_y",
                                            "visible_fraction", "truncation", "paint_rgb")}
    for i, ((mid, _, _, _yaw), (model, pose)) in enumerate(zip(placements, cars, strict=True)):
        solo, _ = renderer.render([(model, pose)], cam_pose, K, W, H, lighting, paints=[paints[i]], looks=[looks[i]])
        labels = car_labels(model, pose, cam_pose, K, W, H, seg == i, int(solo.mask.sum()))
        rows["model_id"].append(mid)
        for k, v in labels.items():
            rows[k].append(v)
        rows["paint_rgb"].append(np.round(np.asarray(drawn[i][1]) * 255))
    shadow = ground_shadow(cars, cam_pose, K, W, H, lighting) if cfg.shadows else None
    haze = float(rng.uniform(*cfg.haze)) if cfg.haze[1] > 0 else 0.0
    image = composite(res.color, seg >= 0, backgrounds.sample(rng, H, W), shadow=shadow, haze=haze)
    if cfg.interference.enabled:
        image = apply_photometric(image, rng, cfg.interference)
    columns = {k: np.asarray(v, dtype=SCENE_CAR_FIELDS[k][0]).reshape((len(v), *SCENE_CAR_FIELDS[k][1]))
               for k, v in rows.items()}
    return SceneSample(image=image, K=K.astype(np.float32), cars=columns)


def car_labels(model: CarModel, pose: np.ndarray, cam_pose: np.ndarray, K: np.ndarray, W: int, H: int,
               visible_mask: np.ndarray, solo_px: int) -> dict:
    """KITTI-like labels of one car placed at ``pose`` (car-to-world) seen from ``cam_pose``
    (camera-to-world, OpenGL): boxes, azimuth/elevation/distance along the viewing ray, 3-D location,
    rotation_y, visible fraction and truncation. Shared by scenes and drives (training.render.drive)
    so every synthetic label is computed one way. ``visible_mask`` is the car's pixels in the full
    render (occlusion included), ``solo_px`` its pixel count rendered alone."""
    ext = model.extents
    world_to_cam = np.linalg.inv(cam_pose)
    cam_in_car = np.linalg.inv(pose) @ cam_pose[:, 3]
    az, el, dist = view_from_camera_position(cam_in_car[:3], (0.0, 0.0, ext[2] / 2))
    corners_cam = gl_to_kitti((world_to_cam @ (pose @ _box_corners(model).T)).T[:, :3])
    full = _amodal_box(K, corners_cam)
    box = mask_box(visible_mask)
    full_area = max((full[2] - full[0]) * (full[3] - full[1]), 1e-6)
    clipped = np.clip(full, [0, 0, 0, 0], [W, H, W, H])
    bottom = gl_to_kitti((world_to_cam @ pose @ np.array([0.0, 0.0, 0.0, 1.0]))[None, :3])[0]
    front_cam = gl_to_kitti((world_to_cam[:3, :3] @ pose[:3, :3] @ np.array([1.0, 0.0, 0.0]))[None])[0]
    return {
        "bbox": box if box is not None else np.zeros(4),
        "bbox_full": full,
        "azimuth_deg": wrap_deg(az),
        "elevation_deg": el,
        "distance_m": dist,
        "location_cam": bottom,
        "dimensions": [ext[0], ext[1], ext[2]],
        "rotation_y": math.atan2(-front_cam[2], front_cam[0]),
        "visible_fraction": float(visible_mask.sum()) / solo_px if solo_px else 0.0,
        "truncation": 1.0 - (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / full_area
        if full[3] > 0 else 1.0,
    }


def _amodal_box(K: np.ndarray, corners_cam: np.ndarray) -> np.ndarray:
    """Box of the projected 3-D bounding box (corners behind the camera are clamped to z>=0.1)."""
    pts = corners_cam.copy()
    pts[:, 2] = np.maximum(pts[:, 2], 0.1)
    uv = project(K, pts)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
