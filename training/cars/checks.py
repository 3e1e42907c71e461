"""Geometric sanity checks of a normalised car: does its front really point along +X?

Why a geometric check beside the eye check: the registry's axes were confirmed on contact sheets
(docs/car_sources/), but a test must catch a registry edit or a new model that flips a car. The cue
used is the height of the two ends: 8-20 % of the length in from each bumper, a car's REAR (boot
lid, hatch or tailgate) stands higher than its FRONT (the bonnet). Measured on the 4 ShapeNet and
all 79 ApolloCar3D cars it holds with a margin of at least +0.08 of the car's height; a car loaded
back to front gives a negative difference (seen on gazebo and pgdrive before their axes were set).
It is NOT reliable for stylised cars with flat ends (kenney sedan -0.03 and police -0.05 while the
eye check shows them the right way round), so those rely on the sheets alone.
"""

from __future__ import annotations

import numpy as np

from training.cars.model import CarModel

END_BAND = (0.30, 0.42)  # distance from the centre, as a fraction of the length: 8-20 % in from each end


def end_heights(model: CarModel) -> tuple[float, float]:
    """(front, rear): the highest point near each end, as a fraction of the car's height."""
    v = np.concatenate([np.asarray(p.mesh.vertices) for p in model.parts])
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
