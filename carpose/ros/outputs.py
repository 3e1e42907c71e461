"""The node's outputs: ``~/cars`` (carpose_msgs/CarPoseArray, header of the input image),
``~/markers`` (visualization_msgs/MarkerArray, :func:`carpose.ros.convert.frame_to_markers`) and
``~/debug_image`` (annotated bgr8), each built only while someone listens except ``~/cars``; and
``/diagnostics`` (1 Hz): fps, per-stage p50/p95 latency, frame counters, bad frames per encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from carpose_msgs.msg import CarPoseArray
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carpose.convention import CONVENTION_VERSION
from carpose.results import FrameResult
from carpose.ros.convert import cv2_to_imgmsg, frame_to_markers, frame_to_msg
from carpose.ros.worker import FrameStats

#: Stages whose p50/p95 latency /diagnostics reports (ms). end_to_end = received -> published.
STAGES = ("convert", "detect", "crop", "pose", "track", "pipeline", "publish", "end_to_end")


class Outputs:
    """The publishers configure creates and cleanup destroys; ``diagnostics`` is called at 1 Hz."""

    def __init__(self, node: LifecycleNode, diagnostics: Callable[[], None]) -> None:
        self.node = node
        self.cars = node.create_lifecycle_publisher(CarPoseArray, "~/cars", 10)
        self.debug = node.create_lifecycle_publisher(Image, "~/debug_image", 2)
        self.markers = node.create_lifecycle_publisher(MarkerArray, "~/markers", 10)
        self.diag = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = node.create_timer(1.0, diagnostics)

    def publish_frame(self, res: FrameResult, header: Any, image_bgr: np.ndarray, cam: dict[str, float | None],
                      hfov_deg: float, debug_image: bool, fps: Callable[[], float]) -> None:
        """One processed frame: the cars always, markers and the debug image while subscribed."""
        self.cars.publish(frame_to_msg(res, header, CONVENTION_VERSION, camera_fx=cam["camera_fx"],
                                       cx=cam["cx"], hfov_deg=hfov_deg))
        if self.markers.get_subscription_count() > 0:
            self.markers.publish(frame_to_markers(res, header, hfov_deg=hfov_deg, **cam))
        if debug_image and self.debug.get_subscription_count() > 0:
            from carpose.draw import annotate

            shown = annotate(image_bgr, res.cars, fps=fps())
            self.debug.publish(cv2_to_imgmsg(shown, "bgr8", header=header))

    def publish_diagnostics(self, status: DiagnosticStatus) -> None:
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.node.get_clock().now().to_msg()
        self.diag.publish(arr)

    def destroy(self) -> None:
        for pub in (self.cars, self.debug, self.markers):
            self.node.destroy_lifecycle_publisher(pub)
        self.node.destroy_timer(self.diag_timer)
        self.node.destroy_publisher(self.diag)


def diagnostic_status(stats: FrameStats, *, name: str, hardware_id: str, active: bool, enabled: bool,
                      input_topic: str, input_reliable: bool, intrinsics: str) -> DiagnosticStatus:
    """The node's one DiagnosticStatus; takes (and resets) the bad-frame count of this period."""
    s = stats
    fps = s.fps()
    pct = s.percentiles()
    with s.lock:
        counters = {"frames_received": s.received, "frames_processed": s.processed,
                    "frames_dropped": s.dropped, "frames_bad": s.bad, "frames_paused": s.paused,
                    "cars_last_frame": s.cars_last_frame}
        bad_now, s.bad_since_report = s.bad_since_report, 0
        by_enc = dict(s.bad_by_encoding)
        last_bad = s.last_bad_reason
    st = DiagnosticStatus(name=name, hardware_id=hardware_id)
    if not active:
        st.level, st.message = DiagnosticStatus.WARN, "inactive"
    elif not enabled:
        st.level, st.message = DiagnosticStatus.WARN, "paused (~/enable)"
    elif bad_now:
        st.level, st.message = DiagnosticStatus.WARN, f"{bad_now} bad frame(s) in the last period: {last_bad}"
    else:
        st.level, st.message = DiagnosticStatus.OK, f"active, {fps:.1f} fps"
    values = {"state": "active" if active else "inactive", "enabled": str(enabled).lower(),
              "input_topic": input_topic, "fps": f"{fps:.2f}",
              "input_qos": "reliable" if input_reliable else "best_effort",
              "intrinsics": intrinsics}
    values.update({k: str(v) for k, v in counters.items()})
    for stage in STAGES:
        if stage in pct:
            values[f"{stage}_ms_p50"], values[f"{stage}_ms_p95"] = (f"{x:.2f}" for x in pct[stage])
    values.update({f"bad_frames[{enc}]": str(n) for enc, n in sorted(by_enc.items())})
    if last_bad:
        values["last_bad_reason"] = last_bad
    st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return st
