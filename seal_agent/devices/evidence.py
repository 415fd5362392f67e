"""The camera as evidence: the :class:`~seal_agent.devices.camera.CameraMonitor` joined to the snapshot spool.

Implements :class:`~seal_agent.interfaces.EvidenceCamera` for the seal's behaviour. Nothing here raises for a camera
failure: a failure is logged and the answer is "no snapshot" or ``unknown``, because a camera must never stop the
warning or the event. But nothing is hidden either: a snapshot a trigger's event named and the seal could not store
is reported with the reason (:meth:`Evidence.keep`), and a snapshot command's answer says whether the frame was
current, stored, or neither (:meth:`SealCamera.snapshot_now`).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from seal_agent.devices.camera import Snapshot, SnapshotBurst
from seal_agent.errors import failure_reason
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
        self._later_failed: list[dict[str, str]] = []  # post-trigger snapshots that could not be stored
        self._dropped: str | None = None
        self._named: set[str] = set()  # every picture this trigger's events name: none is named twice
        self._lock = threading.Lock()  # _named: on_later runs on the monitor's thread, also before attach
        self.hashes: list[str] = []

    def attach(self, burst: SnapshotBurst) -> None:
        """The burst whose post-trigger snapshots call :meth:`on_later`; its ready ones are hashed now."""
        self._burst = burst
        ready, burst.ready = list(burst.ready), []  # held here only: keep() or drop() lets them go
        hashed = [(sha256_hex(snapshot.jpeg), snapshot) for snapshot in ready]
        with self._lock:
            new = [(sha, snapshot) for sha, snapshot in hashed if self._name(sha)]
        self._ready = [snapshot for _, snapshot in new]
        self.hashes = [sha for sha, _ in new]

    def _name(self, sha: str) -> bool:
        """Whether ``sha`` is a picture not yet named (and now is): the same picture twice is one picture."""
        if sha in self._named:
            return False
        self._named.add(sha)
        return True

    def keep(self) -> list[dict[str, str]]:
        """Store and queue the snapshots listed in :attr:`hashes` (once the event listing them is committed), and
        let them go; those that could not be stored, as ``{"sha256", "reason"}`` (the trigger's signed event named
        them: the follow-up event must say so)."""
        ready, self._ready = self._ready, []
        if self._dropped is not None:
            return [{"sha256": sha, "reason": self._dropped} for sha in self.hashes]
        not_stored: list[dict[str, str]] = []
        for sha, snapshot in zip(self.hashes, ready, strict=True):
            failure = _store(self._spool, snapshot)[1]
            if failure is not None:
                not_stored.append({"sha256": sha, "reason": failure})
        return not_stored

    def drop(self, reason: str) -> None:
        """Let the snapshots go unstored; :meth:`keep` names each of them with ``reason``."""
        self._dropped, self._ready = reason, []

    def wait_later(self) -> list[str]:
        burst = self._burst
        if burst is not None and burst.max_later > 0:
            burst.wait(max(0.0, burst.deadline - burst.trigger_time) + LATER_GRACE_S)
        return list(self._later)

    def later_not_stored(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._later_failed)

    def on_later(self, snapshot: Snapshot) -> None:
        """A post-trigger snapshot (the monitor's thread), stored and queued; one that cannot be is named by
        :meth:`later_not_stored` with the reason; one whose picture is already named (the same JPEG) is left out."""
        sha = sha256_hex(snapshot.jpeg)
        with self._lock:
            if not self._name(sha):
                logger.info("snapshot %s already taken for this trigger: not listed again", sha)
                return
        stored, failure = _store(self._spool, snapshot)
        with self._lock:
            if stored is not None:
                self._later.append(stored)
            else:
                self._later_failed.append({"sha256": sha, "reason": failure or "unknown"})


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

    def snapshot_now(self) -> dict[str, Any]:
        """Store and queue the camera's current frame: the ``snapshot`` command's answer (``result``: ``taken``,
        ``camera_lost``, ``no_frame`` or ``store_failed`` with its ``reason``; ``snapshot``; the ``camera`` state;
        ``frame_age_ms``, how old the frame was when it was taken, in whole ms). A frame older than the monitor's
        :attr:`~seal_agent.devices.camera.CameraMonitor.fresh_s` is never offered as the current view; nor is a
        frozen camera's repeated frame, whose picture is as old as the first of the run: ``no_frame`` once that is
        older (``camera`` then says ``frozen``, or ``blind`` after ``blind_after_s``)."""
        state = self.monitor.state
        answer: dict[str, Any] = {"result": "no_frame", "snapshot": None, "camera": state, "frame_age_ms": None}
        if state == "lost":
            return answer | {"result": "camera_lost"}
        try:
            snapshot = self.monitor.latest_snapshot()
            age = None if snapshot is None else max(0.0, self.monitor.now() - snapshot.t)
        except Exception:
            logger.exception("cannot take a snapshot")
            return answer
        if snapshot is None or age is None:
            return answer | {"camera": self.monitor.state}
        sha, failure = _store(self.spool, snapshot)
        if sha is None:
            return answer | {"result": "store_failed", "frame_age_ms": round(age * 1000), "reason": failure}
        return answer | {"result": "taken", "snapshot": sha, "frame_age_ms": round(age * 1000)}


def _store(spool: SnapshotSpool, snapshot: Snapshot) -> tuple[str | None, str | None]:
    """``(hash, None)`` once stored and queued, or ``(None, reason)`` (logged)."""
    try:
        return spool.add(snapshot.jpeg), None
    except Exception as exc:
        logger.exception("cannot store a snapshot")
        return None, failure_reason(exc)
