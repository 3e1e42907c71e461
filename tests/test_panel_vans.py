"""Procedural panel vans (issue 22, round 10): KITTI's delivery vans, which the default fleet lacks.

Real meshes and real renders; needs no ../shared."""

from __future__ import annotations

import numpy as np
import pytest

from training.cars.procedural import BODY_TYPES, generate_car, generate_fleet, generate_panel_vans
from training.render.jobs import ModelSpec, build_models


def _glass_x(model) -> np.ndarray:
    """x (car frame, +x front) of every glass vertex that faces sideways: the side windows."""
    xs = []
    for p in model.parts:
        if p.role != "glass":
            continue
        v = p.mesh.vertices
        if np.ptp(v[:, 1]) < 0.1:  # a thin plate across y is a side window; screens span the width
            xs.append(v[:, 0])
    return np.concatenate(xs) if xs else np.zeros(0)


def test_panel_vans_are_tall_long_and_blind_behind_the_cab():
    vans = generate_panel_vans(12, seed=0)
    assert len({v.name for v in vans}) == 12 and all(v.name.startswith("proc_panel_van_") for v in vans)
    cars = generate_fleet(10, seed=0)
    tallest_car = max(c.extents[2] for c in cars if c.meta["body_type"] != "van")
    assert all(v.extents[2] > tallest_car for v in vans)  # taller than every sedan, SUV, pickup...
    assert np.median([v.extents[0] for v in vans]) > np.median([c.extents[0] for c in cars])
    blind = 0
    for v in vans:
        lo, hi = v.bounds
        x = _glass_x(v)
        assert len(x), f"{v.name}: no side glass at all (the cab has door windows)"
        if x.min() > lo[0] + 0.5 * (hi[0] - lo[0]):  # side glass only in the front half: a panel van
            blind += 1
    assert 6 <= blind <= 12  # most are windowless behind the cab; some are glazed all along (minibuses)


def test_panel_vans_leave_the_default_fleet_as_it_was():
    # Datasets are reproduced from their seeds: adding the body type must not move any default car.
    assert "panel_van" not in BODY_TYPES
    a = generate_fleet(6, seed=2)
    b = generate_fleet(6, seed=2)
    for x, y in zip(a, b, strict=True):
        assert x.name == y.name and np.allclose(x.bounds, y.bounds)
    spec = build_models(ModelSpec(procedural=6, fleet_seed=2, panel_vans=3))[0]
    assert [m.name for m in spec[:6]] == [m.name for m in a]
    assert [m.meta["body_type"] for m in spec[6:]] == ["panel_van"] * 3
    with pytest.raises(ValueError, match="unknown body type"):
        generate_car(0, "lorry")


def test_panel_van_sheet_shows_tail_lamps_at_the_rear(tmp_path):
    """``python -m training.cars.sheet --panel-vans N``: the way to look at them; a van's red tail lamps
    face a camera at azimuth 180 and none at 0 (the normalised frame: +x front)."""
    import cv2

    from training.cars.sheet import main

    out = tmp_path / "vans.png"
    assert main(["--panel-vans", "3", "--views", "0,180", "--realistic", "--size", "64", "--out", str(out)]) == 0
    sheet = cv2.imread(str(out)).astype(int)
    assert sheet.shape == (3 * 64, 2 * 64, 3)
    tiles = sheet.reshape(3, 64, 2, 64, 3)
    for r in range(3):
        red = [int(((t[..., 2] > 90) & (t[..., 2] > 2 * t[..., 1]) & (t[..., 2] > 2 * t[..., 0])).sum())
               for t in (tiles[r, :, 0], tiles[r, :, 1])]
        assert red[0] == 0 and red[1] >= 10, red
