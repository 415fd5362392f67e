"""What the seal's behaviour and its journal need from the world. Hardware and network adapters implement these
protocols.

The behaviour (:mod:`seal_agent.behaviour`) and the journal's delivery (:mod:`seal_agent.journal.delivery`) depend
only on these; the adapters (:mod:`seal_agent.devices`, :mod:`seal_agent.mqtt`) implement them with gpiozero,
simpleaudio, OpenCV and paho.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Lane(StrEnum):
    """What a delivered message is: each lane has its own durable queue and courier."""

    EVENT = "event"  # key = the event's seq
    SNAPSHOT = "snapshot"  # key = the snapshot's queue id in the outbox


#: Called with no arguments on motion start or end. Runs on the sensor library's thread: return quickly.
MotionHandler = Callable[[], None]
#: Called with (lane, key, failure). ``failure`` is None when the broker acknowledged the message, else its reason.
AckHandler = Callable[[Lane, int, str | None], None]
#: Called with True after a successful CONNACK and False when the connection is lost.
ConnectionHandler = Callable[[bool], None]
#: Called with the raw bytes of a message on the seal's ``cmd`` topic. The broker gets its PUBACK only when it returns;
#: if it raises, the command stays unacknowledged and is delivered again after a reconnect.
CommandHandler = Callable[[bytes], None]
#: Called with the raw bytes of a message on the seal's ``receipt`` topic (acknowledged to the broker when it returns).
ReceiptHandler = Callable[[bytes], None]


class MotionSource(Protocol):
    """A presence sensor (the PIR)."""

    def set_handlers(self, *, on_start: MotionHandler, on_end: MotionHandler) -> None:
        """Call ``on_start`` when presence begins and ``on_end`` when it ends."""

    @property
    def is_active(self) -> bool:
        """True while the sensor reports presence."""

    def close(self) -> None:
        """Release the sensor; no handler is called afterwards."""


class WarningPlayback:
    """What one warning (its clips in order, one per language) really did, written by the speaker's playback thread
    and read by the behaviour.

    Each language is ``queued`` (not tried yet), ``playing`` (the sound device accepted its samples), ``played``,
    ``failed`` (with the reason: the device could not be opened, …) or ``stopped`` (cut short, or never tried
    because the warning was stopped). A failing language does not stop the next one.
    """

    def __init__(self, languages: Sequence[str]) -> None:
        self._results: dict[str, tuple[str, str | None]] = dict.fromkeys(languages, ("queued", None))
        self._cond = threading.Condition()
        self._ended = False
        self._on_end: list[Callable[[WarningPlayback], None]] = []

    def playing(self, language: str) -> None:
        self._set(language, "playing", None)

    def finished(self, language: str, result: str, reason: str | None = None) -> None:
        """``language`` ended: ``played``, ``failed`` (``reason``) or ``stopped``."""
        self._set(language, result, reason)

    def end(self) -> None:
        """Playback is over: every language still ``queued`` or ``playing`` becomes ``stopped``."""
        self._end("stopped", None)

    def give_up(self, reason: str) -> None:
        """The speaker never ended this playback (a thread stuck in the device): it is over, and every language still
        ``queued`` or ``playing`` is ``failed`` for ``reason``. What the speaker reports later is ignored."""
        self._end("failed", reason)

    def _end(self, unfinished: str, reason: str | None) -> None:
        with self._cond:
            if self._ended:
                return
            for lang, (result, _) in self._results.items():
                if result in ("queued", "playing"):
                    self._results[lang] = (unfinished, reason)
            self._ended = True
            self._cond.notify_all()
            callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback(self)

    def when_ended(self, callback: Callable[[WarningPlayback], None]) -> None:
        """Call ``callback(self)`` once playback is over (at once if it is), on the thread that ended it."""
        with self._cond:
            if not self._ended:
                self._on_end.append(callback)
                return
        callback(self)

    def wait_begun(self, timeout: float) -> bool:
        """Wait until some language is playing or playback is over (opening a device takes milliseconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ended or self._any("playing", "played"), timeout)

    def wait_ended(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._ended, timeout)

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended

    @property
    def state(self) -> str:
        """``started`` while under way; once over ``played`` (every language), ``failed`` (some language could not
        be played) or ``stopped`` (cut short, nothing failed)."""
        with self._cond:
            if not self._ended:
                return "started"
            if self._any("failed"):
                return "failed"
            return "played" if all(r == "played" for r, _ in self._results.values()) else "stopped"

    def languages(self) -> list[dict[str, Any]]:
        """The per-language outcome so far, in play order: ``{"language", "result", "reason"}`` (reason or None)."""
        with self._cond:
            return [{"language": k, "result": r, "reason": why} for k, (r, why) in self._results.items()]

    def outcome(self) -> tuple[str, list[dict[str, Any]]]:
        """:attr:`state` and :meth:`languages` read together (neither can change between the two)."""
        with self._cond:  # a Condition's lock is re-entrant
            return self.state, self.languages()

    def failures(self) -> list[tuple[str, str]]:
        """``(language, reason)`` of every language that failed so far."""
        with self._cond:
            return [(k, why or "") for k, (r, why) in self._results.items() if r == "failed"]

    def _any(self, *results: str) -> bool:
        return any(r in results for r, _ in self._results.values())

    def _set(self, language: str, result: str, reason: str | None) -> None:
        with self._cond:
            if self._ended:  # given up: what it said is final
                return
            self._results[language] = (result, reason)
            self._cond.notify_all()


class Speaker(Protocol):
    """Plays the spoken warning."""

    def play_warning(self) -> WarningPlayback | None:
        """Start the warning without blocking and return its :class:`WarningPlayback`; None if one is already
        playing. Never raises on playback errors: they are the playback's ``failed`` languages."""

    def stop(self) -> None:
        """Stop a warning that is playing."""

    def is_playing(self) -> bool:
        """True while a warning is playing."""


class Publisher(Protocol):
    """Sends events and snapshots to the court at QoS 1, reports each broker acknowledgement, receives commands and
    the court's receipts. Each kind of callback has one owner, which binds it before the publisher starts."""

    def bind_delivery(
        self, *, on_ack: AckHandler, on_connection: ConnectionHandler, on_receipt: ReceiptHandler | None = None
    ) -> None:
        """Register the delivery's handlers: PUBACKs, connection changes and (unless None) the court's receipts."""

    def bind_commands(self, on_command: CommandHandler) -> None:
        """Register the handler of the court's commands; without one the ``cmd`` topic is not read."""

    def publish_event(self, seq: int, data: bytes) -> None:
        """Hand over one event; its PUBACK is reported through ``on_ack(Lane.EVENT, seq, failure)`` later.

        Raises :class:`seal_agent.errors.PublishError` if the client cannot take the message.
        """

    def publish_snapshot(self, qid: int, sha: str, jpeg: bytes) -> None:
        """Hand over one snapshot; its PUBACK is reported through ``on_ack(Lane.SNAPSHOT, qid, failure)``."""

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""


class Switch(Protocol):
    """A two-state input such as the enclosure's tamper switch (active = lid open)."""

    def set_handlers(self, *, on_start: MotionHandler, on_end: MotionHandler) -> None:
        """Call ``on_start`` when the input becomes active and ``on_end`` when it becomes inactive."""

    @property
    def is_active(self) -> bool:
        """True while the input is active."""


class TriggerEvidence(Protocol):
    """The snapshots of one trigger: those that existed at the trigger (hashed in memory, not stored yet) and the
    post-trigger ones, which are stored and queued as they come."""

    @property
    def hashes(self) -> list[str]:
        """SHA-256 (hex) of the snapshots that existed at the trigger, oldest first; listed in the trigger's event."""

    def keep(self) -> list[dict[str, str]]:
        """Store and queue those snapshots for sending (call it once the event that lists them is committed); those
        that could not be stored, as ``{"sha256", "reason"}``, oldest first; then it lets them go."""

    def drop(self, reason: str) -> None:
        """Let those snapshots go unstored (memory): :meth:`keep` then names each as not stored, for ``reason``."""

    def wait_later(self) -> list[str]:
        """Block (bounded by the burst's deadline) until the post-trigger snapshots are in; their hashes."""

    def later_not_stored(self) -> list[dict[str, str]]:
        """The post-trigger snapshots that could not be stored (after :meth:`wait_later`), as ``{"sha256",
        "reason"}``: named nowhere else, so the trigger's ``snapshot_taken`` names them in ``not_stored``."""


class EvidenceCamera(Protocol):
    """The camera as the seal's behaviour sees it: snapshots stored and queued for sending, motion verdicts, health.

    Every method must never raise for camera failures (a lost camera is a state, not an error) and return promptly
    unless it takes a timeout.
    """

    @property
    def state(self) -> str:
        """``starting``, ``ok``, ``blind`` or ``lost``."""

    def capture_around(self, trigger: float) -> TriggerEvidence:
        """The snapshots around ``trigger`` (monotonic s): those that exist now, encoded and hashed but not stored,
        and the post-trigger ones to come."""

    def motion_verdict(self, t0: float, t1: float, timeout: float) -> str:
        """``seen``, ``not_seen`` or ``unknown`` for frames in ``[t0, t1]``, waiting at most ``timeout``."""

    def snapshot_now(self) -> dict[str, Any]:
        """Store and queue the current frame: the ``snapshot`` command's answer (``result`` ``taken`` with
        ``snapshot``, ``camera_lost``, ``no_frame`` or ``store_failed`` with ``reason``; ``camera``;
        ``frame_age_ms``)."""


class Clock(Protocol):
    """Time for the behaviour and the journal: a monotonic clock for intervals, the wall clock for event times."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""


@dataclass(frozen=True, slots=True)
class ClockSync:
    """What the kernel says of the wall clock now: ``synced`` (``None``: it could not be read, ``reason`` says why) and
    its bound on the clock's error in milliseconds (``None`` when not read)."""

    synced: bool | None
    max_error_ms: int | None
    reason: str | None = None

    def payload(self) -> dict[str, Any]:
        """The ``clock`` object the heartbeat and ``agent_started`` sign (docs/protocol.md)."""
        return {"synced": self.synced, "max_error_ms": self.max_error_ms}


#: The state signed when the seal has no way to read it.
CLOCK_UNKNOWN = ClockSync(None, None, "no clock state source")


class ClockState(Protocol):
    """Whether the wall clock is synchronised, and which boot of the kernel the seal runs in."""

    boot_id: str | None  # read once; None if it could not be read

    def sync(self) -> ClockSync:
        """The wall clock's sync state now; never raises (unknown with a reason instead)."""
