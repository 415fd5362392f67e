"""A camera that plays a video file: for tests, the demo, and bench runs without hardware."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .base import Image
from .capture import CaptureCamera

logger = logging.getLogger(__name__)


class VideoFileCamera(CaptureCamera):
    """Reads frames from a video file (MJPG ``.avi`` or ``mp4v`` ``.mp4``).

    - ``loop=True``: at the end the file is opened again from its path (so deleting the file makes the camera fail,
      as an unplugged device would); ``loop=False``: after the last frame ``read()`` returns ``None`` for good.
    - ``realtime=False``: each ``read()`` returns the next frame of the file. ``realtime=True``: ``read()`` returns the
      frame due at the time elapsed since opening (skipping frames, or waiting for the next one like a live camera).
    - A missing or unreadable file gives ``None`` and is tried again at most every ``reopen_interval_s``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        loop: bool = True,
        realtime: bool = False,
        reopen_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.label = f"video {self.path}"
        self.loop = loop
        self.realtime = realtime
        self.reopen_interval_s = reopen_interval_s
        self._clock = clock
        self._sleep = sleep
        self._next_open = 0.0
        self._opened_at = 0.0
        self._file_fps = 0.0
        self._position = 0  # index of the next frame in the file
        self.ended = False
        self.frames_read = 0

    def _readable(self) -> bool:
        return not self.ended

    def _read(self) -> Image | None:
        if self._capture is None and not self._open():
            return None
        assert self._capture is not None
        if self.realtime:
            self._catch_up(self._capture)
        ok, image = self._capture.read()
        if not ok or image is None:
            self._release()
            if not self.loop:
                logger.info("video %s: ended after %d frames", self.path, self.frames_read)
                self.ended = True
                return None
            self._next_open = 0.0  # loop: reopen at once
            if not self._open():
                return None
            assert self._capture is not None
            ok, image = self._capture.read()
            if not ok or image is None:
                self._release()
                return None
        self._position += 1
        self.frames_read += 1
        return np.asarray(image, dtype=np.uint8)

    def _catch_up(self, capture: cv2.VideoCapture) -> None:
        due = (self._clock() - self._opened_at) * self._file_fps
        if due < self._position:  # early: wait for the frame like a live camera would
            self._sleep((self._position - due) / self._file_fps)
            return
        while self._position + 1 <= due and capture.grab():
            self._position += 1

    def _open(self) -> bool:
        now = self._clock()
        if now < self._next_open:
            return False
        self._next_open = now + self.reopen_interval_s
        if not self.path.is_file():
            logger.debug("video %s: no such file", self.path)
            return False
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            logger.warning("video %s: cannot be opened", self.path)
            return False
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        self._file_fps = fps if fps > 0 else 10.0
        self._capture = capture
        self._opened_at = now
        self._position = 0
        return True
