"""The node's input: the image subscription, with a QoS that matches the camera, and the CameraInfo
beside it.

Reliability (``image_reliability``, README "Cameras and DDS"): a reliable subscription never hears a
best-effort publisher, and a best-effort one turns a reliable camera's stream into best-effort
delivery. ``auto`` subscribes reliable when every publisher of the topic is reliable, best effort
otherwise, and re-checks every second (a camera started later is matched too). CameraInfo's ``K``
gives the messages' orientation and markers (scaled when the image is resized); without it the node
uses ``camera_hfov_deg`` and says so once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image


class ImageInput:
    """Subscriptions of one activation: :meth:`start` on activate, :meth:`stop` on deactivate.
    ``on_image(msg)`` gets every image message on the executor thread."""

    def __init__(self, node: Node, on_image: Callable[[Any], None]) -> None:
        self.node = node
        self.on_image = on_image
        self.sub = None
        self.compressed = False
        self.reliable = False
        self.topic = ""
        self._qos_timer = None
        self._info_sub = None
        self.info_topic = ""
        self.intrinsics: tuple[float, float, float, int] | None = None  # fx, cx, cy, width of CameraInfo
        self._said_no_info = False

    def _param(self, name: str) -> Any:
        return self.node.get_parameter(name).value

    def start(self) -> None:
        """Subscribe the image topic (``<topic>/compressed`` with ``compressed``) and its CameraInfo."""
        compressed = bool(self._param("compressed"))
        topic = str(self._param("image_topic"))
        if compressed:
            topic = self.node.resolve_topic_name(topic) + "/compressed"
        self.compressed = compressed
        self._subscribe_image(topic, self.want_reliable(topic))
        if self.reliability() == "auto":
            self._qos_timer = self.node.create_timer(1.0, self.check_reliability)
        self._subscribe_camera_info()

    def stop(self) -> None:
        for sub in (self.sub, self._info_sub):
            if sub is not None:
                self.node.destroy_subscription(sub)
        self.sub = self._info_sub = None
        if self._qos_timer is not None:
            self.node.destroy_timer(self._qos_timer)
            self._qos_timer = None

    # ---- image QoS that matches the camera ---------------------------------------------------------
    def reliability(self) -> str:
        return "reliable" if self._param("qos_reliable") else str(self._param("image_reliability"))

    def want_reliable(self, topic: str) -> bool:
        """Reliable only when asked, or (auto) when the topic has publishers and all are reliable:
        a reliable camera then gets reliable delivery (large frames are resent, not lost), and a
        best-effort one still matches (a reliable subscription would never hear it)."""
        mode = self.reliability()
        if mode != "auto":
            return mode == "reliable"
        pubs = self.node.get_publishers_info_by_topic(self.node.resolve_topic_name(topic))
        return bool(pubs) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)

    def _subscribe_image(self, topic: str, reliable: bool) -> None:
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        msg_type = CompressedImage if self.compressed else Image
        self.sub = self.node.create_subscription(msg_type, topic, self.on_image, qos)
        self.reliable = reliable
        self.topic = self.sub.topic_name

    def check_reliability(self) -> None:
        if self.sub is None:
            return
        want = self.want_reliable(self.topic)
        if want != self.reliable:
            self._subscribe_image(self.topic, want)
            self.node.get_logger().info(f"image subscription is now {'reliable' if want else 'best effort'} "
                                        f"to match the publishers of {self.topic}")

    # ---- CameraInfo --------------------------------------------------------------------------------
    def _subscribe_camera_info(self) -> None:
        topic = str(self._param("camera_info_topic")).strip()
        if not topic:  # the camera_info beside the image, as camera drivers publish it
            image = self.topic.removesuffix("/compressed") if self.compressed else self.topic
            topic = image.rsplit("/", 1)[0] + "/camera_info"
        self.intrinsics, self._said_no_info = None, False
        self._info_sub = self.node.create_subscription(CameraInfo, topic, self._on_camera_info,
                                                       QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.info_topic = self._info_sub.topic_name

    def _on_camera_info(self, msg: CameraInfo) -> None:
        fx, cx, cy = float(msg.k[0]), float(msg.k[2]), float(msg.k[5])
        if fx > 0.0 and msg.width > 0:  # K all zero: an uncalibrated camera, keep the fallback
            if self.intrinsics is None:
                self.node.get_logger().info(f"using CameraInfo from {self.info_topic}: fx {fx:.1f}, cx {cx:.1f}")
            self.intrinsics = (fx, cx, cy, int(msg.width))

    def camera_model(self, width: int) -> dict[str, float | None]:
        """fx / cx / cy for this frame's width from CameraInfo (scaled if the image was resized), or
        nothing: the messages then fall back to camera_hfov_deg, which is said once."""
        k = self.intrinsics
        if k is None:
            if not self._said_no_info:
                self._said_no_info = True
                self.node.get_logger().warning(f"no CameraInfo on {self.info_topic}: orientation and markers use "
                                               f"camera_hfov_deg = {self._param('camera_hfov_deg')}")
            return {"camera_fx": None, "cx": None, "cy": None}
        s = width / k[3]
        return {"camera_fx": k[0] * s, "cx": k[1] * s, "cy": k[2] * s}

    def intrinsics_source(self) -> str:
        """Where the intrinsics come from, for /diagnostics."""
        if self.intrinsics:
            return "camera_info"
        return f"camera_hfov_deg {self._param('camera_hfov_deg')} (no CameraInfo on {self.info_topic})"
