"""Full synthetic frames with several cars on a ground plane, labelled like KITTI.

Used for detector training, test bags and end-to-end evaluation. Geometry: a world frame with the
ground at z=0, a camera at driver height looking along +X with a small pitch; cars stand on the
ground with random yaw. Each car's azimuth label is computed from where the camera is *in that
car's frame* (carpose.convention.view_from_camera_position), i.e. along the viewing ray, which is
exactly what a crop of that car shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from carpose.convention import look_at_pose, view_from_camera_position, wrap_deg
from training.cars.model import CarModel
from training.dataset.schema import SCENE_CAR_FIELDS
from training.render.backgrounds import BackgroundSource, composite
from training.render.interference import apply_photometric
from training.render.lighting import ground_shadow
from training.render.negatives import KERB_KINDS, VEHICLE_KINDS, check_kinds
from training.render.renderer import CarRenderer, mask_box
from training.render.sampling import RenderConfig, sample_car_look, sample_lighting

#: The columns :func:`car_labels` fills, in the order the scenes file has always stored them.
LABEL_FIELDS = ("bbox", "bbox_full", "bbox_amodal", "azimuth_deg", "elevation_deg", "distance_m", "location_cam",
                "dimensions", "rotation_y", "visible_fraction", "truncation")


@dataclass(frozen=True)
class SceneConfig:
    width: int = 640
    height: int = 480
    max_cars: int = 6
    hfov_deg: tuple[float, float] = (50.0, 90.0)
    camera_height_m: tuple[float, float] = (1.2, 2.2)
    pitch_deg: tuple[float, float] = (0.0, 8.0)  # downwards
    distance_m: tuple[float, float] = (5.0, 45.0)
    #: "random": cars anywhere on the ground, random yaw, on a background crop (the first detector
    #: and the test bags). "road": kerb rows, lots and lane traffic on a road in the camera's
    #: perspective (:func:`place_road`), on a whole road frame, with unlabelled negatives.
    layout: str = "random"
    negatives: int = 0  # road layout: at most this many non-car objects (training.render.negatives)
    negative_dirs: tuple[str, ...] = ()  # mesh folders of extra negatives (e.g. ../shared/distractors)
    #: Road layout: kinds of procedural negatives left out (e.g. "box_van": KITTI labels a windowless
    #: van a Van, which the product counts as a car).
    skip_negatives: tuple[str, ...] = ()
    #: Road layout: chance of a cross street ahead (cars side-on) and its distance range (m).
    cross_street: float = 0.45
    cross_street_m: tuple[float, float] = (10.0, 45.0)
    #: Road layout: chance of a parking lot beside the road (perpendicular or angled rows).
    parking_lot: float = 0.4
    #: Road layout: how far (deg) outside the field of view a car's centre may stand, so that cars
    #: cut by the image border are drawn (and labelled by their visible part).
    edge_margin_deg: float = 4.0
    #: Road layout: place the cross street and the lot before the kerb rows (which otherwise take
    #: most of ``max_cars`` first).
    side_first: bool = False

    def __post_init__(self) -> None:
        if self.layout not in ("random", "road"):
            raise ValueError(f"layout must be 'random' or 'road', got {self.layout!r}")
        for name in ("cross_street", "parking_lot"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a chance in [0, 1], got {getattr(self, name)}")
        lo, hi = self.cross_street_m
        if not 3.0 <= lo <= hi:
            raise ValueError(f"cross_street_m must be 3 <= near <= far metres, got {self.cross_street_m}")
        check_kinds(self.skip_negatives)  # here, before any render worker starts
        if not 0.0 <= self.edge_margin_deg <= 30.0:
            raise ValueError(f"edge_margin_deg must be in [0, 30], got {self.edge_margin_deg}")


#: A road-like camera: nuScenes' front camera has a 64.6 deg horizontal field of view at 1.5-1.6 m.
ROAD_CAMERA = {"hfov_deg": (55.0, 75.0), "camera_height_m": (1.35, 1.95), "pitch_deg": (-1.0, 3.0),
               "distance_m": (4.0, 80.0)}


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


@dataclass(frozen=True)
class Placed:
    """One object of a road scene: index into the car (or negative) list, ground position, yaw."""

    index: int
    x: float
    y: float
    yaw: float
    negative: bool = False


def _in_view(x: float, y: float, half_fov: float, margin_deg: float = 4.0) -> bool:
    return x > 3.0 and abs(math.atan2(y, x)) < half_fov + math.radians(margin_deg)


def place_road(rng: np.random.Generator, models: list[CarModel], negatives: list[CarModel], scfg: SceneConfig,
               half_fov: float) -> list[Placed]:
    """A street seen from a car in its lane (world x forward, y left, z up; camera at y=0).

    Why this layout: real road frames have cars *parked in rows* along both kerbs (parallel,
    bumper to bumper, hiding each other), in lots beside the road (perpendicular), and lead and
    oncoming traffic in the lanes, from a few metres to the vanishing point; the first detector saw
    cars scattered at random yaw and missed rows of parked cars. The road may bend a few degrees.
    Negatives stand where such things stand: box vehicles in lanes and kerb slots, poles, bollards
    and barriers on the kerb line, fences and trees behind it. At most ``scfg.max_cars`` cars,
    nearest rows first; objects must not overlap (footprint circles: half the width in rows and lots,
    whose spacing along the row is by construction, half the diagonal elsewhere).
    """
    d_lo, d_hi = scfg.distance_m
    heading = math.radians(rng.normal(0.0, 4.0))
    half_width = float(rng.uniform(3.0, 7.5))
    out: list[Placed] = []
    discs: list[tuple[float, float, float]] = []  # footprint circles of traffic / lot / negatives

    def road_xy(s: float, t: float) -> tuple[float, float]:  # along-road s, left offset t -> world
        return s * math.cos(heading) - t * math.sin(heading), s * math.sin(heading) + t * math.cos(heading)

    def free(x: float, y: float, r: float) -> bool:
        return all(math.hypot(x - px, y - py) > r + pr for px, py, pr in discs)

    def add(index: int, s: float, t: float, yaw_deg: float, negative: bool, radius: float | None = None) -> bool:
        x, y = road_xy(s, t)
        if not _in_view(x, y, half_fov, scfg.edge_margin_deg) or x > d_hi * 1.05:
            return False
        if radius is not None:
            if not free(x, y, radius):
                return False
            discs.append((x, y, radius))
        out.append(Placed(index, x, y, (yaw_deg + math.degrees(heading)) % 360.0, negative))
        return True

    n_cars = 0
    vehicle_negs = [i for i, m in enumerate(negatives) if m.meta.get("kind") in VEHICLE_KINDS]

    def kerb_rows() -> None:
        nonlocal n_cars
        # kerb rows: parallel parking on each side, some slots empty, a lorry or van now and then
        for side in (-1.0, 1.0):
            if rng.uniform() > 0.75:
                continue
            t = side * (half_width + rng.uniform(0.6, 1.4))
            s = float(rng.uniform(d_lo, 20.0))
            facing = 0.0 if (side < 0) == (rng.uniform() < 0.8) else 180.0  # right kerb: mostly facing away
            occupancy = float(rng.uniform(0.4, 0.95))
            while s < d_hi and n_cars < scfg.max_cars:
                if negatives and vehicle_negs and rng.uniform() < 0.06 and scfg.negatives:
                    j = int(rng.choice(vehicle_negs))
                    m = negatives[j]
                    length = float(m.extents[0])
                    add(j, s + length / 2, t - side * 0.3, facing + rng.normal(0, 2), True,
                        radius=0.5 * float(m.extents[1]) + 0.3)
                    s += length + rng.uniform(0.8, 3.0)
                    continue
                mid = int(rng.integers(len(models)))
                length = float(models[mid].extents[0])
                if rng.uniform() < occupancy and add(mid, s + length / 2, t + rng.normal(0, 0.15),
                                                     facing + rng.normal(0, 3.0), False,
                                                     radius=0.5 * float(models[mid].extents[1]) + 0.3):
                    n_cars += 1
                s += length + rng.uniform(0.5, 3.0)

    def parking_lot() -> None:
        nonlocal n_cars
        # a parking lot beside the road: perpendicular or angled rows
        if rng.uniform() < scfg.parking_lot:
            side = -1.0 if rng.uniform() < 0.5 else 1.0
            t0 = side * (half_width + rng.uniform(3.0, 10.0))
            s = float(rng.uniform(6.0, 20.0))
            angle = float(rng.choice([0.0, 45.0, -45.0]))
            for _ in range(int(rng.integers(3, 10))):
                if n_cars >= scfg.max_cars:
                    break
                mid = int(rng.integers(len(models)))
                r = 0.5 * float(models[mid].extents[1]) + 0.2
                yaw = (90.0 if rng.uniform() < 0.5 else 270.0) + angle + rng.normal(0, 5)
                if rng.uniform() < 0.8 and add(mid, s, t0, yaw, False, radius=r):
                    n_cars += 1
                s += float(rng.uniform(2.5, 3.2))

    def cross_street() -> None:
        nonlocal n_cars
        # a cross street ahead: cars seen from the side, parked along it or crossing
        if rng.uniform() < scfg.cross_street:
            s_cross = float(rng.uniform(*scfg.cross_street_m))
            for _ in range(int(rng.integers(2, 8))):
                if n_cars >= scfg.max_cars:
                    break
                mid = int(rng.integers(len(models)))
                t = float(rng.uniform(-1.0, 1.0)) * s_cross * math.tan(half_fov)
                yaw = (90.0 if rng.uniform() < 0.5 else 270.0) + rng.normal(0, 6)
                if add(mid, s_cross + rng.uniform(-5.0, 5.0), t, yaw, False,
                       radius=0.5 * float(np.hypot(*models[mid].extents[:2]))):
                    n_cars += 1

    # Side views first when asked: kerb rows otherwise fill max_cars before the cross street and the
    # lot get a car (the default order is kept so earlier renders reproduce).
    order = (cross_street, parking_lot, kerb_rows) if scfg.side_first else (kerb_rows, parking_lot, cross_street)
    for place in order:
        place()
    # lane traffic: lead cars ahead, oncoming cars in the left lanes, now and then one turning
    for _ in range(int(rng.integers(0, 5))):
        if n_cars >= scfg.max_cars:
            break
        oncoming = rng.uniform() < 0.45
        lane = float(rng.choice([1.75, 5.25])) if oncoming else float(rng.choice([0.0, -3.5]))
        if abs(lane) > half_width:
            lane = 1.75 if oncoming else 0.0
        yaw = (180.0 if oncoming else 0.0) + (rng.uniform(-90, 90) if rng.uniform() < 0.25 else rng.normal(0, 3))
        s = float(np.exp(rng.uniform(np.log(max(d_lo, 5.0)), np.log(d_hi))))
        mid = int(rng.integers(len(models)))
        if add(mid, s, lane + rng.normal(0, 0.3), yaw, False, radius=0.5 * float(np.hypot(*models[mid].extents[:2]))):
            n_cars += 1
    # negatives: vehicles in lanes, kerb clutter, verge clutter
    for _ in range(int(rng.integers(0, scfg.negatives + 1)) if negatives else 0):
        i = int(rng.integers(len(negatives)))
        kind = negatives[i].meta.get("kind", "lorry")
        s = float(np.exp(rng.uniform(np.log(max(d_lo, 5.0)), np.log(d_hi * 0.8))))
        side = -1.0 if rng.uniform() < 0.5 else 1.0
        if kind in VEHICLE_KINDS:
            t, yaw = float(rng.choice([0.0, 1.75, -3.5])), 0.0 if rng.uniform() < 0.6 else 180.0
        elif kind in KERB_KINDS:
            t, yaw = side * (half_width + rng.uniform(0.1, 0.5)), 0.0
        else:
            t, yaw = side * (half_width + rng.uniform(2.0, 7.0)), 0.0
        add(i, s, t, yaw + rng.normal(0, 2), True, radius=0.5 * float(np.hypot(*negatives[i].extents[:2])))
    return out


def make_scene(rng: np.random.Generator, models: list[CarModel], renderer: CarRenderer,
               backgrounds: BackgroundSource, cfg: RenderConfig, scfg: SceneConfig,
               negatives: list[CarModel] | None = None) -> SceneSample:
    W, H = scfg.width, scfg.height
    hfov = math.radians(rng.uniform(*scfg.hfov_deg))
    f = W / 2 / math.tan(hfov / 2)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    cam_pose = camera_pose_world(rng.uniform(*scfg.camera_height_m), rng.uniform(*scfg.pitch_deg),
                                 rng.uniform(-2.0, 2.0) if scfg.layout == "random" else rng.uniform(-0.8, 0.8))
    if scfg.layout == "road":
        return _road_scene(rng, models, negatives or [], renderer, backgrounds, cfg, scfg, K, cam_pose, hfov)
    placements = place_cars(rng, models, scfg, hfov / 2)
    lighting = sample_lighting(rng, cfg)
    drawn = [sample_car_look(rng, cfg) for _ in placements]
    looks = [look for look, _ in drawn]
    paints = [None if look else paint for look, paint in drawn]
    cars = [(models[m], car_pose_world(x, y, yaw)) for m, x, y, yaw in placements]
    res, seg = renderer.render(cars, cam_pose, K, W, H, lighting, paints=paints, segment=True, looks=looks)
    rows = _car_rows(renderer, cars, [m for m, *_ in placements], [paint for _, paint in drawn], seg, cam_pose, K)
    return _finish(rng, cfg, res.color, seg, cars, cam_pose, K, lighting, backgrounds.sample, rows)


def _road_scene(rng: np.random.Generator, models: list[CarModel], negatives: list[CarModel], renderer: CarRenderer,
                backgrounds: BackgroundSource, cfg: RenderConfig, scfg: SceneConfig, K: np.ndarray,
                cam_pose: np.ndarray, hfov: float) -> SceneSample:
    """Render a :func:`place_road` street on a whole road frame; only the cars get labels."""
    W, H = scfg.width, scfg.height
    placed = place_road(rng, models, negatives, scfg, hfov / 2)
    placed.sort(key=lambda p: p.negative)  # cars first: car i is segment i
    objects = [((negatives if p.negative else models)[p.index], car_pose_world(p.x, p.y, p.yaw)) for p in placed]
    lighting = sample_lighting(rng, cfg)
    drawn = [sample_car_look(rng, cfg) if not p.negative else (None, (0.5, 0.5, 0.5)) for p in placed]
    looks = [look for look, _ in drawn]
    paints = [None if (look or p.negative) else paint for (look, paint), p in zip(drawn, placed, strict=True)]
    res, seg = renderer.render(objects, cam_pose, K, W, H, lighting, paints=paints, segment=True, looks=looks)
    n_cars = sum(not p.negative for p in placed)
    rows = _car_rows(renderer, objects[:n_cars], [p.index for p in placed[:n_cars]],
                     [paint for _, paint in drawn[:n_cars]], seg, cam_pose, K)
    return _finish(rng, cfg, res.color, seg, objects, cam_pose, K, lighting, backgrounds.sample_frame, rows)


def _car_rows(renderer: CarRenderer, cars: list[tuple[CarModel, np.ndarray]], model_ids: list[int],
              paints: list[tuple[float, float, float]], seg: np.ndarray, cam_pose: np.ndarray, K: np.ndarray
              ) -> dict[str, list]:
    """Label rows of the rendered cars (car i is segment i): :func:`car_labels`, the visible
    fraction against the car's silhouette rendered alone, its model id and paint (0-255)."""
    H, W = seg.shape
    rows: dict[str, list] = {k: [] for k in (*LABEL_FIELDS, "model_id", "paint_rgb")}
    for i, ((model, pose), mid, paint) in enumerate(zip(cars, model_ids, paints, strict=True)):
        visible = seg == i
        solo = renderer.silhouette_mask(model, pose, cam_pose, K, W, H) if visible.any() else np.zeros_like(visible)
        for k, v in car_labels(model, pose, cam_pose, K, W, H, visible, solo).items():
            rows[k].append(v)
        rows["model_id"].append(mid)
        rows["paint_rgb"].append(np.round(np.asarray(paint) * 255))
    return rows


def _finish(rng: np.random.Generator, cfg: RenderConfig, color: np.ndarray, seg: np.ndarray,
            objects: list[tuple[CarModel, np.ndarray]], cam_pose: np.ndarray, K: np.ndarray, lighting,
            background: Callable[[np.random.Generator, int, int], np.ndarray], rows: dict[str, list]) -> SceneSample:
    """Shadows, haze, the background, photometric interference; the label rows as typed columns."""
    H, W = seg.shape
    shadow = ground_shadow(objects, cam_pose, K, W, H, lighting) if cfg.shadows and objects else None
    haze = float(rng.uniform(*cfg.haze)) if cfg.haze[1] > 0 else 0.0
    image = composite(color, seg >= 0, background(rng, H, W), shadow=shadow, haze=haze)
    if cfg.interference.enabled:
        image = apply_photometric(image, rng, cfg.interference)
    columns = {k: np.asarray(v, dtype=SCENE_CAR_FIELDS[k][0]).reshape((len(v), *SCENE_CAR_FIELDS[k][1]))
               for k, v in rows.items()}
    return SceneSample(image=image, K=K.astype(np.float32), cars=columns)


def car_labels(model: CarModel, pose: np.ndarray, cam_pose: np.ndarray, K: np.ndarray, W: int, H: int,
               visible_mask: np.ndarray, solo_mask: np.ndarray) -> dict:
    """KITTI-like labels of one car placed at ``pose`` (car-to-world) seen from ``cam_pose``
    (camera-to-world, OpenGL): boxes, azimuth/elevation/distance along the viewing ray, 3-D location,
    rotation_y, visible fraction and truncation. Shared by scenes and drives (training.render.drive)
    so every synthetic label is computed one way. ``visible_mask`` is the car's pixels in the full
    render (occlusion included), ``solo_mask`` its pixels rendered alone. Three boxes: ``bbox`` the
    visible pixels, ``bbox_amodal`` the whole silhouette cut by the frame (a hidden car boxed whole,
    as KITTI labels it), ``bbox_full`` the projected 3-D box (not cut)."""
    ext = model.extents
    world_to_cam = np.linalg.inv(cam_pose)
    cam_in_car = np.linalg.inv(pose) @ cam_pose[:, 3]
    az, el, dist = view_from_camera_position(cam_in_car[:3], (0.0, 0.0, ext[2] / 2))
    corners_cam = gl_to_kitti((world_to_cam @ (pose @ _box_corners(model).T)).T[:, :3])
    full = _projected_box(K, corners_cam)
    box = mask_box(visible_mask)
    solo_box = mask_box(solo_mask)
    solo_px = int(solo_mask.sum())
    full_area = max((full[2] - full[0]) * (full[3] - full[1]), 1e-6)
    clipped = np.clip(full, [0, 0, 0, 0], [W, H, W, H])
    bottom = gl_to_kitti((world_to_cam @ pose @ np.array([0.0, 0.0, 0.0, 1.0]))[None, :3])[0]
    front_cam = gl_to_kitti((world_to_cam[:3, :3] @ pose[:3, :3] @ np.array([1.0, 0.0, 0.0]))[None])[0]
    return {
        "bbox": box if box is not None else np.zeros(4),
        "bbox_full": full,
        "bbox_amodal": solo_box if solo_box is not None else np.zeros(4),
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


def _projected_box(K: np.ndarray, corners_cam: np.ndarray) -> np.ndarray:
    """Box of the projected 3-D bounding box (corners behind the camera are clamped to z>=0.1)."""
    pts = corners_cam.copy()
    pts[:, 2] = np.maximum(pts[:, 2], 0.1)
    uv = project(K, pts)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
