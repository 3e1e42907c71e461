"""Write and read rosbag2 bags (MCAP or sqlite3) without a ROS install, with ``rosbags``.

Why ``rosbags``: it is pure Python and writes and reads both rosbag2 storage formats, so test bags
can be made and replayed in a pip-only environment and in CI; bags it writes play in
``ros2 bag play`` (rosbag2 format version 9, the Jazzy/Kilted one). The message types are the
ROS 2 Kilted typestore plus ``carpose_msgs`` registered from the .msg files of this repository (or
of an installed ``share/carpose_msgs``), so the bag and the node agree on every field.

Topics of a carpose test bag (all with the same header stamp per frame):

- ``/camera/image_raw`` sensor_msgs/Image (bgr8), ``/camera/camera_info`` sensor_msgs/CameraInfo;
- ``/carpose/ground_truth`` carpose_msgs/CarPoseArray: every visible car; ``class_name`` 'DontCare'
  marks ground truth too hard to count (tiny, mostly hidden or truncated): a prediction there is
  neither right nor wrong (carpose.eval.scoring ignore regions);
- ``/carpose/ground_truth/poses`` geometry_msgs/PoseArray, index-aligned with the cars above: the
  centre of each car's 3-D box in the camera's optical frame (x right, y down, z forward; distance =
  its norm) and its yaw as rotation_y about optical y (RViz draws the arrows along the cars' fronts).

:class:`BagReader` reads any rosbag2 bag's image topic (Image in the encodings carpose.ros.convert
supports, or CompressedImage) plus an optional ground-truth topic; a missing topic or something
that is not a bag raises :class:`BagError` saying what there is instead.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from carpose.ros.convert import compressed_imgmsg_to_cv2, imgmsg_to_cv2, yaw_quaternion
from carpose.shipped import SOURCE_ROOT

REPO = SOURCE_ROOT
IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
GT_TOPIC = "/carpose/ground_truth"
GT_POSES_TOPIC = "/carpose/ground_truth/poses"
CARS_TOPIC = "/carpose/cars"  # the node's ~/cars with its default name
DONTCARE = "DontCare"
STORAGES = ("mcap", "sqlite3")
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAR_POSE_ARRAY = "carpose_msgs/msg/CarPoseArray"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
BAG_VERSION = 9
#: Header stamp of frame 0 of the bags carpose writes (fixed, so the same input gives the same bag).
START_NS = 1_700_000_000 * 1_000_000_000
#: GT is attached to an image by equal header stamps; else the nearest one within this (ns).
STAMP_TOLERANCE_NS = 5_000_000
#: ``gt_topic`` default of the reader: the standard topic if the bag has it, else no ground truth.
AUTO = "auto"


class BagError(ValueError):
    """Not a readable bag, or a topic that is not there; the message says what there is instead."""


# ---- types ------------------------------------------------------------------------------------------
def msg_dirs() -> list[Path]:
    """Where carpose_msgs .msg files are looked for: the repository, then installed share dirs."""
    dirs = [REPO / "ros2_ws" / "src" / "carpose_msgs" / "msg"]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        dirs.append(Path(prefix) / "share" / "carpose_msgs" / "msg")
    return dirs


@lru_cache(maxsize=1)
def typestore() -> Any:
    """ROS 2 Kilted types plus carpose_msgs (same definitions the node was built with)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for d in msg_dirs():
        files = sorted(d.glob("*.msg"))
        if files:
            types: dict = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(), f"carpose_msgs/msg/{f.stem}"))
            store.register(types)
            return store
    raise BagError(f"carpose_msgs .msg files not found in {[str(d) for d in msg_dirs()]}")


def _t(name: str) -> Any:
    return typestore().types[name]


def ns_to_time(ns: int) -> Any:
    return _t("builtin_interfaces/msg/Time")(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def stamp_ns(header: Any) -> int:
    """A header's stamp in integer nanoseconds (works for rosbags and rclpy messages)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _header(ns: int, frame_id: str) -> Any:
    return _t("std_msgs/msg/Header")(stamp=ns_to_time(ns), frame_id=frame_id)


# ---- ground truth -----------------------------------------------------------------------------------
@dataclass
class GtCar:
    """One ground-truth car of one frame."""

    box_xyxy: np.ndarray  # visible box, image pixels
    azimuth_deg: float
    track_id: int = -1
    ignore: bool = False  # DontCare: too small / hidden / truncated to be counted
    position: np.ndarray | None = None  # centre of the 3-D box, optical frame (m)
    rotation_y: float = float("nan")  # KITTI yaw about optical y (rad)

    @property
    def distance_m(self) -> float:
        return float(np.linalg.norm(self.position)) if self.position is not None else float("nan")


def gt_msgs(cars: list[GtCar], stamp: int, frame_id: str, width: int, height: int) -> tuple[Any, Any]:
    """(CarPoseArray, PoseArray) messages of one frame's ground truth (rosbags types)."""
    from carpose.convention import CONVENTION_VERSION

    Q, P, Pt = _t("geometry_msgs/msg/Quaternion"), _t("geometry_msgs/msg/Pose"), _t("geometry_msgs/msg/Point")
    poses, out = [], []
    for c in cars:
        x1, y1, x2, y2 = (float(v) for v in np.asarray(c.box_xyxy, np.float64).reshape(4))
        ry = c.rotation_y if math.isfinite(c.rotation_y) else 0.0
        q = Q(*yaw_quaternion(ry))
        out.append(_t("carpose_msgs/msg/CarPose")(
            center_x=(x1 + x2) / 2, center_y=(y1 + y2) / 2, size_x=x2 - x1, size_y=y2 - y1, class_id=2,
            class_name=DONTCARE if c.ignore else "car", score=1.0, azimuth_deg=float(c.azimuth_deg),
            azimuth_confidence=1.0, azimuth_probs=np.zeros(0, np.float32), orientation=q, track_id=int(c.track_id)))
        pos = c.position if c.position is not None else np.full(3, np.nan)
        poses.append(P(position=Pt(*(float(v) for v in pos)), orientation=Q(*yaw_quaternion(ry))))
    arr = _t(CAR_POSE_ARRAY)(header=_header(stamp, frame_id), image_width=int(width), image_height=int(height),
                             convention_version=str(CONVENTION_VERSION), cars=out, detect_ms=0.0, pose_ms=0.0,
                             total_ms=0.0)
    return arr, _t(POSE_ARRAY)(header=_header(stamp, frame_id), poses=poses)


def gt_from_msgs(arr: Any, poses: Any | None = None) -> list[GtCar]:
    """CarPoseArray (+ index-aligned PoseArray) -> GtCar list."""
    out = []
    plist = list(poses.poses) if poses is not None and len(poses.poses) == len(arr.cars) else None
    for i, c in enumerate(arr.cars):
        box = np.array([c.center_x - c.size_x / 2, c.center_y - c.size_y / 2, c.center_x + c.size_x / 2,
                        c.center_y + c.size_y / 2])
        pos, ry = None, float("nan")
        if plist is not None:
            p = plist[i].position
            pos = np.array([p.x, p.y, p.z], np.float64)
            pos = pos if np.all(np.isfinite(pos)) else None
            o = plist[i].orientation
            ry = 2.0 * math.atan2(o.y, o.w) if pos is not None else float("nan")
        out.append(GtCar(box, float(c.azimuth_deg), int(c.track_id), str(c.class_name) == DONTCARE, pos, ry))
    return out


# ---- writing ----------------------------------------------------------------------------------------
def image_msg(image_bgr: np.ndarray, stamp: int, frame_id: str) -> Any:
    img = np.ascontiguousarray(image_bgr)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8 BGR, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    return _t(IMAGE_TYPE)(header=_header(stamp, frame_id), height=h, width=w, encoding="bgr8", is_bigendian=0,
                          step=w * 3, data=img.reshape(-1))


def camera_info_msg(K: np.ndarray, width: int, height: int, stamp: int, frame_id: str) -> Any:
    k = np.asarray(K, np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t("sensor_msgs/msg/CameraInfo")(
        header=_header(stamp, frame_id), height=int(height), width=int(width), distortion_model="plumb_bob",
        d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi)


class BagWriter:
    """A new rosbag2 bag; ``write`` takes rosbags messages or CDR bytes (e.g. rclpy's
    ``serialize_message``), ``write_frame`` one carpose test frame (image, camera info, GT)."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; rosbag2 writers never overwrite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._w = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        self._w.open()
        self._conns: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None

    def set_custom_data(self, key: str, value: str) -> None:
        """A string in the bag's metadata.yaml (custom_data): provenance such as the drive config."""
        self._w.set_custom_data(key, value)

    def write(self, topic: str, msgtype: str, log_ns: int, msg: Any) -> None:
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._w.add_connection(topic, msgtype, typestore=typestore())
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} already has type {conn.msgtype}, not {msgtype}")
        data = msg if isinstance(msg, (bytes, bytearray, memoryview)) else typestore().serialize_cdr(msg, msgtype)
        self._w.write(conn, int(log_ns), bytes(data))

    def write_frame(self, stamp: int, image_bgr: np.ndarray, K: np.ndarray | None = None,
                    gt: list[GtCar] | None = None, frame_id: str = "camera_optical_frame",
                    image_topic: str = IMAGE_TOPIC, gt_topic: str = GT_TOPIC) -> None:
        """One frame: every message gets header stamp = log time = ``stamp`` (ns)."""
        h, w = image_bgr.shape[:2]
        self.write(image_topic, IMAGE_TYPE, stamp, image_msg(image_bgr, stamp, frame_id))
        if K is not None:
            info = camera_info_msg(K, w, h, stamp, frame_id)
            self.write(CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", stamp, info)
        if gt is not None:
            arr, poses = gt_msgs(gt, stamp, frame_id, w, h)
            self.write(gt_topic, CAR_POSE_ARRAY, stamp, arr)
            self.write(gt_topic + "/poses", POSE_ARRAY, stamp, poses)


def remove_bag(path: str | Path) -> None:
    """Delete a bag directory (or a stale temporary one) if it is there."""
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def staging_path(path: str | Path) -> Path:
    """Where a bag for ``path`` is written before it is complete: ``<path>.partial/<name>`` (the
    storage file inside is named after the bag, so the final bag has the usual file names). Any
    stale staging directory is removed first."""
    final = Path(path)
    stage = final.with_name(final.name + ".partial")
    remove_bag(stage)
    stage.mkdir(parents=True)
    return stage / final.name


def publish_staged(tmp: Path, path: str | Path) -> Path:
    """Move a complete staged bag to ``path`` (replacing what was there) and drop the staging dir."""
    final = Path(path)
    remove_bag(final)
    os.replace(tmp, final)
    remove_bag(tmp.parent)
    return final


@contextmanager
def atomic_bag(path: str | Path) -> Iterator[Path]:
    """Yields the staging path; the bag appears under ``path`` only if the block completes, so an
    interrupted run never leaves something that looks like a complete bag."""
    tmp = staging_path(path)
    try:
        yield tmp
        publish_staged(tmp, path)
    finally:
        remove_bag(tmp.parent)


# ---- reading ----------------------------------------------------------------------------------------
@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int


@dataclass
class BagFrame:
    """One image of the bag, decoded to BGR, with its ground truth (None: the bag has no GT topic;
    [] : GT says no car)."""

    index: int
    log_ns: int  # bag (receive) time
    stamp_ns: int  # header stamp
    image: np.ndarray
    gt: list[GtCar] | None = None
    encoding: str = ""


def _bag_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {p} does not exist")
    if p.is_file() and (p.parent / "metadata.yaml").is_file():
        return p.parent  # the .mcap/.db3 file inside a bag directory
    if p.is_file():
        kind = {".bag": "a ROS 1 bag", ".mcap": "an MCAP file without rosbag2 metadata.yaml",
                ".db3": "an sqlite3 file without rosbag2 metadata.yaml"}.get(p.suffix.lower(), "a file")
        raise BagError(f"{p} is {kind}, not a rosbag2 bag: give the bag directory (with metadata.yaml)")
    if not (p / "metadata.yaml").is_file():
        raise BagError(f"{p} is not a rosbag2 bag: it has no metadata.yaml (an interrupted recording? "
                       f"`ros2 bag reindex` can rebuild it)")
    return p


class BagReader:
    """Frames of one image topic of a rosbag2 bag plus optional ground truth.

    ``image_topic`` None picks /camera/image_raw if present, else the bag's only image topic.
    ``gt_topic`` AUTO uses /carpose/ground_truth if present; None never reads GT; any other name
    must be in the bag.
    """

    def __init__(self, path: str | Path, image_topic: str | None = None, gt_topic: str | None = AUTO) -> None:
        from rosbags.rosbag2 import Reader

        self.path = _bag_dir(path)
        try:
            self._reader = Reader(self.path)
        except Exception as exc:  # rosbags raises ReaderError / YAML / KeyError for damaged metadata
            raise BagError(f"{self.path} is not a readable rosbag2 bag: {type(exc).__name__}: {exc}") from exc
        self.topics = {c.topic: TopicInfo(c.topic, c.msgtype, c.msgcount) for c in self._reader.connections}
        self.storage = str(self._reader.metadata.get("storage_identifier", "?"))
        self.custom_data: dict[str, str] = dict(self._reader.metadata.get("custom_data") or {})
        self.image_topic, self.image_type = self._pick_image_topic(image_topic)
        self.gt_topic = self._pick_gt_topic(gt_topic)
        self._gt: dict[int, list[GtCar]] | None = None

    def describe_topics(self) -> str:
        return ", ".join(f"{t.name} ({t.msgtype}, {t.count})" for t in self.topics.values()) or "no topics"

    def _pick_image_topic(self, want: str | None) -> tuple[str, str]:
        images = [t for t in self.topics.values() if t.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE)]
        if want is not None:
            t = self.topics.get(want)
            if t is None:
                raise BagError(f"image topic {want} is not in {self.path}; image topics there: "
                               f"{[i.name for i in images] or 'none'} (all: {self.describe_topics()})")
            if t.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
                raise BagError(f"topic {want} in {self.path} is {t.msgtype}, not sensor_msgs/msg/Image or "
                               f"CompressedImage")
            return t.name, t.msgtype
        if IMAGE_TOPIC in self.topics and self.topics[IMAGE_TOPIC].msgtype in (IMAGE_TYPE, COMPRESSED_TYPE):
            return IMAGE_TOPIC, self.topics[IMAGE_TOPIC].msgtype
        if len(images) == 1:
            return images[0].name, images[0].msgtype
        if not images:
            raise BagError(f"{self.path} has no sensor_msgs/msg/Image or CompressedImage topic "
                           f"({self.describe_topics()})")
        raise BagError(f"{self.path} has several image topics {[i.name for i in images]}: choose one "
                       f"(--image-topic)")

    def _pick_gt_topic(self, want: str | None) -> str | None:
        if want is None:
            return None
        name = GT_TOPIC if want == AUTO else want
        t = self.topics.get(name)
        if t is None:
            if want == AUTO:
                return None
            raise BagError(f"ground-truth topic {want} is not in {self.path} ({self.describe_topics()})")
        if t.msgtype != CAR_POSE_ARRAY:
            raise BagError(f"ground-truth topic {name} is {t.msgtype}, expected {CAR_POSE_ARRAY}")
        return name

    @property
    def num_frames(self) -> int:
        return self.topics[self.image_topic].count

    @property
    def compressed(self) -> bool:
        return self.image_type == COMPRESSED_TYPE

    def _messages(self, topics: list[str]) -> Iterator[tuple[str, int, bytes]]:
        """Messages of ``topics`` in bag-time order; each call opens its own reader, so several
        iterations can run at once."""
        from rosbags.rosbag2 import Reader

        with Reader(self.path) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            for conn, log_ns, raw in reader.messages(connections=conns):
                yield conn.topic, int(log_ns), raw

    def raw_images(self) -> Iterator[tuple[int, int, bytes]]:
        """(log_ns, header stamp ns, CDR bytes) of every image, in bag order (for republishing)."""
        ts = typestore()
        for _, log_ns, raw in self._messages([self.image_topic]):
            msg = ts.deserialize_cdr(raw, self.image_type)
            yield log_ns, stamp_ns(msg.header), raw

    def decode(self, raw: bytes) -> tuple[np.ndarray, int, str]:
        """CDR bytes of one image message -> (BGR image, header stamp ns, encoding or format)."""
        msg = typestore().deserialize_cdr(raw, self.image_type)
        if self.compressed:
            return compressed_imgmsg_to_cv2(msg, "bgr8"), stamp_ns(msg.header), str(msg.format)
        return imgmsg_to_cv2(msg, "bgr8"), stamp_ns(msg.header), str(msg.encoding)

    def ground_truth(self) -> dict[int, list[GtCar]] | None:
        """Ground truth per header stamp (ns), or None without a GT topic."""
        if self.gt_topic is None:
            return None
        if self._gt is None:
            ts = typestore()
            poses_topic = self.gt_topic + "/poses"
            has_poses = self.topics.get(poses_topic, TopicInfo("", "", 0)).msgtype == POSE_ARRAY
            arrays: dict[int, Any] = {}
            poses: dict[int, Any] = {}
            for topic, _, raw in self._messages([self.gt_topic, *([poses_topic] if has_poses else [])]):
                if topic == self.gt_topic:
                    m = ts.deserialize_cdr(raw, CAR_POSE_ARRAY)
                    arrays[stamp_ns(m.header)] = m
                else:
                    m = ts.deserialize_cdr(raw, POSE_ARRAY)
                    poses[stamp_ns(m.header)] = m
            self._gt = {s: gt_from_msgs(a, poses.get(s)) for s, a in arrays.items()}
        return self._gt

    def gt_for(self, stamp: int) -> list[GtCar] | None:
        """The GT of the image stamped ``stamp``: same stamp, else the nearest within
        STAMP_TOLERANCE_NS; [] when the bag has GT but none for this image (no cars to find)."""
        gt = self.ground_truth()
        if gt is None:
            return None
        if stamp in gt:
            return gt[stamp]
        if not gt:
            return []
        keys = np.fromiter(gt.keys(), np.int64)
        j = int(np.argmin(np.abs(keys - stamp)))
        return gt[int(keys[j])] if abs(int(keys[j]) - stamp) <= STAMP_TOLERANCE_NS else []

    def frames(self) -> Iterator[BagFrame]:
        """Every image decoded to BGR, with its ground truth, in bag order."""
        self.ground_truth()
        for i, (_, log_ns, raw) in enumerate(self._messages([self.image_topic])):
            img, stamp, enc = self.decode(raw)
            yield BagFrame(i, log_ns, stamp, img, self.gt_for(stamp), enc)

    def frame_period_s(self) -> float:
        """Median interval between images by bag time (0.1 s if it cannot be told)."""
        times = np.array([t for _, t, _ in self._messages([self.image_topic])], np.int64)
        if len(times) < 2:
            return 0.1
        dt = float(np.median(np.diff(times))) / 1e9
        return dt if dt > 0 else 0.1


def car_pose_array_to_results(msg: Any) -> list:
    """CarPoseArray (rclpy or rosbags) -> CarPoseResult list, for scoring and drawing."""
    from carpose.results import CarPoseResult

    out = []
    for c in msg.cars:
        box = np.array([c.center_x - c.size_x / 2, c.center_y - c.size_y / 2, c.center_x + c.size_x / 2,
                        c.center_y + c.size_y / 2])
        probs = np.asarray(c.azimuth_probs, np.float32) if len(c.azimuth_probs) else None
        out.append(CarPoseResult(box, float(c.score), int(c.class_id), str(c.class_name), float(c.azimuth_deg),
                                 float(c.azimuth_confidence), 0, probs, int(c.track_id)))
    return out
