"""Motion by background subtraction (OpenCV MOG2), and JPEG encoding of frames."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from .base import Image
from .errors import FrameNotEncodable

logger = logging.getLogger(__name__)

#: Frames are analysed at this width (aspect kept): enough for a person, cheap on a Raspberry Pi.
ANALYSIS_WIDTH = 320

_KERNEL = np.ones((3, 3), np.uint8)


class MotionDetector:
    """Says whether a frame differs from the learned background by a blob of at least ``min_area`` of the frame.

    The first ``learning_frames`` frames (after construction, :meth:`reset` or a change of frame size) only teach
    the background: :meth:`feed` returns ``None`` for them, meaning "no verdict".
    """

    def __init__(self, min_area: float = 0.005, learning_frames: int = 5, var_threshold: float = 25.0) -> None:
        if not 0.0 < min_area <= 1.0:
            raise ValueError("min_area is a fraction of the frame, in (0, 1]")
        self.min_area = min_area
        self.learning_frames = learning_frames
        self.var_threshold = var_threshold
        self._subtractor: cv2.BackgroundSubtractorMOG2 | None = None
        self._shape: tuple[int, ...] | None = None
        self._seen = 0

    def reset(self) -> None:
        """Forget the background (the camera moved, or came back after being lost)."""
        self._subtractor = None
        self._shape = None
        self._seen = 0

    def feed(self, image: Image) -> bool | None:
        small = _downscale(image)
        if self._subtractor is None or small.shape != self._shape:
            self._subtractor = cv2.createBackgroundSubtractorMOG2(
                history=100, varThreshold=self.var_threshold, detectShadows=False
            )
            self._shape = small.shape
            self._seen = 0
        mask = self._subtractor.apply(small)
        self._seen += 1
        if self._seen <= self.learning_frames:
            return None
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _KERNEL)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        threshold = self.min_area * small.shape[0] * small.shape[1]
        return any(cv2.contourArea(contour) >= threshold for contour in contours)


def _downscale(image: Image) -> Image:
    height, width = image.shape[:2]
    if width <= ANALYSIS_WIDTH:
        return image
    size = (ANALYSIS_WIDTH, max(1, round(height * ANALYSIS_WIDTH / width)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


#: Qualities tried, in turn, for a frame whose JPEG is over the snapshot size limit; then the size is halved.
_FALLBACK_QUALITIES = (60, 40, 20)
#: A frame is not shrunk below this width or height (pixels) to make it fit.
_MIN_SIDE = 16


def encode_jpeg_within(image: Image, quality: int, limit_bytes: int) -> bytes | None:
    """JPEG bytes of ``image`` of at most ``limit_bytes``: at ``quality`` if that fits, else at a lower quality, and
    if still too big at half the size (repeatedly); ``None`` (logged) if nothing fits. Raises
    :class:`FrameNotEncodable` (a ``ValueError``) if OpenCV cannot encode it."""
    jpeg = encode_jpeg(image, quality)
    if len(jpeg) <= limit_bytes:
        return jpeg
    first = len(jpeg)
    scaled = image
    while True:
        qualities = [q for q in (quality, *_FALLBACK_QUALITIES) if q <= quality]
        for lower in qualities[1:] if scaled is image else qualities:
            jpeg = encode_jpeg(scaled, lower)
            if len(jpeg) <= limit_bytes:
                logger.warning(
                    "a %dx%d frame made a %d-byte JPEG at quality %d, over the %d-byte snapshot limit: re-encoded "
                    "at %dx%d, quality %d (%d bytes)",
                    image.shape[1], image.shape[0], first, quality, limit_bytes,
                    scaled.shape[1], scaled.shape[0], lower, len(jpeg),
                )  # fmt: skip
                return jpeg
        height, width = scaled.shape[:2]
        if min(height, width) // 2 < _MIN_SIDE:
            logger.error(
                "a %dx%d frame does not fit the %d-byte snapshot limit even at %dx%d, quality %d: no snapshot",
                image.shape[1], image.shape[0], limit_bytes, width, height, min(quality, _FALLBACK_QUALITIES[-1]),
            )  # fmt: skip
            return None
        scaled = np.asarray(cv2.resize(scaled, (width // 2, height // 2), interpolation=cv2.INTER_AREA), np.uint8)


def encode_jpeg(image: Image, quality: int = 80) -> bytes:
    """JPEG bytes of ``image``; raises :class:`FrameNotEncodable` (a ``ValueError``) if OpenCV cannot encode it."""
    try:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    except cv2.error as exc:  # e.g. a two-channel image: OpenCV asserts rather than returning False
        raise FrameNotEncodable(f"cannot encode a frame of shape {image.shape} as JPEG: {exc}") from exc
    if not ok:
        raise FrameNotEncodable(f"cannot encode a frame of shape {image.shape} as JPEG")
    return bytes(buffer.tobytes())
