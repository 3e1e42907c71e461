"""The one azimuth convention of carpose (see docs/conventions.md). Every label, metric and message
goes through this module so the convention is written down exactly once.

Car frame: metres, +X = the car's front, +Y = the car's left, +Z = up, origin at the centre of the
footprint on the ground.

azimuth_deg: direction *from the car to the camera*, measured in the car's ground plane from +X,
counter-clockwise seen from above, in [0, 360). 0 = the camera sees the car's front, 90 = its left
side, 180 = its rear, 270 = its right side.

elevation_deg: angle of the camera above the car's ground plane (0 = level, 90 = straight down).
distance_m: from the camera centre to the car-frame point the camera looks at.

KITTI's observation angle ``alpha`` (radians, [-pi, pi)) describes the same quantity with the same
sense of rotation and a zero 90 degrees away: ``azimuth_deg = degrees(alpha) - 90 (mod 360)``;
the derivation is in docs/conventions.md.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

#: Bumped whenever the meaning of any stored angle changes; written into every HDF5 file / model.
CONVENTION_VERSION = 1

#: Names of the seed project's 4 classes, in bin order (bins of 90 deg centred on 0, 90, 180, 270).
QUADRANT_NAMES = ("front", "left", "rear", "right")


def convention_mismatch(version: object, source: str) -> str | None:
    """Why ``source`` (a dataset or a model) made under another convention version cannot be used
    here, or None when it matches. Every reader of stored angles asks this one question."""
    if version == CONVENTION_VERSION:
        return None
    return (f"{source} uses azimuth convention {version}, this carpose uses {CONVENTION_VERSION}: "
            f"its angles would be misread")


def wrap_deg(angle: ArrayLike) -> np.ndarray | float:
    """Wrap degrees into [0, 360). Scalars stay Python floats (handy in labels and messages)."""
    a = np.mod(np.asarray(angle, dtype=np.float64), 360.0)
    # np.mod(-1e-17, 360) == 360.0 in floating point; fold that back to 0.
    a = np.where(a >= 360.0, 0.0, a)
    return float(a) if a.ndim == 0 else a


def wrap_deg_signed(angle: ArrayLike) -> np.ndarray | float:
    """Wrap degrees into [-180, 180)."""
    a = np.mod(np.asarray(angle, dtype=np.float64) + 180.0, 360.0) - 180.0
    a = np.where(a >= 180.0, -180.0, a)
    return float(a) if a.ndim == 0 else a


def angular_difference(a_deg: ArrayLike, b_deg: ArrayLike) -> np.ndarray | float:
    """Signed smallest difference a - b in degrees, in [-180, 180)."""
    return wrap_deg_signed(np.asarray(a_deg, dtype=np.float64) - np.asarray(b_deg, dtype=np.float64))


def angular_error(a_deg: ArrayLike, b_deg: ArrayLike) -> np.ndarray | float:
    """Absolute smallest difference in degrees, in [0, 180]: the error every metric uses."""
    d = np.abs(np.asarray(angular_difference(a_deg, b_deg)))
    return float(d) if d.ndim == 0 else d


def circular_mean(angles_deg: ArrayLike, weights: ArrayLike | None = None, axis: int = -1
                  ) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Weighted circular mean and mean resultant length R in [0, 1] along ``axis``.

    R is 1 when all the weight sits on one angle and 0 when it cancels out, which is why the pose
    head reports it as its confidence. An undefined mean (R == 0) is returned as 0 deg.
    """
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    w = np.ones_like(a) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), a.shape)
    total = np.sum(w, axis=axis)
    if np.any(total <= 0):
        raise ValueError("circular_mean: weights must sum to a positive value")
    s = np.sum(w * np.sin(a), axis=axis) / total
    c = np.sum(w * np.cos(a), axis=axis) / total
    mean = wrap_deg(np.rad2deg(np.arctan2(s, c)))
    r = np.hypot(s, c)
    if np.ndim(r) == 0:
        return float(mean), float(r)
    return mean, r


def bin_width(num_bins: int) -> float:
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    return 360.0 / num_bins


def bin_centers(num_bins: int) -> np.ndarray:
    """Centres of ``num_bins`` equal bins; bin 0 is centred on 0 deg (covers [-w/2, w/2))."""
    return np.arange(num_bins, dtype=np.float64) * bin_width(num_bins)


def azimuth_to_bin(azimuth_deg: ArrayLike, num_bins: int) -> np.ndarray | int:
    """Index of the bin whose centre is nearest; bin 0 is centred on 0 deg, so 359 deg -> bin 0."""
    w = bin_width(num_bins)
    idx = np.floor(np.asarray(wrap_deg(azimuth_deg)) / w + 0.5).astype(np.int64) % num_bins
    return int(idx) if idx.ndim == 0 else idx


def azimuth_to_quadrant(azimuth_deg: ArrayLike) -> np.ndarray | int:
    """The seed project's 4 classes: 0 front [315, 45), 1 left [45, 135), 2 rear, 3 right."""
    return azimuth_to_bin(azimuth_deg, 4)


def azimuth_from_kitti_alpha(alpha_rad: ArrayLike) -> np.ndarray | float:
    """KITTI observation angle alpha (radians) -> carpose azimuth (degrees, [0, 360)).

    alpha = -pi/2: KITTI's 'seen from behind' -> 180; alpha = +pi/2: facing the camera -> 0.
    """
    return wrap_deg(np.rad2deg(np.asarray(alpha_rad, dtype=np.float64)) - 90.0)


def kitti_alpha_from_azimuth(azimuth_deg: ArrayLike) -> np.ndarray | float:
    """carpose azimuth (degrees) -> KITTI alpha (radians, [-pi, pi))."""
    return np.deg2rad(wrap_deg_signed(np.asarray(azimuth_deg, dtype=np.float64) + 90.0))


def kitti_rotation_y(azimuth_deg: ArrayLike, x_cam: ArrayLike, z_cam: ArrayLike) -> np.ndarray | float:
    """KITTI rotation_y (car yaw about the camera's Y axis, radians in [-pi, pi)) for a car seen at
    ``azimuth_deg`` whose centre sits at (x_cam, z_cam) in the camera frame (x right, z forward).

    rotation_y = alpha + atan2(x, z): the observation angle plus the angle of the viewing ray.
    """
    ray = np.arctan2(np.asarray(x_cam, dtype=np.float64), np.asarray(z_cam, dtype=np.float64))
    ry = np.asarray(kitti_alpha_from_azimuth(azimuth_deg)) + ray
    ry = np.mod(ry + math.pi, 2 * math.pi) - math.pi
    return float(ry) if ry.ndim == 0 else ry


def camera_position(azimuth_deg: float, elevation_deg: float, distance_m: float,
                    target: ArrayLike = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Camera centre in the car frame for a view at (azimuth, elevation, distance) onto ``target``."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    offset = distance_m * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    return np.asarray(target, dtype=np.float64) + offset


def view_from_camera_position(camera_xyz: ArrayLike, target: ArrayLike = (0.0, 0.0, 0.0)
                              ) -> tuple[float, float, float]:
    """Inverse of :func:`camera_position`: (azimuth_deg, elevation_deg, distance_m)."""
    v = np.asarray(camera_xyz, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    dist = float(np.linalg.norm(v))
    if dist == 0.0:
        raise ValueError("camera sits on the target: the view is undefined")
    az = wrap_deg(math.degrees(math.atan2(v[1], v[0])))
    el = math.degrees(math.asin(np.clip(v[2] / dist, -1.0, 1.0)))
    return float(az), el, dist


def flip_azimuth(azimuth_deg: ArrayLike) -> np.ndarray | float:
    """Label of a horizontally mirrored image: the left side becomes the right side, a -> 360 - a."""
    return wrap_deg(-np.asarray(azimuth_deg, dtype=np.float64))


def look_at_pose(camera_xyz: ArrayLike, target: ArrayLike, roll_deg: float = 0.0,
                 up: ArrayLike = (0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 camera-to-world pose in the OpenGL camera convention (camera looks along its -Z, +Y up),
    as pyrender expects. ``roll_deg`` turns the camera about its viewing axis (counter-clockwise in
    the image for positive values), which models a tilted camera without changing the azimuth label.
    """
    eye = np.asarray(camera_xyz, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight down: any horizontal right vector will do
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    r = math.radians(roll_deg)
    right, cam_up = (math.cos(r) * right + math.sin(r) * cam_up,
                     -math.sin(r) * right + math.cos(r) * cam_up)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, cam_up, -forward, eye
    return pose
