"""The azimuth convention: wrap, differences, circular mean, bins, KITTI alpha, camera placement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carpose import convention as cv


def test_wrap_into_range_including_float_edge_cases():
    assert cv.wrap_deg(360.0) == 0.0
    assert cv.wrap_deg(-90.0) == 270.0
    assert cv.wrap_deg(725.0) == pytest.approx(5.0)
    assert cv.wrap_deg(-1e-17) == 0.0  # np.mod gives 360.0 here; must fold back
    assert cv.wrap_deg_signed(180.0) == -180.0
    assert cv.wrap_deg_signed(190.0) == pytest.approx(-170.0)
    a = cv.wrap_deg(np.array([-720.0, -0.5, 359.9999, 1080.0]))
    assert np.all((a >= 0) & (a < 360))


def test_angular_error_is_the_short_way_round():
    assert cv.angular_error(359.0, 1.0) == pytest.approx(2.0)
    assert cv.angular_error(10.0, 190.0) == pytest.approx(180.0)
    assert cv.angular_difference(350.0, 10.0) == pytest.approx(-20.0)
    assert cv.angular_difference(10.0, 350.0) == pytest.approx(20.0)
    np.testing.assert_allclose(cv.angular_error(np.array([0, 90, 270]), np.array([180, 80, 300])), [180, 10, 30])


def test_circular_mean_across_zero_and_resultant_length():
    mean, r = cv.circular_mean([350.0, 10.0])
    assert cv.angular_error(mean, 0.0) < 1e-9
    assert r == pytest.approx(math.cos(math.radians(10)))
    mean, r = cv.circular_mean([0.0, 180.0])
    assert r == pytest.approx(0.0, abs=1e-12)
    mean, r = cv.circular_mean([0.0, 90.0], weights=[3.0, 1.0])
    assert mean == pytest.approx(math.degrees(math.atan2(1, 3)))
    means, rs = cv.circular_mean(np.array([[350.0, 10.0], [80.0, 100.0]]), axis=1)
    np.testing.assert_allclose(cv.angular_error(means, [0.0, 90.0]), 0.0, atol=1e-9)
    with pytest.raises(ValueError):
        cv.circular_mean([10.0], weights=[0.0])


def test_bins_are_centred_on_multiples_of_the_width():
    assert cv.azimuth_to_bin(359.0, 72) == 0
    assert cv.azimuth_to_bin(2.4, 72) == 0
    assert cv.azimuth_to_bin(2.6, 72) == 1
    assert cv.azimuth_to_bin(357.4, 72) == 71
    np.testing.assert_allclose(cv.bin_centers(4), [0, 90, 180, 270])
    assert [cv.azimuth_to_quadrant(a) for a in (0, 44.9, 45, 134.9, 180, 225, 314.9, 315)] == [0, 0, 1, 1, 2, 3, 3, 0]
    with pytest.raises(ValueError):
        cv.bin_width(0)


# Hand-made KITTI cases. KITTI camera: x right, y down, z forward; rotation_y = 0 means the car's
# front points along +x (to the right in the image); rotation_y = +pi/2 means it points along -z
# (towards the camera). For a car straight ahead (x = 0), alpha == rotation_y.
@pytest.mark.parametrize("alpha, azimuth, what", [
    (math.pi / 2, 0.0, "car faces the camera: we see its front"),
    (-math.pi / 2, 180.0, "car drives away: we see its rear"),
    (0.0, 270.0, "car points right in the image: we see its right side"),
    (-math.pi, 90.0, "car points left in the image: we see its left side"),
    (math.pi / 4, 315.0, "front-right three-quarter view"),
])
def test_kitti_alpha_cardinal_views(alpha, azimuth, what):
    assert cv.azimuth_from_kitti_alpha(alpha) == pytest.approx(azimuth), what
    back = cv.kitti_alpha_from_azimuth(azimuth)
    assert abs(cv.wrap_deg_signed(math.degrees(back - alpha))) < 1e-9, what
    assert -math.pi <= back < math.pi


def test_kitti_alpha_round_trip_dense():
    az = np.linspace(0, 359.9, 1000)
    np.testing.assert_allclose(cv.angular_error(cv.azimuth_from_kitti_alpha(cv.kitti_alpha_from_azimuth(az)), az),
                               0.0, atol=1e-9)


def test_kitti_rotation_y_matches_geometry_off_axis():
    """A car to the right of the optical axis: build the scene geometrically and compare."""
    x, z = 8.0, 10.0  # car centre in KITTI camera coordinates
    for ry in np.linspace(-math.pi, math.pi, 13)[:-1]:
        front = np.array([math.cos(ry), -math.sin(ry)])  # car's front in the camera's (x, z) plane
        left = np.array([math.sin(ry), math.cos(ry)])  # front rotated 90 deg counter-clockwise from above
        to_cam = -np.array([x, z]) / math.hypot(x, z)
        azimuth = math.degrees(math.atan2(to_cam @ left, to_cam @ front)) % 360
        assert cv.kitti_rotation_y(azimuth, x, z) == pytest.approx(ry, abs=1e-9)
        alpha = ry - math.atan2(x, z)  # KITTI's definition
        assert cv.angular_error(cv.azimuth_from_kitti_alpha(alpha), azimuth) < 1e-9


def test_camera_position_cardinal_directions_and_inverse():
    np.testing.assert_allclose(cv.camera_position(0, 0, 10), [10, 0, 0], atol=1e-12)  # in front
    np.testing.assert_allclose(cv.camera_position(90, 0, 10), [0, 10, 0], atol=1e-12)  # car's left (+Y)
    np.testing.assert_allclose(cv.camera_position(180, 0, 10), [-10, 0, 0], atol=1e-12)
    np.testing.assert_allclose(cv.camera_position(0, 90, 10, (1, 2, 3)), [1, 2, 13], atol=1e-12)
    for az, el, d in [(12.5, 3.0, 7.0), (271.0, 30.0, 15.0), (359.0, 0.0, 4.0)]:
        got = cv.view_from_camera_position(cv.camera_position(az, el, d, (0, 0, 0.7)), (0, 0, 0.7))
        assert cv.angular_error(got[0], az) < 1e-9 and got[1] == pytest.approx(el) and got[2] == pytest.approx(d)
    with pytest.raises(ValueError):
        cv.view_from_camera_position((0, 0, 0))


def test_look_at_pose_is_a_rotation_looking_at_the_target():
    pose = cv.look_at_pose(cv.camera_position(30, 20, 8), (0, 0, 0), roll_deg=7.0)
    R = pose[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    forward = -R[:, 2]
    np.testing.assert_allclose(forward, -pose[:3, 3] / np.linalg.norm(pose[:3, 3]), atol=1e-12)
    level = cv.look_at_pose(cv.camera_position(30, 20, 8), (0, 0, 0))
    assert level[2, 0] == pytest.approx(0.0, abs=1e-12)  # no roll: the image x axis stays horizontal
    assert pose[2, 0] != pytest.approx(0.0, abs=1e-3)


def test_flip_maps_left_to_right():
    assert cv.flip_azimuth(90.0) == 270.0
    assert cv.flip_azimuth(0.0) == 0.0
    assert cv.flip_azimuth(180.0) == 180.0
    assert cv.flip_azimuth(30.0) == 330.0
