"""Tracker tests: stable ids for moving cars, new ids for new cars, circular smoothing across the
0/360 wrap, and a genuine front/rear flip followed instead of averaged."""

from __future__ import annotations

import numpy as np
import pytest

from carpose.convention import angular_error
from carpose.results import CarPoseResult
from carpose.track import AzimuthFilter, IouTracker, greedy_match, iou_matrix


def car(box, az: float = 0.0, conf: float = 0.9) -> CarPoseResult:
    return CarPoseResult(box_xyxy=np.asarray(box, dtype=np.float64), score=0.8, class_id=2, class_name="car",
                         azimuth_deg=az, azimuth_confidence=conf, crop_size=128)


def test_iou_matrix_matches_scalar_formula():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [100, 100, 110, 120]], float)
    b = np.array([[0, 0, 10, 10], [0, 5, 10, 15]], float)
    m = iou_matrix(a, b)
    assert m.shape == (3, 2)
    assert m[0, 0] == pytest.approx(1.0)
    assert m[0, 1] == pytest.approx(50 / 150)
    assert m[1, 0] == pytest.approx(25 / 175)
    assert np.all(m[2] == 0)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 2)


def test_greedy_match_takes_best_pairs_first():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(greedy_match(iou, 0.3)) == [(0, 0)]  # row 1's only good partner was taken; 0.1 < 0.3
    assert sorted(greedy_match(iou, 0.05)) == [(0, 0), (1, 1)]
    assert greedy_match(np.zeros((0, 3)), 0.3) == []


def test_ids_stable_for_moving_cars_and_new_id_for_new_car():
    tr = IouTracker(iou_threshold=0.3, max_age=2)
    ids_a, ids_b = set(), set()
    for t in range(10):
        a = car([100 + 5 * t, 100, 200 + 5 * t, 160])  # drives right 5 px/frame
        b = car([400, 300 - 4 * t, 480, 360 - 4 * t])  # moves up
        frame = [a, b] if t % 2 == 0 else [b, a]  # detector order must not matter
        out = tr.update(frame)
        assert [o.box_xyxy.tolist() for o in out] == [f.box_xyxy.tolist() for f in frame]  # input order kept
        by_box = {tuple(o.box_xyxy): o.track_id for o in out}
        ids_a.add(by_box[tuple(a.box_xyxy)])
        ids_b.add(by_box[tuple(b.box_xyxy)])
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b

    out = tr.update([car([145, 100, 245, 160]), car([600, 50, 700, 120])])  # a continues, a new car appears
    assert out[0].track_id in ids_a
    assert out[1].track_id not in ids_a | ids_b and out[1].track_id >= 0


def test_track_survives_short_gap_then_expires():
    tr = IouTracker(max_age=2)
    (first,) = tr.update([car([0, 0, 50, 50])])
    tr.update([])
    tr.update([])
    (again,) = tr.update([car([2, 0, 52, 50])])  # unseen for 2 frames: same id
    assert again.track_id == first.track_id
    for _ in range(3):
        tr.update([])
    (later,) = tr.update([car([2, 0, 52, 50])])  # unseen for 3 > max_age frames: new id
    assert later.track_id != first.track_id


def test_inputs_not_modified_and_reset():
    tr = IouTracker()
    c = car([0, 0, 10, 10], az=10.0)
    out = tr.update([c])
    assert c.track_id == -1 and out[0] is not c
    tr.reset()
    assert tr.update([car([300, 300, 310, 310])])[0].track_id == 0


def test_smoothing_reduces_noise_across_the_wrap():
    rng = np.random.default_rng(0)
    truth = 0.0
    raw = truth + rng.uniform(-5.0, 5.0, 60)  # 355..5 deg: a naive mean would land near 180
    raw = np.mod(raw, 360.0)
    tr = IouTracker(alpha=0.3)
    smoothed = np.array([tr.update([car([0, 0, 100, 60], az=float(a))])[0].azimuth_deg for a in raw])
    assert np.all((smoothed >= 0) & (smoothed < 360))
    err_raw = angular_error(raw[10:], truth)
    err_smooth = angular_error(smoothed[10:], truth)
    assert float(np.max(err_smooth)) < 5.0  # never pulled towards 180 by the wrap
    assert float(np.sqrt(np.mean(err_smooth**2))) < 0.6 * float(np.sqrt(np.mean(err_raw**2)))


def test_low_confidence_measurements_move_the_estimate_less():
    f = AzimuthFilter(alpha=0.5)
    f.update(0.0, 0.9)
    az_low, _ = f.update(60.0, 0.05)
    g = AzimuthFilter(alpha=0.5)
    g.update(0.0, 0.9)
    az_high, _ = g.update(60.0, 0.9)
    assert 0.0 < az_low < az_high < 60.0


def test_persistent_flip_is_followed_single_outlier_is_not():
    tr = IouTracker(alpha=0.3, flip_threshold_deg=90.0, flip_frames=2)
    box = [0, 0, 120, 60]
    for _ in range(10):
        tr.update([car(box, az=10.0)])
    (o,) = tr.update([car(box, az=190.0)])  # a single front/rear confusion...
    assert angular_error(o.azimuth_deg, 10.0) < 1.0  # ...is held back, not averaged in
    (o,) = tr.update([car(box, az=10.0)])
    assert angular_error(o.azimuth_deg, 10.0) < 1.0

    outs = [tr.update([car(box, az=190.0)])[0].azimuth_deg for _ in range(3)]  # the car really turned
    assert angular_error(outs[1], 190.0) < 1.0  # followed on the 2nd frame of the flip
    assert angular_error(outs[2], 190.0) < 1.0
    assert all(min(angular_error(a, 10.0), angular_error(a, 190.0)) < 1.0 for a in outs)  # never sideways


def test_smoothed_confidence_reflects_agreement():
    f = AzimuthFilter(alpha=0.5)
    for _ in range(5):
        _, c_steady = f.update(90.0, 0.8)
    assert c_steady == pytest.approx(0.8, abs=1e-6)
    _, c_after = f.update(150.0, 0.8)  # 60 deg away: below the flip threshold, averaged in
    assert c_after < c_steady


def test_smooth_false_only_assigns_ids():
    tr = IouTracker(smooth=False)
    tr.update([car([0, 0, 10, 10], az=0.0)])
    (o,) = tr.update([car([0, 0, 10, 10], az=40.0, conf=0.3)])
    assert o.azimuth_deg == 40.0 and o.azimuth_confidence == 0.3 and o.track_id == 0


def test_bad_parameters():
    with pytest.raises(ValueError):
        IouTracker(alpha=0.0)
    with pytest.raises(ValueError):
        IouTracker(iou_threshold=0.0)
    with pytest.raises(ValueError):
        IouTracker(flip_frames=0)
