"""carpose.ros.convert: sensor_msgs images <-> numpy (every encoding, padding, byte order, errors)
and FrameResult -> CarPoseArray / MarkerArray. Pure conversions on real message objects, no node."""

from __future__ import annotations

import array
import math

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from carpose.convention import CONVENTION_VERSION, kitti_rotation_y
from carpose.results import CarPoseResult, FrameResult
from carpose.ros.convert import (
    ImageConversionError,
    UnsupportedEncodingError,
    compressed_imgmsg_to_cv2,
    cv2_to_compressed_imgmsg,
    cv2_to_imgmsg,
    focal_from_hfov,
    frame_to_markers,
    frame_to_msg,
    imgmsg_to_cv2,
    yaw_quaternion,
)

RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def _msg(data: bytes, h: int, w: int, enc: str, step: int, big: bool = False) -> Image:
    m = Image(height=h, width=w, encoding=enc, step=step, is_bigendian=big)
    m.data = array.array("B", data)
    return m


@pytest.mark.parametrize(("enc", "make"), [
    ("bgr8", lambda b: b),
    ("rgb8", lambda b: b[:, :, ::-1]),
    ("bgra8", lambda b: np.dstack([b, np.full(b.shape[:2], 7, np.uint8)])),
    ("rgba8", lambda b: np.dstack([b[:, :, ::-1], np.full(b.shape[:2], 7, np.uint8)])),
    ("8UC3", lambda b: b),
])
def test_colour_round_trip(enc, make):
    src = np.ascontiguousarray(make(BGR))
    msg = cv2_to_imgmsg(src, enc)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (6, 8, enc, 8 * src.shape[2])
    assert np.array_equal(imgmsg_to_cv2(msg, "bgr8"), BGR)
    assert np.array_equal(imgmsg_to_cv2(msg, "rgb8"), BGR[:, :, ::-1])
    assert np.array_equal(imgmsg_to_cv2(msg, "passthrough"), src)
    assert np.array_equal(imgmsg_to_cv2(msg, "mono8"), cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY))


def test_mono8_round_trip():
    g = BGR[:, :, 0].copy()
    msg = cv2_to_imgmsg(g, "mono8")
    out = imgmsg_to_cv2(msg)
    assert out.shape == (6, 8, 3) and all(np.array_equal(out[:, :, c], g) for c in range(3))
    assert np.array_equal(imgmsg_to_cv2(msg, "mono8"), g)
    assert cv2_to_imgmsg(g, "passthrough").encoding == "mono8"


@pytest.mark.parametrize("big", [False, True])
def test_mono16_scaled_to_8_bit_both_byte_orders(big):
    v = np.array([[0, 255, 256, 4095], [32768, 40000, 65280, 65535]], np.uint16)
    wire = v.astype(">u2" if big else "<u2")
    msg = _msg(wire.tobytes(), 2, 4, "mono16", 8, big=big)
    assert np.array_equal(imgmsg_to_cv2(msg, "passthrough"), v)  # native uint16, values intact
    expected = (v >> 8).astype(np.uint8)  # fixed /256, like cv_bridge: no per-frame stretching
    assert np.array_equal(imgmsg_to_cv2(msg, "mono8"), expected)
    assert np.array_equal(imgmsg_to_cv2(msg, "bgr8")[:, :, 1], expected)
    # the same bytes read with the wrong byte order flag give different values: the flag is used
    wrong = _msg(wire.tobytes(), 2, 4, "16UC1", 8, big=not big)
    assert not np.array_equal(imgmsg_to_cv2(wrong, "passthrough"), v)
    # and cv2_to_imgmsg records the array's own byte order
    back = cv2_to_imgmsg(wire, "mono16")
    assert back.is_bigendian == big and np.array_equal(imgmsg_to_cv2(back, "passthrough"), v)


def _pack_yuv422(bgr: np.ndarray, order: str) -> np.ndarray:
    """Pack a BGR image whose pixel pairs share a colour into UYVY or YUYV bytes (H, W, 2), written
    out from the BT.601 limited-range formulas (what cameras send), independently of OpenCV."""
    b, g, r = (bgr[:, :, i].astype(np.float64) / 255.0 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    chroma = np.empty(y.shape)
    chroma[:, 0::2], chroma[:, 1::2] = cb[:, 0::2], cr[:, 0::2]
    return np.dstack([chroma, y] if order == "uyvy" else [y, chroma]).round().astype(np.uint8)


@pytest.mark.parametrize(("enc", "order"), [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"),
                                            ("yuyv", "yuyv")])
def test_yuv422(enc, order):
    pairs = np.repeat(RNG.integers(40, 216, (6, 4, 3), dtype=np.uint8), 2, axis=1)  # 6 x 8, pairs equal
    packed = _pack_yuv422(pairs, order)
    msg = _msg(packed.tobytes(), 6, 8, enc, 16)
    out = imgmsg_to_cv2(msg, "bgr8")
    assert out.shape == (6, 8, 3)
    assert np.abs(out.astype(int) - pairs.astype(int)).max() <= 3  # YUV rounding
    assert np.array_equal(imgmsg_to_cv2(msg, "mono8"), packed[:, :, 1 if order == "uyvy" else 0])
    assert np.array_equal(imgmsg_to_cv2(cv2_to_imgmsg(packed, enc), "passthrough"), packed)


@pytest.mark.parametrize(("enc", "bpp"), [("bgr8", 3), ("rgba8", 4), ("mono8", 1), ("mono16", 2), ("yuv422", 2)])
def test_step_padding_is_skipped(enc, bpp):
    h, w, pad = 5, 6, 10
    row = w * bpp
    rows = RNG.integers(0, 256, (h, row), dtype=np.uint8)
    padded = np.hstack([rows, np.full((h, pad), 0xAB, np.uint8)])  # junk in the padding
    tight = _msg(rows.tobytes(), h, w, enc, row)
    loose = _msg(padded.tobytes(), h, w, enc, row + pad)
    assert np.array_equal(imgmsg_to_cv2(loose, "passthrough"), imgmsg_to_cv2(tight, "passthrough"))
    assert np.array_equal(imgmsg_to_cv2(loose, "bgr8"), imgmsg_to_cv2(tight, "bgr8"))


def test_errors_name_the_problem():
    good = cv2_to_imgmsg(BGR, "bgr8")
    with pytest.raises(UnsupportedEncodingError, match=r"unsupported image encoding 'bayer_weird'.*bgr8"):
        imgmsg_to_cv2(_msg(bytes(good.data), 6, 8, "bayer_weird", 24))
    with pytest.raises(ImageConversionError, match="step 20 is smaller than width"):
        imgmsg_to_cv2(_msg(bytes(good.data), 6, 8, "bgr8", 20))
    with pytest.raises(ImageConversionError, match="data has 143 bytes, expected step \\* height"):
        imgmsg_to_cv2(_msg(bytes(good.data)[:-1], 6, 8, "bgr8", 24))
    with pytest.raises(ImageConversionError, match="empty"):
        imgmsg_to_cv2(_msg(b"", 0, 8, "bgr8", 24))
    with pytest.raises(ImageConversionError, match="even width"):
        imgmsg_to_cv2(_msg(bytes(30), 3, 5, "yuv422", 10))
    with pytest.raises(UnsupportedEncodingError, match="cannot convert to 'bgr16'"):
        imgmsg_to_cv2(good, "bgr16")
    with pytest.raises(ImageConversionError, match="needs uint8 with 3 channel"):
        cv2_to_imgmsg(BGR[:, :, 0], "bgr8")
    with pytest.raises(ImageConversionError, match="cannot infer"):
        cv2_to_imgmsg(np.zeros((4, 4), np.float32), "passthrough")
    assert issubclass(UnsupportedEncodingError, ImageConversionError) and issubclass(ImageConversionError, ValueError)


def test_header_is_kept():
    hdr = Header(frame_id="cam_optical")
    hdr.stamp.sec, hdr.stamp.nanosec = 12, 345
    msg = cv2_to_imgmsg(BGR, header=hdr)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345


def test_compressed():
    img = cv2.resize(BGR, (64, 48), interpolation=cv2.INTER_NEAREST)
    png = cv2_to_compressed_imgmsg(img, "png")
    assert png.format == "png" and np.array_equal(compressed_imgmsg_to_cv2(png), img)
    assert np.array_equal(compressed_imgmsg_to_cv2(png, "rgb8"), img[:, :, ::-1])
    jpg = cv2_to_compressed_imgmsg(img, "jpeg")
    assert compressed_imgmsg_to_cv2(jpg).shape == (48, 64, 3)
    assert compressed_imgmsg_to_cv2(jpg, "mono8").shape == (48, 64)
    junk = CompressedImage(format="jpeg")
    junk.data = array.array("B", b"not a jpeg at all")
    with pytest.raises(ImageConversionError, match="could not decode"):
        compressed_imgmsg_to_cv2(junk)
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_imgmsg_to_cv2(CompressedImage(format="jpeg"))
    with pytest.raises(UnsupportedEncodingError, match="compressedDepth"):
        compressed_imgmsg_to_cv2(CompressedImage(format="16UC1; compressedDepth"))


def _frame() -> FrameResult:
    cars = [CarPoseResult(np.array([100.0, 200.0, 300.0, 260.0]), 0.9, 2, "car", 90.0, 0.8, 64,
                          probs=np.array([0.1, 0.7, 0.1, 0.1])),
            CarPoseResult(np.array([600.0, 100.0, 700.0, 180.0]), 0.5, 7, "truck", 180.0, 0.4, 64, track_id=3)]
    return FrameResult(cars, {"detect": 5.0, "crop": 1.0, "pose": 2.0, "track": 0.1, "total": 9.0}, [], 800, 600)


def test_frame_to_msg_fields_and_quaternion():
    hdr = Header(frame_id="cam")
    hdr.stamp.sec = 7
    msg = frame_to_msg(_frame(), hdr, CONVENTION_VERSION, camera_fx=400.0, cx=400.0)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 7
    assert (msg.image_width, msg.image_height, msg.convention_version) == (800, 600, str(CONVENTION_VERSION))
    assert (msg.detect_ms, msg.pose_ms, msg.total_ms) == pytest.approx((5.0, 3.0, 9.0))
    a, b = msg.cars
    assert (a.center_x, a.center_y, a.size_x, a.size_y) == (200.0, 230.0, 200.0, 60.0)
    assert (a.class_id, a.class_name, a.track_id) == (2, "car", -1)
    assert (a.score, a.azimuth_deg, a.azimuth_confidence) == pytest.approx((0.9, 90.0, 0.8))
    assert list(a.azimuth_probs) == pytest.approx([0.1, 0.7, 0.1, 0.1])
    assert len(b.azimuth_probs) == 0 and (b.class_id, b.class_name, b.track_id) == (7, "truck", 3)
    # hand-made case: car a's centre ray has x = (200 - 400) / 400 = -0.5, z = 1; azimuth 90 (we see
    # its left side) -> alpha = 180 deg; rotation_y = pi + atan2(-0.5, 1), wrapped into [-pi, pi)
    ry = math.pi + math.atan2(-0.5, 1.0)
    ry = (ry + math.pi) % (2 * math.pi) - math.pi
    assert ry == pytest.approx(kitti_rotation_y(90.0, -0.5, 1.0))
    q = a.orientation
    assert (q.x, q.y, q.z, q.w) == pytest.approx((0.0, math.sin(ry / 2), 0.0, math.cos(ry / 2)))
    # car b: x = (650 - 400) / 400, azimuth 180 (rear view)
    ry_b = kitti_rotation_y(180.0, 250.0 / 400.0, 1.0)
    assert (b.orientation.y, b.orientation.w) == pytest.approx((math.sin(ry_b / 2), math.cos(ry_b / 2)))
    # a rear view straight ahead: rotation_y = -pi/2, i.e. the car points away along +z
    assert yaw_quaternion(-math.pi / 2) == pytest.approx((0.0, -math.sqrt(0.5), 0.0, math.sqrt(0.5)))


def test_frame_to_msg_defaults_from_hfov():
    msg = frame_to_msg(_frame(), Header(), hfov_deg=90.0)  # fx = 400 for 800 px at 90 deg, cx = 400
    assert focal_from_hfov(800, 90.0) == pytest.approx(400.0)
    ref = frame_to_msg(_frame(), Header(), camera_fx=400.0, cx=400.0)
    assert msg.cars[0].orientation.y == pytest.approx(ref.cars[0].orientation.y)
    empty = frame_to_msg(FrameResult([], {}, [], 320, 240), Header())
    assert list(empty.cars) == [] and empty.detect_ms == 0.0
    with pytest.raises(ValueError):
        focal_from_hfov(800, 180.0)


def test_frame_to_markers():
    from visualization_msgs.msg import Marker

    hdr = Header(frame_id="cam")
    arr = frame_to_markers(_frame(), hdr, camera_fx=400.0, cx=400.0, cy=300.0)
    clear, arrow, text = arr.markers[:3]
    assert clear.action == Marker.DELETEALL and len(arr.markers) == 1 + 2 * 2
    assert arrow.type == Marker.ARROW and text.type == Marker.TEXT_VIEW_FACING
    assert arrow.header.frame_id == "cam" and text.text.startswith("90 deg")
    # depth where a 1.5 m car fills the 60 px box: 400 * 1.5 / 60 = 10 m; x on the centre ray
    p = arrow.pose.position
    assert p.z == pytest.approx(10.0) and p.x == pytest.approx(-0.5 * 10.0) and p.y == pytest.approx(-70 / 400 * 10)
    # heading: the arrow's +x axis rotated about y by rotation_y is (cos ry, 0, -sin ry)
    q = arrow.pose.orientation
    ry = 2 * math.atan2(q.y, q.w)
    assert ry == pytest.approx(kitti_rotation_y(90.0, p.x, p.z))
    assert text.pose.position.y == pytest.approx(p.y - 1.5)
    assert arr.markers[4].text == "180 deg #3"
