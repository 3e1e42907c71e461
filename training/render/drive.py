"""A synthetic drive: a camera moving along a gently curving road with a few scripted cars.

Why: single scenes (training.render.scenes) test a frame; a replay through the ROS node needs a
*sequence* in which every car's azimuth changes smoothly, as in a real drive, so that drops,
latency and temporal behaviour mean something. Geometry and labels are the scenes' own
(``car_labels``, ``car_pose_world``), so a drive frame is labelled exactly like a scene.

Road frame: ``s`` metres along the ego lane's centre line (a left curve of ``curve_radius_m``, or
straight), ``d`` metres to its left. Lanes: ego d = 0, a second lane in our direction at d = -3.3, the
oncoming lane at d = +3.5, a parking strip at d = -6.3. The camera drives at ``ego_speed_mps`` in
the ego lane. Scripted cars (the first ``cars`` of these, 3-6), timed relative to the drive's
length T so every event happens on screen whatever ``frames``/``fps`` are:

0. ``lead``: ahead in our lane, a little slower (rear view, ~180 deg);
1. ``oncoming``: in the oncoming lane, passes us at 0.8 T or 3.5 s (front view turning to its left side);
2. ``turning``: comes out of a side street on the right and turns right through 90 deg into the
   second lane (front-left to rear-left view);
3. ``parked``: on the parking strip, facing us, which we pass (front to right side);
4. ``crossing``: crosses the road far ahead, beyond the cars of our road (side views);
5. ``lead2``: a second car ahead in our lane.

Deterministic in ``seed`` (car models, paints, lighting, small jitter of speeds and offsets): poses,
labels and backgrounds exactly; rendered cars up to a few pixels per frame, because pyrender draws
the parts of one car (which share its pose) in set order, so coplanar parts such as lights on the
body can z-fight differently from run to run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from carpose.convention import look_at_pose
from training.cars.model import CarModel
from training.render.backgrounds import composite, smooth_noise
from training.render.renderer import CarRenderer, Lighting
from training.render.sampling import RenderConfig, sample_lighting, sample_paint
from training.render.scenes import car_labels, car_pose_world, gl_to_kitti

ROLES = ("lead", "oncoming", "turning", "parked", "crossing", "lead2")
EGO_LANE, RIGHT_LANE, ONCOMING_LANE, PARKING = 0.0, -3.3, 3.5, -6.3
ROAD_LEFT, ROAD_RIGHT = 5.3, -8.0  # road surface edges (d)
TURN_RADIUS_M = 7.0


@dataclass(frozen=True)
class DriveConfig:
    frames: int = 60
    fps: float = 10.0
    width: int = 640
    height: int = 480
    hfov_deg: float = 60.0  # the node's default camera_hfov_deg
    ego_speed_mps: float = 10.0
    curve_radius_m: float = 300.0  # > 0 bends left, < 0 right, 0 = straight
    camera_height_m: float = 1.5
    pitch_deg: float = 2.0  # downwards
    cars: int = 5  # 3..6 scripted cars (ROLES, in order)
    seed: int = 0
    # Ground truth too hard to be fair (KITTI's DontCare idea): matched predictions there are ignored.
    min_box_frac: float = 0.03  # box lower than this fraction of the image height
    min_visible: float = 0.25  # less than this fraction of the car visible (occlusion)
    max_truncation: float = 0.5  # more than this fraction of the 3-D box outside the image

    def __post_init__(self) -> None:
        if self.frames < 1 or self.fps <= 0:
            raise ValueError(f"need frames >= 1 and fps > 0, got {self.frames}, {self.fps}")
        if not 3 <= self.cars <= len(ROLES):
            raise ValueError(f"cars must be in 3..{len(ROLES)}, got {self.cars}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image must be at least 16x16, got {self.width}x{self.height}")

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


class Road:
    """Centre line of the ego lane: a circular arc (or a straight line) starting at the origin
    heading along world +X."""

    def __init__(self, radius_m: float) -> None:
        self.radius = float(radius_m)

    def heading(self, s: float) -> float:
        """Direction of the lane at ``s`` (radians, counter-clockwise from world +X)."""
        return s / self.radius if self.radius else 0.0

    def point(self, s: float, d: float) -> np.ndarray:
        if not self.radius:
            return np.array([s, d])
        psi = s / self.radius
        return np.array([self.radius * math.sin(psi) - d * math.sin(psi),
                         self.radius * (1.0 - math.cos(psi)) + d * math.cos(psi)])


@dataclass
class Actor:
    role: str
    track_id: int
    model: CarModel
    paint: tuple[float, float, float]
    state: Callable[[float], tuple[float, float, float]]  # t -> (s, d, heading relative to the lane, deg)


@dataclass
class DriveFrame:
    index: int
    time_s: float
    image_bgr: np.ndarray  # H x W x 3 uint8, BGR like a ROS bgr8 camera
    K: np.ndarray  # 3x3
    cars: list[dict] = field(default_factory=list)  # visible cars: car_labels + track_id, role, ignore, centre_cam


def _scripts(cfg: DriveConfig, rng: np.random.Generator
             ) -> tuple[list[Callable[[float], tuple[float, float, float]]], dict[str, float]]:
    """The six trajectories, in ROLES order, with small seeded jitter, and where the side street
    and the crossing street are (s)."""
    T, v = cfg.duration_s, cfg.ego_speed_mps
    jit = lambda a: float(rng.uniform(-a, a))  # noqa: E731
    lead_s0, lead_v, lead_d = 14.0 + jit(2.0), v - min(1.0, 6.0 / T), jit(0.2)
    t_pass = min(0.8 * T, 3.5)
    onc_v = 9.0 * (1.0 + jit(0.1))
    onc_s0, onc_d = (v + onc_v) * t_pass, ONCOMING_LANE + jit(0.2)
    r = TURN_RADIUS_M
    sj = 0.5 * v * T + 25.0 + jit(2.0)  # the side street's centre line
    t0, dur = 0.15 * T, 0.6 * T
    u = (math.pi / 2.0 * r) / dur
    park_s, park_yaw = sj - 12.0 + jit(1.0), 180.0 + jit(8.0)
    lead2_gap = 22.0 + jit(3.0)
    # The crossing street lies beyond where every car of our road will be at the end of the drive.
    beyond = lead_s0 + lead_v * T + (lead2_gap if cfg.cars >= 6 else 0.0) + 14.0
    cross_s, cross_v = max(v * T + 30.0, beyond) + jit(3.0), 6.0 * (1.0 + jit(0.1))

    def lead(t: float) -> tuple[float, float, float]:
        return lead_s0 + lead_v * t, lead_d, 0.0

    def oncoming(t: float) -> tuple[float, float, float]:
        return onc_s0 - onc_v * t, onc_d, 180.0

    def turning(t: float) -> tuple[float, float, float]:
        if t < t0:  # straight towards the road, heading +90 (to the left)
            return sj, RIGHT_LANE - r - (t0 - t) * u, 90.0
        if t < t0 + dur:  # clockwise quarter circle about (sj + r, lane - r): heading 90 -> 0
            th = math.radians(180.0 - 90.0 * (t - t0) / dur)
            return sj + r + r * math.cos(th), RIGHT_LANE - r + r * math.sin(th), math.degrees(th) - 90.0
        return sj + r + u * (t - t0 - dur), RIGHT_LANE, 0.0

    def parked(t: float) -> tuple[float, float, float]:
        return park_s, PARKING, park_yaw

    def crossing(t: float) -> tuple[float, float, float]:
        return cross_s, cross_v * (t - 0.5 * T), 90.0

    def lead2(t: float) -> tuple[float, float, float]:
        return lead_s0 + lead2_gap + lead_v * t, lead_d, 0.0

    return [lead, oncoming, turning, parked, crossing, lead2], {"side_street": sj, "crossing": cross_s}


class Drive:
    """The planned drive: road, actors, lighting, camera; rendering is :meth:`frames`."""

    def __init__(self, cfg: DriveConfig, models: list[CarModel]) -> None:
        if not models:
            raise ValueError("a drive needs at least one car model")
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 2024])
        self.road = Road(cfg.curve_radius_m)
        scripts, self.landmarks = _scripts(cfg, rng)
        picks = rng.permutation(len(models))
        self.actors = [Actor(ROLES[i], i, models[int(picks[i % len(picks)])], sample_paint(rng), scripts[i])
                       for i in range(cfg.cars)]
        self.lighting: Lighting = sample_lighting(rng, RenderConfig())
        f = cfg.width / 2.0 / math.tan(math.radians(cfg.hfov_deg) / 2.0)
        self.K = np.array([[f, 0.0, cfg.width / 2.0], [0.0, f, cfg.height / 2.0], [0.0, 0.0, 1.0]])
        self._texture = smooth_noise(rng, cfg.height, cfg.width, octaves=5)

    def time(self, index: int) -> float:
        return index / self.cfg.fps

    def camera_pose(self, t: float) -> np.ndarray:
        """Camera-to-world (OpenGL) at time ``t``: in the ego lane, looking along it, pitched down."""
        s = self.cfg.ego_speed_mps * t
        psi, p = self.road.heading(s), math.radians(self.cfg.pitch_deg)
        eye = np.array([*self.road.point(s, EGO_LANE), self.cfg.camera_height_m])
        forward = np.array([math.cos(psi) * math.cos(p), math.sin(psi) * math.cos(p), -math.sin(p)])
        return look_at_pose(eye, eye + forward)

    def car_pose(self, actor: Actor, t: float) -> np.ndarray:
        s, d, rel = actor.state(t)
        x, y = self.road.point(s, d)
        return car_pose_world(float(x), float(y), math.degrees(self.road.heading(s)) + rel)

    # ---- background -------------------------------------------------------------------------------
    def _project(self, world_to_cam: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cam = gl_to_kitti((world_to_cam @ np.c_[pts, np.ones(len(pts))].T).T[:, :3])
        ok = cam[:, 2] > 0.5
        uv = (self.K @ cam.T).T
        return uv[:, :2] / np.maximum(uv[:, 2:3], 1e-6), ok

    def _strip(self, world_to_cam: np.ndarray, s: np.ndarray, d0: float, d1: float) -> np.ndarray | None:
        """Image polygon of the road band d0..d1 over the stations ``s`` (in front of the camera)."""
        left = np.array([[*self.road.point(float(x), d1), 0.0] for x in s])
        right = np.array([[*self.road.point(float(x), d0), 0.0] for x in s])
        (ul, okl), (ur, okr) = self._project(world_to_cam, left), self._project(world_to_cam, right)
        ok = okl & okr
        if ok.sum() < 2:
            return None
        return np.round(np.r_[ul[ok], ur[ok][::-1]] * 8).astype(np.int32)  # 3 fractional bits

    def background(self, t: float, cam_pose: np.ndarray) -> np.ndarray:
        """Sky, ground and the road with its markings, drawn in perspective (RGB)."""
        cfg = self.cfg
        W, H = cfg.width, cfg.height
        world_to_cam = np.linalg.inv(cam_pose)
        f, cy = self.K[0, 0], self.K[1, 2]
        horizon = int(np.clip(cy - f * math.tan(math.radians(cfg.pitch_deg)), 0, H))
        img = np.empty((H, W, 3), np.float32)
        sky_t = np.linspace(0.0, 1.0, max(horizon, 1))[:, None, None]
        img[:horizon] = ((1 - sky_t) * np.array([110, 160, 225]) + sky_t * np.array([205, 220, 235]))[:horizon]
        img[horizon:] = np.array([96, 112, 78])  # verge
        img[horizon:] *= (0.85 + 0.3 * self._texture[horizon:, :, None])
        img = img.clip(0, 255).astype(np.uint8)
        s_ego = cfg.ego_speed_mps * t
        near = s_ego + 1.0 + np.geomspace(0.1, 250.0, 160)
        cv = lambda poly, col: cv2.fillPoly(img, [poly], col, cv2.LINE_AA, shift=3)  # noqa: E731
        for d0, d1, col in ((ROAD_RIGHT, ROAD_LEFT, (78, 80, 84)), (ROAD_RIGHT, -4.95, (92, 92, 96))):
            poly = self._strip(world_to_cam, near, d0, d1)
            if poly is not None:
                cv(poly, col)
        sj, sx = self.landmarks["side_street"], self.landmarks["crossing"]
        for s0, s1, d0, d1 in ((sj - 4.0, sj + TURN_RADIUS_M + 4.0, -40.0, ROAD_RIGHT),
                               (sx - 4.0, sx + 4.0, -60.0, 60.0)):
            pts = []
            for s, d in ((s0, d0), (s1, d0), (s1, d1), (s0, d1)):
                pts.append([*self.road.point(s, d), 0.0])
            uv, ok = self._project(world_to_cam, np.array(pts))
            if ok.all():
                cv(np.round(uv * 8).astype(np.int32), (78, 80, 84))
        for d, dashed, col in ((-4.95, False, (230, 230, 225)), (ROAD_LEFT - 0.1, False, (230, 230, 225)),
                               (1.75, False, (235, 200, 60)), (-1.65, True, (230, 230, 225))):
            if dashed:  # 3 m dashes every 9 m, fixed to the road so they move past
                first = math.floor((s_ego + 1.0) / 9.0) * 9.0
                for k in range(25):
                    a = first + 9.0 * k
                    poly = self._strip(world_to_cam, np.linspace(max(a, s_ego + 1.0), a + 3.0, 4), d - 0.07, d + 0.07)
                    if poly is not None:
                        cv(poly, col)
            else:
                poly = self._strip(world_to_cam, near, d - 0.07, d + 0.07)
                if poly is not None:
                    cv(poly, col)
        return img

    # ---- rendering --------------------------------------------------------------------------------
    def render_frame(self, renderer: CarRenderer, index: int) -> DriveFrame:
        cfg = self.cfg
        W, H = cfg.width, cfg.height
        t = self.time(index)
        cam_pose = self.camera_pose(t)
        poses = [self.car_pose(a, t) for a in self.actors]
        cars = [(a.model, p) for a, p in zip(self.actors, poses, strict=True)]
        paints = [a.paint for a in self.actors]
        res, seg = renderer.render(cars, cam_pose, self.K, W, H, self.lighting, paints=paints, segment=True)
        labels = []
        for i, (actor, pose) in enumerate(zip(self.actors, poses, strict=True)):
            mask = seg == i
            if not mask.any():
                continue
            solo, _ = renderer.render([(actor.model, pose)], cam_pose, self.K, W, H, self.lighting,
                                      paints=[actor.paint])
            lab = car_labels(actor.model, pose, cam_pose, self.K, W, H, mask, solo.mask)
            box = lab["bbox"]
            centre = np.linalg.inv(cam_pose) @ pose @ np.array([0.0, 0.0, actor.model.extents[2] / 2.0, 1.0])
            lab.update(track_id=actor.track_id, role=actor.role, model=actor.model.name,
                       centre_cam=gl_to_kitti(centre[None, :3])[0],  # 3-D box centre, optical frame
                       ignore=bool(box[3] - box[1] < cfg.min_box_frac * H or lab["visible_fraction"] < cfg.min_visible
                                   or lab["truncation"] > cfg.max_truncation))
            labels.append(lab)
        rgb = composite(res.color, seg >= 0, self.background(t, cam_pose))
        return DriveFrame(index, t, np.ascontiguousarray(rgb[:, :, ::-1]), self.K.copy(), labels)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[DriveFrame]:
        """Render frames ``start`` .. ``stop`` (default: all) with one renderer."""
        stop = self.cfg.frames if stop is None else min(stop, self.cfg.frames)
        with CarRenderer(self.cfg.width, self.cfg.height) as renderer:
            for i in range(start, stop):
                yield self.render_frame(renderer, i)


def pick_models(count: int, seed: int = 0, models_dir: str | None = None, procedural: int = 200,
                split: str = "heldout", fleet_seed: int = 0) -> list[CarModel]:
    """``count`` car models for a drive, by default from the *held-out* part of the 200-car
    procedural fleet the shipped pose model was trained on (scripts/make_pose_data.sh), so a replay
    measures cars the network never saw. Without a mesh folder only the chosen cars are generated
    (the held-out set is a function of the names alone), which takes a second instead of ten."""
    from training.cars.procedural import BODY_TYPES, generate_car
    from training.render.jobs import ModelSpec, build_models, heldout_names

    rng = np.random.default_rng([seed, 7])
    if models_dir is None and procedural > 0:
        seeds = [fleet_seed * 1_000_003 + i for i in range(procedural)]
        names = [f"proc_{BODY_TYPES[i % len(BODY_TYPES)]}_{s}" for i, s in enumerate(seeds)]
        held = heldout_names(names, 0.25) if split != "all" else set()
        keep = [i for i, n in enumerate(names) if split == "all" or (n in held) == (split == "heldout")]
        if keep:
            chosen = rng.choice(keep, size=min(count, len(keep)), replace=False)
            models = [generate_car(seeds[i], BODY_TYPES[i % len(BODY_TYPES)]) for i in sorted(chosen)]
            if all(m.name == names[i] for m, i in zip(models, sorted(chosen), strict=True)):
                return models
    models, _ = build_models(ModelSpec(models_dir=models_dir, procedural=procedural, fleet_seed=fleet_seed,
                                       split=split))
    idx = rng.choice(len(models), size=min(count, len(models)), replace=False)
    return [models[i] for i in sorted(idx)]
