"""ROS <-> numpy conversions for the node, without cv_bridge (not on PyPI).

The image functions keep cv_bridge's names and argument order (``imgmsg_to_cv2``,
``cv2_to_imgmsg``, ``compressed_imgmsg_to_cv2``, ``cv2_to_compressed_imgmsg``) so code written
for cv_bridge reads the same. Supported ``sensor_msgs/Image`` encodings: bgr8, rgb8, bgra8, rgba8,
mono8, mono16 (and the aliases 8UC1, 8UC3, 8UC4, 16UC1), yuv422 = uyvy and yuv422_yuy2 = yuyv.
``step`` (row padding) and ``is_bigendian`` are honoured. mono16 becomes 8 bit by a fixed
division by 256 (like cv_bridge), not by per-frame min/max stretching: the network should see the
same brightness for the same scene in every frame.

A frame that cannot be converted raises :class:`ImageConversionError` (a ``ValueError``; unknown
encodings raise its subclass :class:`UnsupportedEncodingError`) whose message names the field that
is wrong, so the node can log it once and count it instead of dying.

``frame_to_msg`` and ``frame_to_markers`` turn a :class:`carpose.results.FrameResult` into
``carpose_msgs/CarPoseArray`` and ``visualization_msgs/MarkerArray``. Message modules are imported
inside the functions, so this module imports without rclpy or a sourced ROS environment.
"""

from __future__ import annotations

import array
import math
import sys
from typing import Any

import cv2
import numpy as np

from carpose.convention import CONVENTION_VERSION, kitti_rotation_y
from carpose.results import FrameResult

#: Horizontal field of view assumed when the caller gives no intrinsics (a typical road camera).
DEFAULT_HFOV_DEG = 60.0
#: Height of a typical car: the markers are placed at the depth where such a car fills the box.
CAR_HEIGHT_M = 1.5
#: Length of the heading arrow in the marker array (a typical car length).
ARROW_LENGTH_M = 4.0


class ImageConversionError(ValueError):
    """The image message cannot be turned into an array; the message says which field is wrong."""


class UnsupportedEncodingError(ImageConversionError):
    """The encoding is not one this converter knows."""


# canonical name -> (dtype, channels)
_LAYOUT: dict[str, tuple[np.dtype, int]] = {
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "rgba8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "uyvy": (np.dtype(np.uint8), 2),
    "yuyv": (np.dtype(np.uint8), 2),
}
# every accepted spelling -> canonical name (ROS names yuv422 = UYVY and yuv422_yuy2 = YUYV)
_ALIASES: dict[str, str] = {name: name for name in _LAYOUT} | {
    "8uc1": "mono8", "8uc3": "bgr8", "8uc4": "bgra8", "16uc1": "mono16",
    "yuv422": "uyvy", "yuv422_yuy2": "yuyv",
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_ALIASES))
OUTPUT_ENCODINGS = ("bgr8", "rgb8", "mono8", "passthrough")


def _canonical(encoding: str) -> str:
    enc = _ALIASES.get(str(encoding).strip().lower())
    if enc is None:
        raise UnsupportedEncodingError(f"unsupported image encoding {encoding!r}; supported: "
                                       f"{', '.join(SUPPORTED_ENCODINGS)}")
    return enc


def _decode_raw(msg: Any) -> tuple[np.ndarray, str]:
    """The message's pixels as an (H, W, C) native-endian array, plus the canonical encoding."""
    enc = _canonical(msg.encoding)
    dtype, ch = _LAYOUT[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"image is empty: width {w}, height {h}")
    if enc in ("uyvy", "yuyv") and w % 2:
        raise ImageConversionError(f"{msg.encoding} needs an even width (2 pixels share U and V), got {w}")
    row = w * ch * dtype.itemsize
    if step < row:
        raise ImageConversionError(f"step {step} is smaller than width * bytes per pixel = {w} * "
                                   f"{ch * dtype.itemsize} = {row} for {msg.encoding}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != step * h:
        raise ImageConversionError(f"data has {buf.size} bytes, expected step * height = {step} * {h} = {step * h}")
    rows = buf.reshape(h, step)[:, :row]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    img = np.ascontiguousarray(rows).view(wire).reshape(h, w, ch)
    if wire != dtype:
        img = img.astype(dtype)  # to native byte order
    return img, enc


def _to_bgr(img: np.ndarray, enc: str) -> np.ndarray:
    if enc == "bgr8":
        return np.ascontiguousarray(img)
    if enc == "mono16":
        img, enc = (img >> 8).astype(np.uint8), "mono8"
    if enc == "mono8":
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    code = {"rgb8": cv2.COLOR_RGB2BGR, "bgra8": cv2.COLOR_BGRA2BGR, "rgba8": cv2.COLOR_RGBA2BGR,
            "uyvy": cv2.COLOR_YUV2BGR_UYVY, "yuyv": cv2.COLOR_YUV2BGR_YUY2}[enc]
    return cv2.cvtColor(img, code)


def _to_mono(img: np.ndarray, enc: str) -> np.ndarray:
    if enc == "mono8":
        return np.ascontiguousarray(img.reshape(img.shape[:2]))
    if enc == "mono16":
        return (img.reshape(img.shape[:2]) >> 8).astype(np.uint8)
    if enc in ("uyvy", "yuyv"):  # luma is stored as it is: no colour round trip
        return np.ascontiguousarray(img[:, :, 1 if enc == "uyvy" else 0])
    return cv2.cvtColor(_to_bgr(img, enc), cv2.COLOR_BGR2GRAY)


def _convert(img: np.ndarray, enc: str, desired_encoding: str) -> np.ndarray:
    want = str(desired_encoding).lower()
    if want == "passthrough":
        return img.reshape(img.shape[:2]) if img.shape[2] == 1 else img
    if want == "bgr8":
        return _to_bgr(img, enc)
    if want == "rgb8":
        return np.ascontiguousarray(img) if enc == "rgb8" else cv2.cvtColor(_to_bgr(img, enc), cv2.COLOR_BGR2RGB)
    if want == "mono8":
        return _to_mono(img, enc)
    raise UnsupportedEncodingError(f"cannot convert to {desired_encoding!r}; choose one of {OUTPUT_ENCODINGS}")


def imgmsg_to_cv2(msg: Any, desired_encoding: str = "bgr8") -> np.ndarray:
    """sensor_msgs/Image -> numpy array (HxWx3 uint8 for bgr8/rgb8, HxW for mono8; 'passthrough'
    keeps the message's own layout, e.g. HxW uint16 for mono16). Raises ImageConversionError."""
    img, enc = _decode_raw(msg)
    return _convert(img, enc, desired_encoding)


def compressed_imgmsg_to_cv2(msg: Any, desired_encoding: str = "bgr8") -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png from image_transport's 'compressed') -> numpy array."""
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise UnsupportedEncodingError(f"compressedDepth images are not supported (format {fmt!r})")
    want = str(desired_encoding).lower()
    if want not in OUTPUT_ENCODINGS:
        raise UnsupportedEncodingError(f"cannot convert to {desired_encoding!r}; choose one of {OUTPUT_ENCODINGS}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageConversionError(f"compressed image ({fmt or 'no format'}) has no data")
    flag = {"mono8": cv2.IMREAD_GRAYSCALE, "passthrough": cv2.IMREAD_UNCHANGED}.get(want, cv2.IMREAD_COLOR)
    img = cv2.imdecode(buf, flag)
    if img is None:
        raise ImageConversionError(f"could not decode the {buf.size}-byte compressed image (format {fmt!r})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if want == "rgb8" else img


def _infer_encoding(img: np.ndarray) -> str:
    ch = 1 if img.ndim == 2 else img.shape[2]
    enc = {(np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint8), 3): "bgr8", (np.dtype(np.uint8), 4): "bgra8",
           (np.dtype(np.uint16), 1): "mono16"}.get((img.dtype.newbyteorder("="), ch))
    if enc is None:
        raise ImageConversionError(f"cannot infer an encoding for a {img.dtype} array of shape {img.shape}")
    return enc


def cv2_to_imgmsg(img: np.ndarray, encoding: str = "bgr8", header: Any = None) -> Any:
    """numpy array -> sensor_msgs/Image with a tight ``step``; 'passthrough' infers the encoding
    from dtype and channels. The array must already be in that encoding (no colour conversion)."""
    from sensor_msgs.msg import Image

    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ImageConversionError(f"expected a 2-D or 3-D numpy array, got {getattr(img, 'shape', type(img))}")
    enc_name = _infer_encoding(img) if encoding == "passthrough" else encoding
    enc = _canonical(enc_name)
    dtype, ch = _LAYOUT[enc]
    got_ch = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype.newbyteorder("=") != dtype or got_ch != ch:
        raise ImageConversionError(f"encoding {enc_name} needs {dtype} with {ch} channel(s), got {img.dtype} "
                                   f"with shape {img.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = enc_name
    bigendian = img.dtype.byteorder == ">" or (img.dtype.byteorder == "=" and sys.byteorder == "big")
    msg.is_bigendian = bool(bigendian and dtype.itemsize > 1)
    msg.step = msg.width * ch * dtype.itemsize
    msg.data = array.array("B", np.ascontiguousarray(img).tobytes())
    return msg


def cv2_to_compressed_imgmsg(img: np.ndarray, dst_format: str = "jpeg", header: Any = None) -> Any:
    """BGR/mono numpy array -> sensor_msgs/CompressedImage (jpeg or png)."""
    from sensor_msgs.msg import CompressedImage

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(dst_format.lower())
    if ext is None:
        raise UnsupportedEncodingError(f"unsupported compressed format {dst_format!r}; use jpeg or png")
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ImageConversionError(f"could not encode a {img.dtype} {img.shape} array as {dst_format}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "jpeg" if ext == ".jpg" else "png"
    msg.data = array.array("B", buf.tobytes())
    return msg


def encoding_of(msg: Any) -> str:
    """The encoding (Image) or format (CompressedImage) string, for per-encoding error counts."""
    return str(getattr(msg, "encoding", None) or getattr(msg, "format", None) or "?")


def focal_from_hfov(width: int, hfov_deg: float) -> float:
    """Focal length in pixels of a pinhole camera ``width`` pixels wide with that horizontal FOV."""
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"horizontal field of view must be in (0, 180) deg, got {hfov_deg}")
    return (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)


def yaw_quaternion(theta: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``theta`` radians about the optical y axis."""
    return 0.0, math.sin(theta / 2.0), 0.0, math.cos(theta / 2.0)


def _intrinsics(result: FrameResult, camera_fx: float | None, cx: float | None, hfov_deg: float
                ) -> tuple[float, float]:
    fx = float(camera_fx) if camera_fx else focal_from_hfov(max(result.width, 1), hfov_deg)
    return fx, (float(cx) if cx is not None else result.width / 2.0)


def frame_to_msg(result: FrameResult, header: Any, convention_version: int | str = CONVENTION_VERSION,
                 camera_fx: float | None = None, cx: float | None = None,
                 hfov_deg: float = DEFAULT_HFOV_DEG) -> Any:
    """FrameResult -> carpose_msgs/CarPoseArray. ``header`` is the input image's (stamp and frame
    must match the image). The orientation is KITTI rotation_y about the optical y axis, from the
    azimuth and the ray through the box centre (x = (u - cx) / fx, z = 1); without ``camera_fx``
    the focal length follows from ``hfov_deg`` and ``cx`` defaults to the image centre."""
    from carpose_msgs.msg import CarPose, CarPoseArray

    fx, cx_ = _intrinsics(result, camera_fx, cx, hfov_deg)
    out = CarPoseArray()
    out.header = header
    out.image_width, out.image_height = int(result.width), int(result.height)
    out.convention_version = str(convention_version)
    t = result.timings_ms
    out.detect_ms = float(t.get("detect", 0.0))
    out.pose_ms = float(t.get("crop", 0.0) + t.get("pose", 0.0))  # cutting the crops is part of the pose stage
    out.total_ms = float(t.get("total", 0.0))
    cars = []
    for c in result.cars:
        x1, y1, x2, y2 = (float(v) for v in np.asarray(c.box_xyxy, np.float64).reshape(4))
        p = CarPose()
        p.center_x, p.center_y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        p.size_x, p.size_y = x2 - x1, y2 - y1
        p.class_id, p.class_name, p.score = int(c.class_id), str(c.class_name), float(c.score)
        p.azimuth_deg, p.azimuth_confidence = float(c.azimuth_deg), float(c.azimuth_confidence)
        if c.probs is not None:
            p.azimuth_probs = array.array("f", np.asarray(c.probs, np.float32).tobytes())
        ry = kitti_rotation_y(c.azimuth_deg, (p.center_x - cx_) / fx, 1.0)
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = yaw_quaternion(ry)
        p.track_id = int(c.track_id)
        cars.append(p)
    out.cars = cars
    return out


def frame_to_markers(result: FrameResult, header: Any, camera_fx: float | None = None, cx: float | None = None,
                     cy: float | None = None, hfov_deg: float = DEFAULT_HFOV_DEG, lifetime_s: float = 1.0) -> Any:
    """FrameResult -> visualization_msgs/MarkerArray in the image's (optical) frame.

    Placement: a monocular guess, good enough to look at in RViz. Each car sits on the ray through
    its box centre at the depth z = fy * CAR_HEIGHT_M / box height (where a 1.5 m tall car would
    fill the box; square pixels, fy = fx). An ARROW (ns 'carpose_heading', 4 m long) starts there
    and points along the car's front, i.e. the CarPose orientation (rotation_y about optical y).
    A TEXT_VIEW_FACING (ns 'carpose_label') 'NNN deg' floats 1.5 m above it (-y is up). The array
    starts with a DELETEALL, so cars that left the image vanish from the display.
    """
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker, MarkerArray

    fx, cx_ = _intrinsics(result, camera_fx, cx, hfov_deg)
    cy_ = float(cy) if cy is not None else result.height / 2.0
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
    clear = Marker(header=header, action=Marker.DELETEALL)
    markers = [clear]
    for i, c in enumerate(result.cars):
        x1, y1, x2, y2 = (float(v) for v in np.asarray(c.box_xyxy, np.float64).reshape(4))
        u, v, bh = (x1 + x2) / 2.0, (y1 + y2) / 2.0, max(y2 - y1, 1.0)
        z = fx * CAR_HEIGHT_M / bh
        x, y = (u - cx_) * z / fx, (v - cy_) * z / fx
        ry = kitti_rotation_y(c.azimuth_deg, x, z)
        arrow = Marker(header=header, ns="carpose_heading", id=i, type=Marker.ARROW, action=Marker.ADD,
                       lifetime=life)
        arrow.pose.position.x, arrow.pose.position.y, arrow.pose.position.z = x, y, z
        q = yaw_quaternion(ry)
        arrow.pose.orientation.x, arrow.pose.orientation.y, arrow.pose.orientation.z, arrow.pose.orientation.w = q
        arrow.scale.x, arrow.scale.y, arrow.scale.z = ARROW_LENGTH_M, 0.3, 0.5
        arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = 1.0, 0.2, 0.2, 1.0
        text = Marker(header=header, ns="carpose_label", id=i, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      lifetime=life)
        text.pose.position.x, text.pose.position.y, text.pose.position.z = x, y - CAR_HEIGHT_M, z
        text.pose.orientation.w = 1.0
        text.scale.z = 0.8
        text.color.r, text.color.g, text.color.b, text.color.a = 1.0, 1.0, 1.0, 1.0
        text.text = f"{float(c.azimuth_deg):.0f} deg" + (f" #{c.track_id}" if c.track_id >= 0 else "")
        markers += [arrow, text]
    return MarkerArray(markers=markers)
