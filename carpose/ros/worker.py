"""Latest frame only: a one-slot mailbox that the subscription fills and a worker thread empties,
with the counters and latencies the node reports. No ROS import: the node hands in its messages
and the two callbacks.

The subscription callback only parks the newest message (a message replaced before the worker took
it counts as *dropped*); the worker takes whatever is newest when it is free. So a camera faster
than the model costs dropped frames, never a growing queue or growing latency.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

import numpy as np

_BAD_LOG_PERIOD_S = 10.0


class FrameStats:
    """Counters and recent per-stage latencies, shared by the worker and the diagnostics timer."""

    def __init__(self, window: int = 300) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = self.bad = self.paused = 0
        self.bad_by_encoding: Counter[str] = Counter()
        self.bad_since_report = 0
        self.last_bad_reason = ""
        self.cars_last_frame = 0
        self.stage_ms: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.done_at: deque[float] = deque(maxlen=window)

    def record(self, timings: dict[str, float], cars: int) -> None:
        with self.lock:
            self.processed += 1
            self.cars_last_frame = cars
            self.done_at.append(time.monotonic())
            for k, v in timings.items():
                self.stage_ms[k].append(v)

    def record_bad(self, encoding: str, reason: str) -> None:
        with self.lock:
            self.bad += 1
            self.bad_since_report += 1
            self.bad_by_encoding[encoding] += 1
            self.last_bad_reason = reason

    def fps(self, horizon_s: float = 5.0) -> float:
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.done_at if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def percentiles(self) -> dict[str, tuple[float, float]]:
        with self.lock:
            data = {k: np.asarray(v) for k, v in self.stage_ms.items() if v}
        return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for k, v in data.items()}


class ReasonLog:
    """Log each distinct reason the first time at once, then at most every ``period_s`` with a count,
    so a camera that sends a bad encoding at 30 Hz does not flood the log."""

    def __init__(self, period_s: float = _BAD_LOG_PERIOD_S) -> None:
        self.period_s = period_s
        self.seen: dict[str, list[float]] = {}  # key -> [count, last logged time]

    def should_log(self, reason: str) -> tuple[bool, int]:
        key = re.sub(r"\d+", "N", reason)  # '100 bytes' and '101 bytes' are the same problem
        now = time.monotonic()
        if key not in self.seen and len(self.seen) >= 256:  # bounded memory, whatever the input
            self.seen.clear()
        entry = self.seen.setdefault(key, [0, -1e9])
        entry[0] += 1
        if now - entry[1] >= self.period_s:
            entry[1] = now
            return True, int(entry[0])
        return False, int(entry[0])


class LatestFrameWorker:
    """The mailbox and its thread. ``process(msg, t_received)`` runs on the worker thread for each
    frame it takes; an exception there goes to ``on_error(msg, exc)`` and the worker carries on.
    While not :attr:`enabled` (``~/enable``), offered frames are counted as paused and dropped."""

    def __init__(self, stats: FrameStats, process: Callable[[Any, float], None],
                 on_error: Callable[[Any, Exception], None], name: str = "carpose-worker") -> None:
        self.stats = stats
        self.enabled = True
        self._process = process
        self._on_error = on_error
        self._name = name
        self._slot_cond = threading.Condition()  # guards _pending
        self._pending: tuple[Any, float] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def offer(self, msg: Any) -> None:
        """Executor thread: park the newest frame and return at once."""
        with self.stats.lock:
            self.stats.received += 1
            if not self.enabled:
                self.stats.paused += 1
                return
        with self._slot_cond:
            if self._pending is not None:
                with self.stats.lock:
                    self.stats.dropped += 1
            self._pending = (msg, time.perf_counter())
            self._slot_cond.notify()

    def set_enabled(self, enabled: bool) -> None:
        """Pause (the frame waiting is dropped) or resume."""
        self.enabled = enabled
        if not enabled:
            with self._slot_cond:
                self._pending = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (it finishes the frame in hand) and drop the frame waiting."""
        self._stop.set()
        with self._slot_cond:
            self._pending = None
            self._slot_cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._slot_cond:
                while self._pending is None and not self._stop.is_set():
                    self._slot_cond.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                msg, t_recv = self._pending
                self._pending = None
            try:
                self._process(msg, t_recv)
            except Exception as exc:  # never let one frame kill the worker
                if self._stop.is_set():
                    return
                self._on_error(msg, exc)
