"""The reader thread: calls ``camera.read()`` at a fixed rate and queues what it got, so a hung driver stalls only
this thread and the monitor can notice."""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable

from .base import Camera, Image

logger = logging.getLogger(__name__)

#: ``(monotonic time of the read, image or None for a failed read)``
Observation = tuple[float, Image | None]


class FrameGrabber:
    """Reads ``camera`` every ``interval`` s on thread ``camera-reader``; owns the camera and closes it on exit."""

    def __init__(self, camera: Camera, interval: float, clock: Callable[[], float], max_queued: int = 8) -> None:
        self.camera = camera
        self.interval = interval
        self._clock = clock
        self._queue: queue.Queue[Observation] = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop reading and wake a consumer blocked in :meth:`get`. A hung ``read()`` keeps the camera open."""
        self._stop.set()
        self._put((math.nan, None))
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("camera read did not return within %.1f s; the camera is left open", timeout)

    def get(self, timeout: float) -> Observation | None:
        """The next observation, or ``None`` if none came within ``timeout`` (or after :meth:`stop`)."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if self._stop.is_set() else item

    def _run(self) -> None:
        next_tick = self._clock()
        try:
            while not self._stop.is_set():
                try:
                    image = self.camera.read()
                except Exception:
                    logger.exception("camera read raised; counted as a failed read")
                    image = None
                self._put((self._clock(), image))
                next_tick += self.interval
                now = self._clock()
                next_tick = max(next_tick, now)
                self._stop.wait(next_tick - now)
        finally:
            try:
                self.camera.close()
            except Exception:
                logger.exception("closing the camera failed")

    def _put(self, item: Observation) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()  # drop the oldest: the monitor thread is behind
                except queue.Empty:
                    pass
