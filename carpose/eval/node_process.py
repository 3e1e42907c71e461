"""The carpose node as a subprocess: started with its output in a log file, awaited until active, stopped.

Why its own module: the bag replay (carpose.eval.bag_replay), the node tests and the node benchmark
all start the node the same way; none of them needs the replay to do it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from carpose.pipeline import REPO


class NodeError(RuntimeError):
    """The node failed; the message has the reason and the end of its log."""


class NodeStartError(NodeError):
    """The node did not come up (``--fallback-offline`` then evaluates in-process)."""


class NodeProcess:
    """The node as a process with its output in a log file (no pipe to fill up): by default
    ``python -m carpose.ros.node`` from this source tree; ``command`` runs another executable (an
    installed ``lib/carpose/carpose_node``) with ``env`` (full environment) in ``cwd``."""

    def __init__(self, ros_args: list[str], log: Path, domain: int, command: list[str] | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        if env is None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env = dict(env, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                   PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen([*(command or [sys.executable, "-m", "carpose.ros.node"]), "--ros-args",
                                          *ros_args], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         cwd=cwd or REPO)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_active(self, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if "]: active:" in self.output():
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise NodeStartError(f"the node exited with status {self.proc.returncode} before it was active; "
                                     f"its log ({self.log}) ends:\n{self.output()[-2000:]}")
            time.sleep(0.1)
        self.stop()
        raise NodeStartError(f"the node was not active after {timeout:g} s; its log ({self.log}) ends:\n"
                             f"{self.output()[-2000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

