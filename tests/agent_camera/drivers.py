"""A scripted camera driver for the camera tests: it gives exactly the frames a test puts, nothing else."""

from __future__ import annotations

import queue
import threading

import numpy as np

from seal_agent.devices.camera import CameraMonitor

#: How long a paced read waits for the monitor before reading all the same (short: a stopped monitor never catches up).
PACE_TIMEOUT_S = 0.5


class ScriptedCamera:
    """A driver double: ``read()`` gives the frames the test put, in order; ``None`` (no frame) when none is left.

    After :meth:`pace`, each read first waits until the monitor has taken in every read before it, so the reader
    thread never gets ahead of the monitor and no frame is dropped from the grabber's queue (counts can be exact).
    """

    def __init__(self) -> None:
        self._frames: queue.Queue[np.ndarray] = queue.Queue()
        self._monitor: CameraMonitor | None = None
        self._changed = threading.Condition()
        self.reads = 0
        self.given = 0  # frames returned so far

    def put(self, *frames: np.ndarray) -> None:
        for frame in frames:
            self._frames.put(frame)

    def pace(self, monitor: CameraMonitor) -> None:
        self._monitor = monitor

    def read(self) -> np.ndarray | None:
        if self._monitor is not None:
            self._monitor.wait_for_observations(self.reads, timeout=PACE_TIMEOUT_S)
        try:
            frame: np.ndarray | None = self._frames.get_nowait()
        except queue.Empty:
            frame = None
        with self._changed:
            self.reads += 1
            self.given += frame is not None
            self._changed.notify_all()
        return frame

    def wait_given(self, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` frames were read; the number of reads so far (frames and ``None``)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.given >= count, timeout), f"{self.given} of {count} read"
            return self.reads

    def close(self) -> None:
        pass
