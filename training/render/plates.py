"""Number plates for car meshes that have none (ApolloCar3D's one-piece scans).

Why: real cars carry a bright plate at both ends, and most of our meshes carry none; the renders'
only bright feature low at an end was the clear head lamps at the front. On real KITTI frames the
pose model read clear rear views (plate, tail lamps, rear window) as fronts (docs/car_ends.md,
docs/real_eval.md). A plate at both ends takes that shortcut away.

A plate is a thin box of a common size (EU 520 x 110 mm, US 305 x 152 mm), placed where a ray along
the car's axis at bumper height first meets the body, with a few dark "characters" on it. Its
material (``plate`` role: mostly white, sometimes yellow) comes with each sample's look.
"""

from __future__ import annotations

import hashlib

import numpy as np
import trimesh

#: Plate sizes (width, height) in metres.
PLATE_SIZES = ((0.52, 0.11), (0.305, 0.152))
#: Plate centre heights as fractions of the car's height: front bumper, rear boot lid / bumper.
FRONT_Z, REAR_Z = 0.30, 0.42
#: How far from the car's end (fraction of its length) the ray may first hit the body.
MAX_INSET = 0.15
PLATE_DEPTH = 0.012
PLATE_ROLE, TEXT_ROLE = "plate", "plate_text"


def _seed(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)


def _axis_hits(mesh: trimesh.Trimesh, z: float) -> np.ndarray:
    """x of every face the line y = 0, height ``z``, parallel to X crosses (barycentric test in the
    y-z plane, all faces at once: no ray-tracing library needed)."""
    tri = np.asarray(mesh.triangles, np.float64)  # (F, 3, 3)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1 = (b - a)[:, 1:], (c - a)[:, 1:]
    p = np.array([0.0, z]) - a[:, 1:]
    den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    u = (p[:, 0] * v1[:, 1] - p[:, 1] * v1[:, 0]) / den
    v = (v0[:, 0] * p[:, 1] - v0[:, 1] * p[:, 0]) / den
    inside = ok & (u >= 0) & (v >= 0) & (u + v <= 1)
    return (a[:, 0] + u * (b - a)[:, 0] + v * (c - a)[:, 0])[inside]


def _end_x(mesh: trimesh.Trimesh, z: float, sign: float) -> float | None:
    """x where the body first meets a ray from beyond the ``sign`` end along -sign*X at height ``z``, y = 0."""
    lo, hi = mesh.bounds
    hits = _axis_hits(mesh, z)
    if not len(hits):
        return None
    x = float(hits.max() if sign > 0 else hits.min())
    length = hi[0] - lo[0]
    end = hi[0] if sign > 0 else lo[0]
    return x if abs(end - x) <= MAX_INSET * length else None


def plate_parts(mesh: trimesh.Trimesh, name: str) -> list[tuple[str, trimesh.Trimesh]]:
    """(role, mesh) of a plate and its characters at each end of ``mesh`` (car frame, +X front) where
    the body is found; the size is fixed per model name (a car keeps its plates in every render)."""
    rng = np.random.default_rng(_seed(name))
    w, h = PLATE_SIZES[int(rng.integers(len(PLATE_SIZES)))]
    height = float(mesh.bounds[1][2] - mesh.bounds[0][2])
    out = []
    for sign, zf in ((1.0, FRONT_Z), (-1.0, REAR_Z)):
        z = float(mesh.bounds[0][2]) + zf * height
        x = _end_x(mesh, z, sign)
        if x is None:
            continue
        cx = x + sign * PLATE_DEPTH / 2
        plate = trimesh.creation.box((PLATE_DEPTH, w, h))
        plate.apply_translation((cx, 0.0, z))
        out.append((PLATE_ROLE, plate))
        n = int(rng.integers(5, 8))
        cw = 0.8 * w / n
        for k in range(n):  # characters: dark blocks a hair in front of the plate
            ch = trimesh.creation.box((0.004, 0.6 * cw, 0.55 * h))
            ch.apply_translation((cx + sign * (PLATE_DEPTH / 2 + 0.002), -0.4 * w + (k + 0.5) * cw, z))
            out.append((TEXT_ROLE, ch))
    return out
