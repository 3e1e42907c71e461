"""The node's spin loop at Ctrl-C (carpose.ros.node.spin_until_shutdown), on a real rclpy context and
executor. rclpy's signal handler shuts the context down from its own thread; when that lands between
``spin()``'s check of the context and the next wait set, the wait set fails with RCLError. The subclass
below puts the shutdown exactly there, so the real error happens every time instead of once in 300 runs."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from carpose.ros.node import spin_until_shutdown  # noqa: E402


class ShutdownBeforeTheWaitSet(SingleThreadedExecutor):
    def spin_once(self, timeout_sec: float | None = None) -> None:
        self.context.shutdown()  # what the signal handler's thread does
        super().spin_once(timeout_sec)


class FaultyExecutor(SingleThreadedExecutor):
    def spin_once(self, timeout_sec: float | None = None) -> None:
        raise RuntimeError("a fault with the context still up")


def _executor(kind: type[SingleThreadedExecutor]) -> SingleThreadedExecutor:
    context = rclpy.Context()
    rclpy.init(context=context)
    return kind(context=context)


def test_a_shutdown_racing_the_wait_set_ends_the_spin_quietly():
    ex = _executor(ShutdownBeforeTheWaitSet)
    with pytest.raises(RuntimeError, match="context is not valid"):  # the race, as rclpy raises it
        SingleThreadedExecutor.spin(ex)
    ex = _executor(ShutdownBeforeTheWaitSet)
    spin_until_shutdown(ex)  # returns: a shutdown, not a crash
    assert not ex.context.ok()


def test_the_same_error_with_the_context_up_is_raised():
    ex = _executor(FaultyExecutor)
    with pytest.raises(RuntimeError, match="a fault"):
        spin_until_shutdown(ex)
    assert ex.context.ok()
    ex.context.try_shutdown()
