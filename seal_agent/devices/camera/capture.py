"""What the two OpenCV backends share: a ``cv2.VideoCapture`` behind a ``read()`` that never raises."""

from __future__ import annotations

import logging
from typing import Self

import cv2

from .base import Image

logger = logging.getLogger(__name__)


class CaptureCamera:
    """Base of :class:`~.opencv_backend.OpenCVCamera` and :class:`~.video_file.VideoFileCamera`.

    Subclasses implement ``_read()`` (which may raise ``cv2.error``) and set ``_capture`` when they open their source;
    ``read()`` turns an OpenCV error into ``None`` and releases the capture so that the next read opens it again.
    """

    #: How log lines name the source, e.g. "camera 0" or "video /path/clip.avi".
    label = "camera"

    def __init__(self) -> None:
        self._capture: cv2.VideoCapture | None = None
        self._closed = False

    def read(self) -> Image | None:
        if self._closed or not self._readable():
            return None
        try:
            return self._read()
        except cv2.error as exc:
            logger.warning("%s: OpenCV error while reading: %s", self.label, exc)
            self._release()
            return None

    def close(self) -> None:
        self._closed = True
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _readable(self) -> bool:
        """False when the source has nothing more to give (e.g. a video that ended)."""
        return True

    def _read(self) -> Image | None:
        raise NotImplementedError

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
            self._released()

    def _released(self) -> None:
        """Called after the capture was released (e.g. to delay the next open)."""
