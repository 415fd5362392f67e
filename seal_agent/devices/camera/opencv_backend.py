"""A real camera through ``cv2.VideoCapture`` (V4L2 device index or path), and the source-string factory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .base import Camera, Image
from .capture import CaptureCamera

logger = logging.getLogger(__name__)


class OpenCVCamera(CaptureCamera):
    """A USB or CSI camera read with OpenCV.

    ``read()`` never raises: when the device is not there it returns ``None`` and tries to open it again at most every
    ``reopen_interval_s``; after ``reopen_after_failures`` failed reads in a row it releases the device and reopens it
    (a replugged USB camera comes back this way). Before each read one buffered frame is dropped (``grab()``) so that a
    slow reader gets a current image rather than one queued seconds ago.

    Wiring: a USB UVC camera on any USB port (``source=0`` → ``/dev/video0``).
    """

    def __init__(
        self,
        source: int | str,
        *,
        reopen_interval_s: float = 2.0,
        reopen_after_failures: int = 3,
        flush_buffered: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.source = source
        self.label = f"camera {source}"
        self.reopen_interval_s = reopen_interval_s
        self.reopen_after_failures = reopen_after_failures
        self.flush_buffered = flush_buffered
        self._clock = clock
        self._next_open = 0.0
        self._failures = 0
        self._open()

    @property
    def is_open(self) -> bool:
        return self._capture is not None

    def _read(self) -> Image | None:
        if self._capture is None and not self._open():
            return None
        assert self._capture is not None
        if self.flush_buffered:
            self._capture.grab()
        ok, image = self._capture.read()
        if not ok or image is None:
            self._failures += 1
            if self._failures >= self.reopen_after_failures:
                logger.warning("camera %s: %d failed reads, releasing the device", self.source, self._failures)
                self._release()
            return None
        self._failures = 0
        return np.asarray(image, dtype=np.uint8)

    def _open(self) -> bool:
        now = self._clock()
        if now < self._next_open:
            return False
        self._next_open = now + self.reopen_interval_s
        try:
            capture = cv2.VideoCapture(self.source)
        except cv2.error as exc:
            logger.warning("camera %s: cannot open: %s", self.source, exc)
            return False
        if not capture.isOpened():
            capture.release()
            logger.debug("camera %s: not available", self.source)
            return False
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture
        self._failures = 0
        logger.info("camera %s: opened", self.source)
        return True

    def _released(self) -> None:
        self._next_open = self._clock() + self.reopen_interval_s


def open_camera(source: str) -> Camera | None:
    """The camera named by a ``[camera] source`` string: ``""`` → ``None`` (no camera); ``"0"`` → device index 0;
    ``/dev/...`` → that device; any other path → a looping :class:`VideoFileCamera` played in real time."""
    from .video_file import VideoFileCamera

    source = source.strip()
    if not source:
        return None
    if source.isdigit():
        return OpenCVCamera(int(source))
    if source.startswith("/dev/"):
        return OpenCVCamera(source)
    return VideoFileCamera(Path(source), loop=True, realtime=True)
