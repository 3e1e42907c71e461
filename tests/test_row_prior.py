"""carpose.row_prior: a car hidden behind a nearer car mixes in that car's heading by the share hidden."""

from __future__ import annotations

import numpy as np
import pytest

from carpose.row_prior import row_prior


def _onehot(*bins: int, k: int = 8) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[list(bins)]


def test_a_hidden_car_takes_the_share_it_hides_from_the_nearer_car_and_a_row_passes_it_back():
    behind = (100, 50, 160, 90)   # 60 x 40; its bottom edge higher than the nearer car's
    front = (130, 60, 220, 110)   # hides x 130-160, y 60-90 of it: 900 / 2400 = 0.375
    farther = (70, 40, 120, 80)   # behind "behind": 20 x 30 of its 50 x 40 hidden = 0.3
    alone = (300, 10, 340, 40)    # nothing in front of it
    p = _onehot(0, 4, 2, 6)
    boxes = np.array([behind, front, farther, alone], np.float64)
    out = row_prior(boxes, np.vstack([p[0], p[1], p[2], p[3]]))
    np.testing.assert_allclose(out[1], p[1])  # the nearest car is read as it is
    np.testing.assert_allclose(out[3], p[3])
    np.testing.assert_allclose(out[0], 0.625 * p[0] + 0.375 * p[1])
    # the farther car mixes in what its nearer car became, not that car's own reading
    np.testing.assert_allclose(out[2], 0.7 * p[2] + 0.3 * out[0], atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)
    assert out.dtype == np.float32
    # in any order of the boxes
    order = [3, 2, 1, 0]
    np.testing.assert_allclose(row_prior(boxes[order], p[order]), out[order], atol=1e-6)


def test_only_lenders_lend_and_the_input_is_left_as_it_was():
    boxes = np.array([(100, 50, 160, 90), (130, 60, 220, 110)], np.float64)
    p = _onehot(0, 4)
    kept = p.copy()
    np.testing.assert_allclose(row_prior(boxes, p, lenders=np.array([True, False])), p)
    assert np.array_equal(p, kept)
    assert row_prior(np.zeros((0, 4)), np.zeros((0, 8))).shape == (0, 8)
    with pytest.raises(ValueError, match="2 boxes but 3 rows"):
        row_prior(boxes, _onehot(0, 1, 2))
