"""``carpose_node``: the ROS 2 lifecycle node around :class:`carpose.pipeline.Pipeline`.

    carpose_node --ros-args -r image:=/camera/image_raw -p det_conf:=0.35

Lifecycle: ``on_configure`` loads the models and runs one warm-up frame, so a missing or
incompatible model fails at start-up with a logged reason, not at the first image;
``on_activate`` subscribes and starts the worker; ``on_deactivate`` / ``on_cleanup`` undo that.
With ``autostart`` (default) the node configures and activates itself and exits with status 1
when configuring fails; with ``autostart:=false`` a lifecycle manager drives it.

This module wires the node's parts together; each job has its own module in ``carpose.ros``:
``params`` (parameters, validation, the pipeline they make, dynamic changes), ``worker`` (latest
frame only: a one-slot mailbox and the worker thread; a message replaced before the worker took it
counts as *dropped*), ``inputs`` (the image subscription with a QoS that matches the camera, and
CameraInfo) and ``outputs`` (publishers and /diagnostics).

Topics (relative names, so namespaces and remapping work): subscribes ``image``
(sensor_msgs/Image, or sensor_msgs/CompressedImage on ``<image>/compressed`` with
``compressed:=true``); publishes ``~/cars`` (carpose_msgs/CarPoseArray, header of the input
image), ``~/debug_image`` (annotated bgr8, drawn only while someone subscribes), ``~/markers``
(visualization_msgs/MarkerArray, see :func:`carpose.ros.convert.frame_to_markers`) and
``/diagnostics`` (1 Hz). Service ``~/enable`` (std_srvs/SetBool) pauses and resumes inference
without tearing anything down.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool

from carpose.pipeline import Pipeline
from carpose.ros.convert import compressed_imgmsg_to_cv2, encoding_of, imgmsg_to_cv2
from carpose.ros.dds import apply_recommended
from carpose.ros.inputs import ImageInput
from carpose.ros.outputs import Outputs, diagnostic_status
from carpose.ros.params import apply_dynamic, declare_parameters, parameter_error, pipeline_config
from carpose.ros.worker import FrameStats, LatestFrameWorker, ReasonLog

NODE_NAME = "carpose"


class CarPoseNode(LifecycleNode):
    """Lifecycle node: image -> Pipeline -> CarPoseArray (+ debug image, markers, diagnostics)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.stats = FrameStats()
        self._reasons = ReasonLog()
        self._pipeline: Pipeline | None = None
        self._pipe_lock = threading.Lock()  # the worker's process() vs. dynamic parameter changes
        self._worker = LatestFrameWorker(self.stats, self._process, self._bad_frame)
        self._input = ImageInput(self, self._worker.offer)
        self._out: Outputs | None = None
        self._active = False
        self.create_service(SetBool, "~/enable", self._on_enable)

    # ---- parameters -------------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject bad values with a reason (ranges are also in the descriptors)."""
        for p in params:
            reason = parameter_error(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Dynamic parameters change the running pipeline now; others are picked up later."""
        with self._pipe_lock:
            if self._pipeline is None:
                return
            for p in params:
                if note := apply_dynamic(self._pipeline, p.name, p.value):
                    self.get_logger().info(note)

    # ---- lifecycle --------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._load_pipeline()
        except Exception as exc:  # a missing / incompatible model: say so, stay unconfigured
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self._pipeline = None
            return TransitionCallbackReturn.FAILURE
        self._out = Outputs(self, self._publish_diagnostics)
        return super().on_configure(state)

    def _load_pipeline(self) -> None:
        cfg = pipeline_config(self._param)
        t0 = time.perf_counter()
        pipe = Pipeline(cfg)
        # Warm-up: proves the models run (shapes, providers) now and takes the first-call cost out
        # of the first real frame.
        grey = np.full((240, 320, 3), 114, np.uint8)
        pipe.process(grey, boxes=np.array([[100.0, 60.0, 220.0, 180.0]]))
        if pipe.detector is not None:
            pipe.process(grey)
        if pipe.tracker is not None:
            pipe.set_smoothing(True)  # forget the warm-up's track
        with self._pipe_lock:
            self._pipeline = pipe
        det_name = "none (whole frame = one car)" if cfg.detector_weights is None else cfg.detector_weights
        self.get_logger().info(f"pipeline ready in {time.perf_counter() - t0:.1f} s: pose {cfg.pose_model} "
                               f"({pipe.pose.backend.name}), detector {det_name}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers first
        try:
            self._worker.start()
            self._input.start()
        except Exception as exc:
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            self._stop_input()
            super().on_deactivate(state)  # publishers off again: the node stays inactive
            return TransitionCallbackReturn.FAILURE
        self._active = True
        kind = "CompressedImage" if self._input.compressed else "Image"
        self.get_logger().info(f"active: {kind} on {self._input.topic} -> {self.resolve_topic_name('~/cars')}")
        return ret

    def _stop_input(self) -> None:
        """Unsubscribe and stop the worker (it finishes the frame in hand)."""
        self._active = False
        self._input.stop()
        self._worker.stop()

    def _release(self) -> None:
        """Drop what configure made."""
        if self._out is not None:
            self._out.destroy()
        self._out = None
        with self._pipe_lock:
            self._pipeline = None

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.teardown()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def teardown(self) -> None:
        """Everything off, whatever the state (shutdown, errors, Ctrl-C)."""
        self._stop_input()
        self._release()

    # ---- enable service ---------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self._worker.set_enabled(bool(req.data))
        resp.success = True
        resp.message = "inference enabled" if self._worker.enabled else "inference paused"
        if not self._active:
            resp.message += " (the node is not active yet)"
        self.get_logger().info(resp.message)
        return resp

    # ---- frames (worker thread) -------------------------------------------------------------------
    def _process(self, msg: Any, t_recv: float) -> None:
        t0 = time.perf_counter()
        img = compressed_imgmsg_to_cv2(msg) if self._input.compressed else imgmsg_to_cv2(msg, "bgr8")
        t1 = time.perf_counter()
        with self._pipe_lock:
            pipe = self._pipeline
            if pipe is None:
                return
            boxes = None if pipe.detector is not None else np.array([[0.0, 0.0, img.shape[1], img.shape[0]]])
            res = pipe.process(img, boxes=boxes)
        t2 = time.perf_counter()
        self._out.publish_frame(res, msg.header, img, self._input.camera_model(img.shape[1]),
                                float(self._param("camera_hfov_deg")), bool(self._param("debug_image")),
                                self.stats.fps)
        t3 = time.perf_counter()
        timings = {k: res.timings_ms.get(k, 0.0) for k in ("detect", "crop", "pose", "track")}
        timings.update(convert=(t1 - t0) * 1000, pipeline=(t2 - t1) * 1000, publish=(t3 - t2) * 1000,
                       end_to_end=(t3 - t_recv) * 1000)
        self.stats.record(timings, len(res.cars))

    def _bad_frame(self, msg: Any, exc: Exception) -> None:
        """Count it per encoding and log the reason once (then throttled); the node carries on."""
        enc = encoding_of(msg)
        reason = f"{type(exc).__name__}: {exc}"
        self.stats.record_bad(enc, reason)
        log, n = self._reasons.should_log(reason)
        if log:
            again = f" (seen {n} times)" if n > 1 else ""
            self.get_logger().warning(f"skipped a bad frame ({enc}){again}: {reason}")

    # ---- diagnostics ------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._out is None:
            return
        self._out.publish_diagnostics(diagnostic_status(
            self.stats, name=f"{self.get_name()}: pipeline", hardware_id=self.get_fully_qualified_name(),
            active=self._active, enabled=self._worker.enabled, input_topic=self._input.topic,
            input_reliable=self._input.reliable, intrinsics=self._input.intrinsics_source()))


def spin_until_shutdown(executor: Executor) -> None:
    """``executor.spin()`` until Ctrl-C or a shutdown. Why not a bare ``spin()``: rclpy's signal handler
    shuts the context down from its own thread, and an executor that is building its next wait set at
    that moment raises ``RCLError`` ("the given context is not valid") instead of
    ``ExternalShutdownException`` (ros2/rclpy#398, ros-visualization/rqt#357): the node then left with a
    traceback and exit status 1 on about one Ctrl-C in 300 test runs. The same error while the context
    is still up is a real fault and propagates."""
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:  # rclpy's RCLError is a RuntimeError
        if executor.context.ok():
            raise


def main(args: list[str] | None = None) -> int:
    """Console script ``carpose_node``; returns the exit status (1: configure/activate failed)."""
    dds = apply_recommended()  # before rclpy.init: Fast DDS reads it when the participant is made
    rclpy.init(args=args)
    node: CarPoseNode | None = None
    rc = 0
    try:
        try:
            node = CarPoseNode()
            if dds:
                node.get_logger().info("DDS settings for large images: "
                                       + ", ".join(f"{k}={v}" for k, v in dds.items()))
        except Exception as exc:  # bad parameter overrides (type, range) are reported here
            hint = " (floating-point parameters need a decimal point: 6.0, not 6)" if "expecting type 'DOUBLE'" \
                in str(exc) else ""
            print(f"carpose_node: bad parameters: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
            return 2
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("could not configure (see the error above); exiting")
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("could not activate (see the error above); exiting")
                return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):  # during configure / activate
        pass
    finally:
        # launch forwards a second SIGINT while we tear down (Ctrl-C reaches the whole process group);
        # finishing the teardown matters more than reacting to it again.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.teardown()
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


def run() -> None:
    """Console script ``carpose_node``: :func:`main`, then leave at once. Why: once the node is torn
    down, Python's own finalisation of torch (which ultralytics loads for the detector) takes 4-7 s
    on 2 cores, and ``ros2 launch`` escalates to SIGTERM after 5 s of SIGINT. Everything of ours is
    closed by then; only the output buffers need flushing."""
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    run()
