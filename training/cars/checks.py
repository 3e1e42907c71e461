"""Geometric sanity checks of a normalised car: does its front really point along +X?

Why a geometric check beside the eye check: the registry's axes were confirmed on contact sheets
(docs/car_sources/), but a test must catch a registry edit or a new model that flips a car. The cue
used is the height of the two ends: 8-20 % of the length in from each bumper, a car's REAR (boot
lid, hatch or tailgate) stands higher than its FRONT (the bonnet). Measured on the 4 ShapeNet and
all 79 ApolloCar3D cars it holds with a margin of at least +0.08 of the car's height; a car loaded
back to front gives a negative difference (seen on gazebo and pgdrive before their axes were set).
It is NOT reliable for stylised cars with flat ends (kenney sedan -0.03 and police -0.05 while the
eye check shows them the right way round), so those rely on the sheets alone.

Heights come from points sampled evenly over the surface, not from the vertices: a coarse mesh can
have no vertex in an end band's roof (gazebo_suv, a Hummer, passed the vertex check back to front,
+0.14; on its surface it reads -0.28 and +0.28 when turned round; docs/car_ends.md).
"""

from __future__ import annotations

import numpy as np

from training.cars.model import CarModel

END_BAND = (0.30, 0.42)  # distance from the centre, as a fraction of the length: 8-20 % in from each end


#: Surface samples per model for the end check (deterministic: seeded).
SURFACE_SAMPLES = 60000


def surface_points(model: CarModel, count: int = SURFACE_SAMPLES) -> np.ndarray:
    """Points spread evenly over the car's surface (all parts, by area), the same on every call."""
    import trimesh

    areas = np.array([float(p.mesh.area) for p in model.parts])
    counts = np.maximum(1, np.round(count * areas / max(areas.sum(), 1e-12)).astype(int))
    pts = [trimesh.sample.sample_surface(p.mesh, int(n), seed=k)[0] for k, (p, n) in enumerate(zip(model.parts, counts,
                                                                                                   strict=True))]
    return np.concatenate(pts)


def end_heights(model: CarModel) -> tuple[float, float]:
    """(front, rear): the highest point near each end, as a fraction of the car's height."""
    v = surface_points(model)
    length, _, height = model.extents
    x = v[:, 0] / length
    lo, hi = END_BAND

    def top(band: np.ndarray) -> float:
        return float(v[band, 2].max() / height) if band.any() else float("nan")

    return top((x > lo) & (x < hi)), top((x < -lo) & (x > -hi))


def rear_minus_front(model: CarModel) -> float:
    """Rear-end height minus front-end height (fractions of the height); > 0 for a car facing +X."""
    front, rear = end_heights(model)
    return rear - front
