"""The camera as evidence: the :class:`~seal_agent.devices.camera.CameraMonitor` joined to the snapshot spool.

Implements :class:`~seal_agent.interfaces.EvidenceCamera` for the seal's behaviour. Nothing here raises for a camera
failure: a failure is logged and the answer is "no snapshot" or ``unknown``, because a camera must never stop the
warning or the event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from seal_agent.devices.camera import Snapshot, SnapshotBurst
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import sha256_hex

if TYPE_CHECKING:
    from seal_agent.devices.camera import CameraMonitor

logger = logging.getLogger(__name__)

#: How long after a burst's deadline :meth:`Evidence.wait_later` still waits for its last snapshot.
LATER_GRACE_S = 2.0


class Evidence:
    """The snapshots of one trigger (:class:`~seal_agent.interfaces.TriggerEvidence`).

    The ones that existed at the trigger are JPEG-encoded and hashed in memory, so the trigger's event can list them
    without waiting for the disk; :meth:`keep` stores and queues them. The post-trigger ones are stored and queued
    on the camera monitor's thread as they come.
    """

    def __init__(self, spool: SnapshotSpool) -> None:
        self._spool = spool
        self._burst: SnapshotBurst | None = None
        self._ready: list[Snapshot] = []
        self._later: list[str] = []
        self.hashes: list[str] = []

    def attach(self, burst: SnapshotBurst) -> None:
        """The burst whose post-trigger snapshots call :meth:`on_later`; its ready ones are hashed now."""
        self._burst = burst
        self._ready = list(burst.ready)
        self.hashes = [sha256_hex(snapshot.jpeg) for snapshot in self._ready]

    def keep(self) -> None:
        for snapshot in self._ready:
            _store(self._spool, snapshot)

    def wait_later(self) -> list[str]:
        burst = self._burst
        if burst is not None and burst.max_later > 0:
            burst.wait(max(0.0, burst.deadline - burst.trigger_time) + LATER_GRACE_S)
        return list(self._later)

    def on_later(self, snapshot: Snapshot) -> None:
        """A post-trigger snapshot (the monitor's thread; the burst logs a failure)."""
        self._later.append(self._spool.add(snapshot.jpeg))


class SealCamera:
    """Snapshots around triggers, motion verdicts and health of one monitored camera."""

    def __init__(self, monitor: CameraMonitor, spool: SnapshotSpool) -> None:
        self.monitor = monitor
        self.spool = spool

    @property
    def state(self) -> str:
        return self.monitor.state

    def start(self) -> None:
        self.monitor.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the monitor; pending bursts finish with what they have."""
        self.monitor.stop(timeout)

    def capture_around(self, trigger: float) -> Evidence:
        evidence = Evidence(self.spool)
        try:
            evidence.attach(self.monitor.snapshots_around(trigger, on_snapshot=evidence.on_later))
        except Exception:
            logger.exception("snapshots around the trigger failed")
        return evidence

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
        return None if snapshot is None else _store(self.spool, snapshot)


def _store(spool: SnapshotSpool, snapshot: Snapshot) -> str | None:
    try:
        return spool.add(snapshot.jpeg)
    except Exception:
        logger.exception("cannot store a snapshot")
        return None
