"""A thread-safe ring buffer of the last few seconds of frames."""

from __future__ import annotations

import threading
from collections import deque

from .base import Frame


class FrameRing:
    """Keeps frames no older than ``max_age_s`` behind the newest one, and at most ``max_frames`` of them.

    Frames must be appended in time order (one producer: the monitor thread); readers may be on any thread.
    """

    def __init__(self, max_age_s: float, max_frames: int = 300) -> None:
        if max_age_s <= 0 or max_frames < 1:
            raise ValueError("max_age_s must be > 0 and max_frames >= 1")
        self.max_age_s = max_age_s
        self._frames: deque[Frame] = deque(maxlen=max_frames)
        self._lock = threading.Lock()

    def append(self, frame: Frame) -> None:
        with self._lock:
            if self._frames and frame.t < self._frames[-1].t:
                raise ValueError("frames must be appended in time order")
            self._frames.append(frame)
            horizon = frame.t - self.max_age_s
            while self._frames and self._frames[0].t < horizon:
                self._frames.popleft()

    def between(self, t0: float, t1: float) -> list[Frame]:
        """Frames with ``t0 <= t <= t1``, oldest first."""
        with self._lock:
            return [frame for frame in self._frames if t0 <= frame.t <= t1]

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
