"""What the seal does once a trigger fired: the warning, the snapshots around it, the event, the follow-up event.

The core (:class:`~seal_agent.core.SealAgent`) decides *whether* a presence deserves a warning (armed, cool-down);
:class:`TriggerResponder` then acts on that decision for an ``intrusion`` (PIR edge) or a ``tamper`` (lid opened):

1. the warning first, because it is what a person on site notices (with ``require_motion_confirmation`` it waits
   for the camera's verdict instead, at most ``motion_window_s``: only ``not_seen`` suppresses it, a blind, lost or
   still learning camera, ``unknown``, never silences the seal);
2. the snapshots the camera already holds from before the trigger, listed in the event;
3. the signed event, committed to the outbox;
4. later, on the burst's waiter thread, a ``snapshot_taken`` event listing the post-trigger snapshots and naming the
   trigger's ``seq``.

It imports no hardware library: speaker, camera and the function that records an event are its arguments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from seal_agent.interfaces import EvidenceCamera, Speaker
from seal_agent.outbox import StoredEvent
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: Commits one signed event (``SealAgent.record``).
RecordEvent = Callable[[EventType, Mapping[str, Any]], StoredEvent]
#: How long a ``snapshot_taken`` report waits for its trigger's event to be committed.
TRIGGER_COMMIT_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class CameraPolicy:
    """Whether the warning needs the camera to confirm the PIR, and the window (s) around the edge it looks at."""

    require_motion_confirmation: bool = False
    motion_window_s: float = 1.0


class _Trigger:
    """The event that snapshots were taken for; its seq is known once it is committed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seq: int | None = None
        self.recorded = threading.Event()


class TriggerResponder:
    """Warns, gathers evidence and records the event of one trigger. Thread-safe: it keeps no state of its own."""

    def __init__(
        self,
        *,
        speaker: Speaker,
        record: RecordEvent,
        camera: EvidenceCamera | None = None,
        camera_policy: CameraPolicy | None = None,
    ) -> None:
        self._speaker = speaker
        self._record = record
        self._camera = camera
        self._policy = camera_policy or CameraPolicy()

    @property
    def camera_state(self) -> str:
        return "none" if self._camera is None else self._camera.state

    def play_warning(self) -> None:
        """Start the warning; a speaker failure is logged and never stops the event that follows."""
        try:
            if self._speaker.play_warning():
                logger.info("warning started")
        except Exception:
            logger.exception("the warning could not be started")

    def intrusion(self, now: float, *, armed: bool, wanted: bool, on_not_seen: Callable[[], None]) -> StoredEvent:
        """A presence began at ``now``; ``wanted``: the core's warning policy asked for a warning.

        ``on_not_seen`` is called if the camera's verdict suppressed the wanted warning (before the event is
        recorded), so the core can cancel the repeats it scheduled.
        """
        confirm = wanted and self._camera is not None and self._policy.require_motion_confirmation
        if wanted and not confirm:
            self.play_warning()
        trigger = _Trigger("intrusion")
        snapshots = self._capture(now, trigger)
        verdict = self._verdict(now, play_if_seen=confirm)
        warning = "played" if wanted else ("suppressed_cooldown" if armed else "suppressed_disarmed")
        if confirm and verdict == "not_seen":
            on_not_seen()
            warning = "suppressed_not_seen"
        elif confirm and verdict != "seen":  # unknown: a blind or lost camera never silences the seal
            self.play_warning()
        payload = {
            "sensor": "pir",
            "armed": armed,
            "warning": warning,
            "camera": self.camera_state,
            "camera_motion": verdict,
            "snapshots": snapshots,
        }
        return self._record_trigger(EventType.INTRUSION, trigger, payload)

    def tamper(self, now: float, *, armed: bool, at_start: bool) -> StoredEvent:
        """The enclosure was opened at ``now``: warn unless disarmed (a disarmed seal is being removed)."""
        if armed:
            self.play_warning()
        trigger = _Trigger("tamper")
        snapshots = self._capture(now, trigger)
        payload = {
            "state": "open",
            "at_start": at_start,
            "armed": armed,
            "warning": "played" if armed else "suppressed_disarmed",
            "camera": self.camera_state,
            "snapshots": snapshots,
        }
        return self._record_trigger(EventType.TAMPER, trigger, payload)

    def _verdict(self, now: float, *, play_if_seen: bool) -> str:
        if self._camera is None:
            return "unknown"
        window = self._policy.motion_window_s
        verdict = self._camera.motion_verdict(now - window, now, 0.0)
        if verdict == "seen":
            if play_if_seen:
                self.play_warning()
            return verdict
        return self._camera.motion_verdict(now - window, now + window, window + 0.5)

    def _capture(self, now: float, trigger: _Trigger) -> list[str]:
        if self._camera is None:
            return []
        return self._camera.capture_around(now, lambda later: self._snapshots_taken(trigger, later))

    def _record_trigger(self, type: EventType, trigger: _Trigger, payload: Mapping[str, Any]) -> StoredEvent:
        try:
            stored = self._record(type, payload)
            trigger.seq = stored.seq
        finally:
            trigger.recorded.set()
        return stored

    def _snapshots_taken(self, trigger: _Trigger, hashes: list[str]) -> None:
        """Post-trigger snapshots are in: list them in a follow-up event (on the burst's waiter thread)."""
        trigger.recorded.wait(TRIGGER_COMMIT_WAIT_S)
        if not hashes:
            return
        details = {"snapshots": hashes, "trigger": trigger.kind, "trigger_seq": trigger.seq}
        self._record(EventType.SNAPSHOT_TAKEN, details)
