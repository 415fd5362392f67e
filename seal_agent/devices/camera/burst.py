"""The snapshots taken around one trigger (an intrusion, a court's "snapshot now")."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .base import Frame, Snapshot

logger = logging.getLogger(__name__)

SnapshotCallback = Callable[[Snapshot], None]


class SnapshotBurst:
    """Snapshots around ``trigger_time``.

    ``ready`` holds what existed when the burst was asked for (frames from the ring buffer, before the trigger and any
    already captured after it), so the first pictures exist even if the intruder destroys the box a second later.
    ``later`` fills in on the camera monitor's thread as frames arrive, until ``deadline`` or ``max_later`` frames;
    ``on_snapshot`` (if given) is called on that thread for each of them. :meth:`wait` blocks until the burst is done.
    """

    def __init__(
        self,
        trigger_time: float,
        ready: list[Snapshot],
        *,
        deadline: float,
        max_later: int,
        on_snapshot: SnapshotCallback | None = None,
    ) -> None:
        self.trigger_time = trigger_time
        self.ready = ready
        self.deadline = deadline
        self.max_later = max_later
        self.on_snapshot = on_snapshot
        self._later: list[Snapshot] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        if max_later <= 0:
            self._done.set()

    @property
    def later(self) -> list[Snapshot]:
        with self._lock:
            return list(self._later)

    @property
    def snapshots(self) -> list[Snapshot]:
        """Everything so far, in time order."""
        return self.ready + self.later

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every post-trigger snapshot is in (or the deadline passed); ``False`` on timeout."""
        return self._done.wait(timeout)

    def wants(self, t: float) -> bool:
        """Whether a frame captured at ``t`` belongs to this burst."""
        return not self._done.is_set() and self.trigger_time < t <= self.deadline

    def add(self, snapshot: Snapshot) -> None:
        """Called by the monitor thread with a frame for which :meth:`wants` was true."""
        with self._lock:
            self._later.append(snapshot)
            full = len(self._later) >= self.max_later
        if self.on_snapshot is not None:
            try:
                self.on_snapshot(snapshot)
            except Exception:
                logger.exception("on_snapshot callback failed")
        if full:
            self._done.set()

    def give_back(self, slots: int) -> None:
        """``slots`` pictures planned for :attr:`ready` could not be taken (their frames cannot be encoded): the burst
        takes that many more later frames, unless it has stopped waiting for later ones."""
        with self._lock:
            if slots > 0 and not self._done.is_set() and len(self._later) < self.max_later:
                self.max_later += slots

    def expire(self, now: float) -> bool:
        """Mark the burst done if ``now`` is past its deadline (or unconditionally with ``now=inf``); return done."""
        if now > self.deadline:
            self._done.set()
        return self._done.is_set()


def snapshots_spread(frames: list[Frame], count: int, snapshot: Callable[[Frame], Snapshot | None]) -> list[Snapshot]:
    """``snapshot()`` of at most ``count`` of ``frames`` spread evenly over them, always picking the newest; a pick
    that gives ``None`` (its frame cannot be a snapshot) gives way to the newest frame between it and the previous pick
    that can. In time order."""
    taken: list[Snapshot] = []
    floor = 0
    for pick in _spread_indices(len(frames), count):
        for index in range(pick, floor - 1, -1):
            found = snapshot(frames[index])
            if found is not None:
                taken.append(found)
                break
        floor = pick + 1
    return taken


def _spread_indices(length: int, count: int) -> list[int]:
    """Indices of at most ``count`` of ``length`` items spread evenly over them, always with the last."""
    if length <= count:
        return list(range(length))
    if count == 1:
        return [length - 1]
    last = length - 1
    return [round(i * last / (count - 1)) for i in range(count)]
