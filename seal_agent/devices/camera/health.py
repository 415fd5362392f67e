"""Camera health: is the image usable (not covered, not frozen), is the device there at all.

Pure logic on timestamps and numpy arrays (no OpenCV, no threads), driven by the monitor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from .base import Image

logger = logging.getLogger(__name__)

CAMERA_BLIND = "camera_blind"
CAMERA_RECOVERED = "camera_recovered"
CAMERA_LOST = "camera_lost"
CAMERA_FOUND = "camera_found"

_BGR_TO_GREY = np.array([0.114, 0.587, 0.299], dtype=np.float32)


class CameraState(StrEnum):
    STARTING = "starting"  # no verdict yet
    OK = "ok"  # the newest frame showed a new picture of the room
    FROZEN = "frozen"  # the newest frame repeats the one before bit for bit, not yet for blind_after_s
    UNIFORM = "uniform"  # the newest frame is (nearly) one grey level, not yet for blind_after_s
    BLIND = "blind"  # frames arrive but show nothing (covered, dark, uniform, frozen) for blind_after_s
    LOST = "lost"  # no frames arrive


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A transition to report: ``kind`` is one of the four ``CAMERA_*`` names; ``details`` holds ints and strings."""

    kind: str
    details: dict[str, int | str] = field(default_factory=dict)


def blind_reason(image: Image, previous: Image | None, max_stddev: float) -> str | None:
    """``"uniform"`` if the image is (nearly) one grey level, ``"frozen"`` if it is bit-identical to the previous
    frame (a live sensor always has some noise), else ``None``."""
    if image.size == 0:  # its spread is NaN, which no threshold would call "uniform": it would pass for a good frame
        raise ValueError("an empty image")
    sample = image[::4, ::4]
    grey = sample.astype(np.float32) @ _BGR_TO_GREY if sample.ndim == 3 else sample.astype(np.float32)
    if float(grey.std()) < max_stddev:
        return "uniform"
    return "frozen" if repeats(image, previous) else None


def repeats(image: Image, previous: Image | None) -> bool:
    """Whether ``image`` is bit-identical to ``previous``: not a new view (a hung driver, a paused source hands the
    same buffer again), whatever it shows."""
    return previous is not None and previous.shape == image.shape and np.array_equal(previous, image)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class HealthTracker:
    """Turns a stream of "frame (maybe blind)" and "no frame" observations into state transitions.

    - blind: every frame for ``blind_after_s`` was blind → ``camera_blind``; ``recover_frames`` good frames in a row
      → ``camera_recovered``. Until ``blind_after_s`` has passed the state is the newest blind frame's reason
      (``frozen`` or ``uniform``): a camera is ``ok`` only while its newest frame is a good one.
    - lost: no frame for ``lost_after_s`` → ``camera_lost`` (from any state); the next frame → ``camera_found``.

    A blind condition outlives a loss: after ``camera_found`` the state is ``starting`` (no verdict yet; ``frozen`` or
    ``uniform`` while the frames are blind) until the frames give one — ``recover_frames`` good frames end a blind
    condition with ``camera_recovered`` (``down_ms`` from when it began), frames still blind for ``blind_after_s``
    make the state ``blind`` again without a second
    ``camera_blind`` (the first is still open). So every ``camera_blind`` is followed by exactly one
    ``camera_recovered`` once the image is good again, and a camera is never ``ok`` on frames that did not show it.
    """

    def __init__(self, blind_after_s: float, lost_after_s: float, recover_frames: int = 2) -> None:
        self.blind_after_s = blind_after_s
        self.lost_after_s = lost_after_s
        self.recover_frames = recover_frames
        self.state = CameraState.STARTING
        self._fail_since: float | None = None
        self._blind_since: float | None = None  # the first of the blind frames in a row now
        self._blinded_at: float | None = None  # when the blind condition reported by camera_blind began (if open)
        self._lost_at = 0.0
        self._good_run = 0

    def start(self, now: float) -> None:
        """Until the first frame arrives, the camera has been failing since ``now``."""
        self._fail_since = now

    def frame(self, now: float, reason: str | None) -> list[HealthEvent]:
        """A frame was read at ``now``; ``reason`` is its :func:`blind_reason`."""
        events: list[HealthEvent] = []
        self._fail_since = None
        if self.state is CameraState.LOST:
            events.append(HealthEvent(CAMERA_FOUND, {"down_ms": _ms(now - self._lost_at)}))
            self.state = CameraState.STARTING  # what the image shows is judged again from the frames
            self._blind_since = None
            self._good_run = 0
        if reason is None:
            self._blind_since = None
            self._good_run += 1
            if self._blinded_at is None:
                self.state = CameraState.OK
            elif self._good_run >= self.recover_frames:
                events.append(HealthEvent(CAMERA_RECOVERED, {"down_ms": _ms(now - self._blinded_at)}))
                self._blinded_at = None
                self.state = CameraState.OK
            elif self.state in (CameraState.FROZEN, CameraState.UNIFORM):
                self.state = CameraState.STARTING  # a good frame, too few yet to end the open blind condition
            return events
        self._good_run = 0
        if self._blind_since is None:
            self._blind_since = now
        if self.state is not CameraState.BLIND and now - self._blind_since >= self.blind_after_s:
            self.state = CameraState.BLIND
            if self._blinded_at is None:
                self._blinded_at = self._blind_since
                events.append(HealthEvent(CAMERA_BLIND, {"reason": reason, "after_ms": _ms(now - self._blind_since)}))
        elif self.state is not CameraState.BLIND:
            self.state = CameraState(reason)  # blind, not yet for blind_after_s: said so, never "ok"
        return events

    def failure(self, now: float, reason: str) -> list[HealthEvent]:
        """No frame could be had at ``now`` (``reason`` is a short word such as ``"read_failed"``)."""
        self._good_run = 0
        if self._fail_since is None:
            self._fail_since = now
        if self.state is not CameraState.LOST and now - self._fail_since >= self.lost_after_s:
            self.state = CameraState.LOST
            self._lost_at = self._fail_since
            return [HealthEvent(CAMERA_LOST, {"reason": reason, "after_ms": _ms(now - self._fail_since)})]
        return []
