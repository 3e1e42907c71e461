"""The shared crop: squaring, context, padding outside the image, and bad boxes."""

from __future__ import annotations

import numpy as np
import pytest

from carpose.crop import CropSpec, box_in_crop, crop_box, crop_region


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
