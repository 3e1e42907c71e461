"""Road scenes for the detector: kerb rows, lots, traffic and unlabelled negatives (real renders)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.cars.procedural import generate_fleet
from training.render.backgrounds import BackgroundSource, frame_without_cars
from training.render.negatives import KERB_KINDS, VEHICLE_KINDS, VERGE_KINDS, procedural_negatives
from training.render.scenes import ROAD_CAMERA, SceneConfig, make_scene, place_road


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(6, seed=3)


def test_negatives_cover_every_kind_and_stand_on_the_ground():
    negs = procedural_negatives(count_per_kind=2, seed=1)
    kinds = {m.meta["kind"] for m in negs}
    assert kinds == set(VEHICLE_KINDS + KERB_KINDS + VERGE_KINDS)
    for m in negs:
        lo, hi = m.bounds
        assert abs(lo[2]) < 1e-6 and hi[2] > 0.5, m.name  # on z=0, taller than a kerb
    lorry = next(m for m in negs if m.meta["kind"] == "lorry")
    assert lorry.extents[2] > 2.5 and lorry.extents[0] > 5.0  # taller and longer than any car


def test_place_road_rows_in_view_without_overlap(fleet):
    negs = procedural_negatives(2, seed=0)
    scfg = SceneConfig(layout="road", max_cars=14, negatives=4, **ROAD_CAMERA)
    half = math.radians(32.0)
    n_cars, n_negs, parked_pairs = 0, 0, 0
    for seed in range(40):
        placed = place_road(np.random.default_rng(seed), fleet, negs, scfg, half)
        cars = [p for p in placed if not p.negative]
        n_cars += len(cars)
        n_negs += len(placed) - len(cars)
        assert len(cars) <= 14
        for p in placed:
            assert p.x > 3.0 and abs(math.atan2(p.y, p.x)) < half + math.radians(4.01)
            assert p.x < scfg.distance_m[1] * 1.06
        # parked rows: neighbours one car length apart along the road, not on top of each other
        for a in cars:
            for b in cars:
                if a is not b:
                    assert math.hypot(a.x - b.x, a.y - b.y) > 2.0
            parked_pairs += sum(1 for b in cars if b is not a and abs(a.y - b.y) < 0.8 and 3.5 < abs(a.x - b.x) < 9)
    assert n_cars / 40 > 4 and n_negs > 20 and parked_pairs > 40


def test_frame_without_cars_inpaints_the_labelled_boxes():
    rng = np.random.default_rng(0)
    img = np.full((90, 160, 3), 100, np.uint8)
    img[30:60, 40:80] = 250  # a bright "car"
    out = frame_without_cars(img, np.array([[40, 30, 80, 60]]), np.random.default_rng(1), 45, 80)
    assert out.shape == (45, 80, 3)
    assert out.max() < 200  # the car is gone at any zoom / mirror
    kept = frame_without_cars(img, None, rng, 45, 80)
    assert kept.max() > 240


def test_road_scene_labels_only_cars(fleet):
    pytest.importorskip("pyrender")
    from training.render.renderer import CarRenderer
    from training.render.sampling import RenderConfig

    negs = procedural_negatives(1, seed=0)
    scfg = SceneConfig(width=320, height=180, layout="road", max_cars=6, negatives=3, **ROAD_CAMERA)
    with CarRenderer(320, 180) as r:
        for seed in range(3):
            s = make_scene(np.random.default_rng(seed), fleet, r, BackgroundSource.procedural(), RenderConfig(),
                           scfg, negs)
            n = len(s.cars["model_id"])
            assert s.image.shape == (180, 320, 3) and n >= 1
            assert all(0 <= m < len(fleet) for m in s.cars["model_id"])
            vis = s.cars["visible_fraction"]
            assert np.all((vis >= 0) & (vis <= 1.0001))
            boxes = s.cars["bbox"][vis > 0]
            assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] <= 180)


def test_amodal_box_is_the_whole_car_cut_by_the_frame(fleet):
    """A hidden car's amodal box holds its visible box and reaches behind the car in front (KITTI boxes a
    hidden car whole); a car in plain view has the same box both ways; no box leaves the frame."""
    pytest.importorskip("pyrender")
    from training.render.renderer import CarRenderer
    from training.render.sampling import RenderConfig

    scfg = SceneConfig(width=320, height=180, layout="road", max_cars=10, negatives=0, **ROAD_CAMERA)
    hidden = clear = grown = 0
    with CarRenderer(320, 180) as r:
        for seed in range(3):
            s = make_scene(np.random.default_rng(seed), fleet, r, BackgroundSource.procedural(), RenderConfig(),
                           scfg, [])
            vis, box, whole = s.cars["visible_fraction"], s.cars["bbox"], s.cars["bbox_amodal"]
            seen = vis > 0
            assert np.all(whole[seen, :2] <= box[seen, :2] + 0.5) and np.all(whole[seen, 2:] >= box[seen, 2:] - 0.5)
            assert np.all(whole[:, :2] >= 0) and np.all(whole[:, 2] <= 320) and np.all(whole[:, 3] <= 180)
            plain = vis > 0.995
            np.testing.assert_allclose(whole[plain], box[plain], atol=1.0)
            clear += int(plain.sum())
            area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
            behind = seen & (vis < 0.7)
            hidden += int(behind.sum())
            grown += int((area(whole[behind]) > 1.2 * area(box[behind])).sum())
    assert clear >= 3 and hidden >= 3 and grown >= 0.75 * hidden, (clear, hidden, grown)


def _side_on(yaw_deg: float) -> bool:
    """Within 25 deg of side-on (yaw 90 or 270)."""
    d = (yaw_deg - 90.0) % 180.0
    return d < 25.0 or d > 155.0


def test_emphasis_knobs_add_side_views_and_border_cars(fleet):
    """The knobs of the side-view / border-cut scenes (issue 22) change what is placed: a cross street
    in nearly every scene puts more cars side-on and nearer, a wide edge margin lets centres stand
    outside the field of view (cut by the border), no cross street and no lot leaves no side-on car
    that lane traffic would not turn."""
    half = math.radians(32.0)
    base = SceneConfig(layout="road", max_cars=14, **ROAD_CAMERA)
    side = SceneConfig(layout="road", max_cars=14, cross_street=0.95, cross_street_m=(6.0, 20.0),
                       parking_lot=0.8, edge_margin_deg=15.0, side_first=True, **ROAD_CAMERA)
    none = SceneConfig(layout="road", max_cars=14, cross_street=0.0, parking_lot=0.0, **ROAD_CAMERA)

    def stats(cfg):
        n_side, near_side, outside, n = 0, 0, 0, 0
        for seed in range(60):
            for p in place_road(np.random.default_rng(seed), fleet, [], cfg, half):
                n += 1
                bearing = abs(math.atan2(p.y, p.x))
                assert bearing < half + math.radians(cfg.edge_margin_deg) + 1e-6
                outside += bearing > half
                if _side_on(p.yaw):
                    n_side += 1
                    near_side += p.x < 20.5
        return n_side / n, near_side, outside

    b, s, z = stats(base), stats(side), stats(none)
    assert s[0] > b[0] + 0.1  # a larger share of side-on cars
    assert s[1] > 1.5 * b[1]  # more of them near
    assert s[2] > 2 * b[2]  # more cars whose centre is outside the view: cut by the border
    assert z[0] < 0.5 * b[0]


def test_skip_negatives_and_bad_knobs_refused(tmp_path):
    from training.render.cli import main

    for bad in (dict(cross_street=1.5), dict(parking_lot=-0.1), dict(cross_street_m=(30.0, 10.0)),
                dict(edge_margin_deg=45.0), dict(skip_negatives=("boxvan",))):
        with pytest.raises(ValueError):
            SceneConfig(layout="road", **bad)
    out = tmp_path / "s.h5"
    assert main(["scenes", "--out", str(out), "--count", "1", "--layout", "road", "--cross-street", "2",
                 "--quiet"]) == 2
    assert main(["scenes", "--out", str(out), "--count", "1", "--layout", "road", "--negatives", "2",
                 "--skip-negative", "boxvan", "--quiet"]) == 2
    assert not out.exists()


def test_skipped_negative_kinds_are_not_loaded():
    from training.render.negatives import load_negatives

    kinds = [m.meta["kind"] for m in load_negatives(count_per_kind=2, seed=0, skip=("box_van",))]
    assert "box_van" not in kinds and set(kinds) == set(VEHICLE_KINDS + KERB_KINDS + VERGE_KINDS) - {"box_van"}
    assert len(kinds) == 2 * (len(VEHICLE_KINDS + KERB_KINDS + VERGE_KINDS) - 1)
    with pytest.raises(ValueError, match="unknown negative kind"):
        load_negatives(skip=("boxvan",))
