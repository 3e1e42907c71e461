"""The shared crop: squaring, context, padding outside the image, and bad boxes."""

from __future__ import annotations

import numpy as np
import pytest

from carpose.crop import CropSpec, box_in_crop, crop_box, crop_boxes, crop_region, hidden_share, nearer_boxes


def _image(h=200, w=300):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_region_is_square_with_context_around_the_box_centre():
    r = crop_region((100, 50, 200, 100), CropSpec(context=0.1))
    assert r[2] - r[0] == pytest.approx(120.0) and r[3] - r[1] == pytest.approx(120.0)
    assert (r[0] + r[2]) / 2 == pytest.approx(150.0) and (r[1] + r[3]) / 2 == pytest.approx(75.0)


def test_crop_inside_image_is_the_resized_window():
    img = _image()
    spec = CropSpec(size=40, context=0.0)
    out = crop_box(img, (100, 50, 140, 90), spec)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img[50:90, 100:140])


def test_outside_of_the_image_is_filled_grey():
    img = _image()
    spec = CropSpec(size=64, context=0.0, fill=114)
    out = crop_box(img, (-32, 0, 32, 64), spec)  # left half outside
    assert np.all(out[:, :30] == 114)
    np.testing.assert_array_equal(out[:, 34:], img[0:64, 2:32])


def test_box_in_crop_maps_corners():
    spec = CropSpec(size=100, context=0.25)
    box = np.array([10.0, 20.0, 50.0, 40.0])
    inner = box_in_crop(box, crop_region(box, spec), spec.size)
    assert inner[2] - inner[0] == pytest.approx(100 / 1.5)  # box width 40 of a 60 px region
    assert (inner[1] + inner[3]) / 2 == pytest.approx(50.0)


@pytest.mark.parametrize("box", [(10, 10, 10, 20), (5, 5, 2, 8), (np.nan, 0, 5, 5), (400, 300, 500, 400)])
def test_bad_boxes_raise_clear_errors(box):
    with pytest.raises(ValueError):
        crop_box(_image(), box, CropSpec(size=32))


def test_bad_image_and_spec_raise():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        crop_box(np.zeros((10, 10), np.uint8), (0, 0, 5, 5), CropSpec(size=32))
    with pytest.raises(ValueError):
        CropSpec(size=4)
    with pytest.raises(ValueError):
        CropSpec(context=2.0)


def test_nearer_boxes_are_the_overlapping_ones_lower_in_the_image():
    car = (100, 50, 160, 90)  # 40 px tall: nearer means a bottom edge below 92
    frame = np.array([car,                  # the car itself: not nearer than itself
                      (140, 60, 220, 110),  # overlaps, bottom lower: nearer
                      (60, 40, 110, 80),    # overlaps, bottom higher: farther
                      (200, 60, 260, 120),  # lower but beside, not overlapping
                      (120, 45, 170, 100),  # overlaps two thirds of it, lower: nearer
                      (102, 48, 165, 91),   # the same car boxed again, 1 px lower: not nearer
                      (95, 30, 180, 140)], np.float64)  # holds all of it: seen over it, not greyed
    np.testing.assert_array_equal(nearer_boxes(car, frame), frame[[1, 4]])
    assert nearer_boxes(car, np.zeros((0, 4))).shape == (0, 4)


def test_hidden_share_is_the_area_of_the_union_of_the_nearer_boxes_inside_the_car_s_box():
    car = (100, 50, 160, 90)  # 60 x 40 = 2400 px
    assert hidden_share(car, np.array([car, (60, 40, 110, 80)], np.float64)) == 0.0  # itself, a farther car
    # two nearer boxes overlapping each other: 30x20 + 35x30 - their 5x20 overlap = 1550 px, counted once
    assert hidden_share(car, np.array([(90, 70, 130, 100), (125, 60, 170, 95)], np.float64)) == pytest.approx(
        1550 / 2400)
    # one inside the other inside the car's box, and one holding the whole car (seen over it: not greyed)
    frame = np.array([(140, 60, 220, 110), (120, 45, 170, 100), (95, 30, 180, 140)], np.float64)
    assert hidden_share(car, frame) == pytest.approx(1600 / 2400)


def test_crop_box_greys_the_given_boxes_in_the_crop_only():
    img = _image()
    before = img.copy()
    spec = CropSpec(size=40, context=0.0, fill=114)
    out = crop_box(img, (100, 50, 140, 90), spec, grey=np.array([[120, 70, 200, 150]]))
    assert np.all(out[20:, 20:] == 114)  # the lower-right quarter lies under the grey box
    np.testing.assert_array_equal(out[:20, :], img[50:70, 100:140])
    np.testing.assert_array_equal(img, before)  # the frame itself is untouched


def test_crop_boxes_grey_nearer_greys_each_car_s_nearer_neighbour_only():
    """A parked row: car A farther (bottom 90), car B nearer (bottom 110) overlapping A's right half.
    A's crop loses B's pixels to grey; B's crop keeps A, which stands behind it."""
    img = _image()
    boxes = np.array([(100, 50, 140, 90), (120, 60, 170, 110)], np.float64)
    plain = crop_boxes(img, boxes, CropSpec(size=40, context=0.0))
    grey = crop_boxes(img, boxes, CropSpec(size=40, context=0.0, occluders="grey_nearer"))
    np.testing.assert_array_equal(plain[1], grey[1])
    assert np.all(grey[0][10:, 20:] == 114) and not np.all(plain[0][10:, 20:] == 114)
    np.testing.assert_array_equal(grey[0][:10], plain[0][:10])
    assert crop_boxes(img, np.zeros((0, 4)), CropSpec(size=40)).shape == (0, 40, 40, 3)


def test_occluder_mode_round_trips_and_old_records_mean_none():
    spec = CropSpec(occluders="grey_nearer")
    assert CropSpec.from_dict(spec.to_dict()) == spec
    assert CropSpec.from_dict({"size": 128, "context": 0.1, "fill": 114}).occluders == "none"
    with pytest.raises(ValueError, match="occluders"):
        CropSpec(occluders="blur")
