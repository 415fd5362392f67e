"""The camera as evidence: the :class:`~seal_agent.camera.CameraMonitor` joined to the snapshot spool.

Implements :class:`~seal_agent.interfaces.EvidenceCamera` for the core. Nothing here raises for a camera failure:
a failure is logged and the answer is "no snapshot" or ``unknown``, because a camera must never stop the warning
or the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from seal_agent.camera import Snapshot
from seal_agent.snapshots import SnapshotSpool

if TYPE_CHECKING:
    from seal_agent.camera import CameraMonitor

logger = logging.getLogger(__name__)


class SealCamera:
    """Snapshots around triggers, motion verdicts and health of one monitored camera."""

    def __init__(self, monitor: CameraMonitor, spool: SnapshotSpool) -> None:
        self.monitor = monitor
        self.spool = spool
        self._waiters: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        return self.monitor.state

    def start(self) -> None:
        self.monitor.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the monitor (pending bursts finish with what they have) and wait for their follow-up reports."""
        self.monitor.stop(timeout)
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.join(timeout)

    def capture_around(self, trigger: float, on_later: Callable[[list[str]], None]) -> list[str]:
        later: list[str] = []

        def keep(snapshot: Snapshot) -> None:  # the monitor's thread; failures are logged by the burst
            later.append(self.spool.add(snapshot.jpeg))

        try:
            burst = self.monitor.snapshots_around(trigger, on_snapshot=keep)
        except Exception:
            logger.exception("snapshots around the trigger failed")
            return []
        ready = [sha for sha in (self._store(snapshot) for snapshot in burst.ready) if sha is not None]
        if burst.max_later > 0:
            timeout = max(0.0, burst.deadline - trigger) + 2.0

            def report() -> None:
                burst.wait(timeout)
                try:
                    on_later(list(later))
                except Exception:
                    logger.exception("reporting the post-trigger snapshots failed")

            waiter = threading.Thread(target=report, name="seal-snapshot-burst", daemon=True)
            with self._lock:
                self._waiters = [w for w in self._waiters if w.is_alive()] + [waiter]
            waiter.start()
        return ready

    def motion_verdict(self, t0: float, t1: float, timeout: float) -> str:
        try:
            return self.monitor.motion_verdict(t0, t1, timeout=timeout).value
        except Exception:
            logger.exception("camera motion verdict failed")
            return "unknown"

    def snapshot_now(self) -> str | None:
        try:
            snapshot = self.monitor.latest_snapshot()
        except Exception:
            logger.exception("cannot take a snapshot")
            return None
        return None if snapshot is None else self._store(snapshot)

    def _store(self, snapshot: Snapshot) -> str | None:
        try:
            return self.spool.add(snapshot.jpeg)
        except Exception:
            logger.exception("cannot store a snapshot")
            return None
