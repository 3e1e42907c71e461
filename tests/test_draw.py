"""Drawing tests: the output is a same-shaped copy, something is drawn where the car is, and the
heading arrow points the way convention.py says (90 = front points left, 270 = right)."""

from __future__ import annotations

import numpy as np
import pytest

from carpose.draw import annotate, arrow_vector, tile_grid
from carpose.results import CarPoseResult

ARROW = (0, 0, 255)  # pure red: nothing else in these drawings is red
BOX = (0, 255, 0)


def car(box, az: float, conf: float = 0.87, track_id: int = -1) -> CarPoseResult:
    return CarPoseResult(box_xyxy=np.asarray(box, dtype=np.float64), score=0.9, class_id=2, class_name="car",
                         azimuth_deg=az, azimuth_confidence=conf, crop_size=128, track_id=track_id)


def arrow_pixels(img: np.ndarray) -> np.ndarray:
    """(x, y) of red-ish pixels (anti-aliased edges included)."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    ys, xs = np.nonzero((r > 100) & (g < 60) & (b < 60))
    return np.stack([xs, ys], axis=1)


def test_output_is_a_same_shaped_copy_with_drawing_inside_the_box():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    before = img.copy()
    out = annotate(img, [car([60, 50, 260, 190], az=123.0, track_id=3)], fps=29.7)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert np.array_equal(img, before)  # the input is untouched
    inside = np.any(out[50:191, 60:261] != img[50:191, 60:261], axis=2)
    assert inside.mean() > 0.01
    assert np.any(out[0:15, 0:60] != img[0:15, 0:60])  # frame text "1 car  29.7 fps"


def test_empty_results_and_odd_boxes_do_not_crash():
    img = np.zeros((100, 120, 3), np.uint8)
    out = annotate(img, [])
    assert out.shape == img.shape and out[:, 60:].max() == 0  # only the frame text, top-left
    weird = [car([-50, -20, 40, 30], az=10.0), car([100, 80, 400, 300], az=200.0), car([10, 10, 10, 20], az=0.0),
             car([np.nan, 0, 5, 5], az=0.0)]
    assert annotate(img, weird, frame_text=False).shape == img.shape
    with pytest.raises(ValueError):
        annotate(np.zeros((10, 10), np.uint8), [])


def test_arrow_vector_follows_the_convention():
    assert arrow_vector(90.0)[0] == pytest.approx(-1.0)  # left side seen: front points left
    assert arrow_vector(270.0)[0] == pytest.approx(1.0)
    dx0, dy0 = arrow_vector(0.0)  # front seen: towards the viewer, drawn down and shorter
    assert dx0 == pytest.approx(0.0, abs=1e-12) and 0.0 < dy0 < 1.0
    dx180, dy180 = arrow_vector(180.0)
    assert dy180 == pytest.approx(-dy0) and abs(dx180) < 1e-12


@pytest.mark.parametrize(("az", "side"), [(90.0, "left"), (270.0, "right"), (0.0, "down"), (180.0, "up"),
                                          (45.0, "left"), (315.0, "right")])
def test_drawn_arrow_points_the_right_way(az, side):
    img = np.zeros((300, 400, 3), np.uint8)
    box = (100, 80, 300, 220)
    cx, cy = 200, 150
    out = annotate(img, [car(box, az)], color=BOX, arrow_color=ARROW, label=False, dial=False, frame_text=False)
    px = arrow_pixels(out)
    assert len(px) > 20
    dx, dy = px[:, 0] - cx, px[:, 1] - cy
    far = np.hypot(dx, dy) > 6  # ignore the dot at the centre
    frac = {"left": np.mean(dx[far] < 0), "right": np.mean(dx[far] > 0),
            "down": np.mean(dy[far] > 0), "up": np.mean(dy[far] < 0)}[side]
    assert frac > 0.9, (az, side, frac)
    if side in ("down", "up"):  # towards / away from the camera: foreshortened
        reach = np.max(np.abs(dy[far]))
        side_out = annotate(img, [car(box, 90.0)], color=BOX, arrow_color=ARROW, label=False, dial=False,
                            frame_text=False)
        side_reach = np.max(np.abs(arrow_pixels(side_out)[:, 0] - cx))
        assert reach < 0.7 * side_reach


@pytest.mark.parametrize(("az", "sign"), [(90.0, -1), (270.0, 1)])
def test_dial_needle_agrees_with_the_arrow(az, sign):
    """The compass in the box corner shows the same heading: for 90 its needle points left too."""
    img = np.zeros((300, 400, 3), np.uint8)
    box = (100, 80, 300, 220)
    plain = annotate(img, [car(box, az)], color=BOX, arrow_color=ARROW, label=False, dial=False, frame_text=False)
    dialled = annotate(img, [car(box, az)], color=BOX, arrow_color=ARROW, label=False, dial=True, frame_text=False)
    ys, xs = np.nonzero(np.any(dialled != plain, axis=2))
    assert len(xs) > 50 and xs.max() < 200 and ys.max() < 150  # a dial in the top-left part of the box
    centre_x = (xs.min() + xs.max()) / 2.0
    plain_red = {tuple(p) for p in arrow_pixels(plain)}
    needle = np.array([p for p in arrow_pixels(dialled) if tuple(p) not in plain_red])
    assert len(needle) > 5
    assert sign * (needle[:, 0].mean() - centre_x) > 3.0


def test_label_text_changes_with_angle():
    img = np.zeros((200, 300, 3), np.uint8)
    a = annotate(img, [car([50, 60, 250, 180], 10.0)], dial=False, frame_text=False)
    b = annotate(img, [car([50, 60, 250, 180], 280.0)], dial=False, frame_text=False)
    label_rows = slice(30, 60)  # above the box top at y=60
    assert np.any(a[label_rows] != b[label_rows])


def test_tile_grid_lays_tiles_row_by_row_in_cells_of_the_largest():
    a = np.full((10, 20, 3), 50, np.uint8)
    b = np.full((6, 12, 3), 200, np.uint8)  # a smaller tile sits top-left in its cell
    sheet = tile_grid([a, b, a], cols=2)
    assert sheet.shape == (20, 40, 3)
    assert (sheet[:10, :20] == 50).all() and (sheet[:6, 20:32] == 200).all()
    assert (sheet[6:10, 20:] == 0).all() and (sheet[:10, 32:] == 0).all()  # the rest of b's cell is black
    assert (sheet[10:, :20] == 50).all() and (sheet[10:, 20:] == 0).all()  # the last row's empty cell
    with pytest.raises(ValueError):
        tile_grid([], cols=2)
