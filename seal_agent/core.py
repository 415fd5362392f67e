"""The seal's behaviour: presence → spoken warning and a signed ``intrusion`` event; heartbeats; arm/disarm.

:class:`SealAgent` gets its sensor, speaker, publisher, outbox and clock as arguments and imports no hardware or
network library, so the same code runs on a Raspberry Pi, on gpiozero's mock pins and in tests.

Threads: the sensor's callbacks run on the sensor library's thread, the timer (repeats, heartbeats, missed-edge
check) on ``seal-agent-timer``, delivery on the courier's thread. Decisions are made under one lock; disk and
speaker I/O happen outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from seal_agent import __version__
from seal_agent.delivery import Courier
from seal_agent.interfaces import Clock, MotionSource, Publisher, Speaker
from seal_agent.outbox import Outbox, StoredEvent
from seal_agent.recorder import EventRecorder
from seal_agent.warning import WarningPolicy, WarningSettings
from seal_protocol import EventType
from seal_protocol.signing import SigningKey

logger = logging.getLogger(__name__)

#: How often the timer compares the sensor's level with the presence we believe in (a missed edge is caught).
RECONCILE_S = 1.0
_ARMED_SETTING = "armed"


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SealIdentity:
    """Who the seal is: its id (also its MQTT username), its case, and its own Ed25519 key."""

    device_id: str
    case_no: str
    signing_key: SigningKey


class SealAgent:
    """One seal. Call :meth:`start`, then :meth:`stop`; :meth:`arm` / :meth:`disarm` at any time in between.

    The armed state is durable: it is committed with the ``armed``/``disarmed`` event and survives restarts.
    A new seal starts armed. Disarmed, the seal stays silent but still records every ``intrusion``.
    """

    def __init__(
        self,
        *,
        identity: SealIdentity,
        motion: MotionSource,
        speaker: Speaker,
        publisher: Publisher,
        outbox: Outbox,
        warning: WarningSettings,
        heartbeat_s: float,
        clock: Clock | None = None,
        agent_version: str = __version__,
        delivery_window: int = 20,
        retry_s: float = 30.0,
    ) -> None:
        self.identity = identity
        self.agent_version = agent_version
        self.heartbeat_s = heartbeat_s
        self._motion = motion
        self._speaker = speaker
        self._outbox = outbox
        self._clock = clock or SystemClock()
        self.recorder = EventRecorder(
            device_id=identity.device_id,
            case_no=identity.case_no,
            signing_key=identity.signing_key,
            outbox=outbox,
            clock=self._clock,
        )
        self.courier = Courier(outbox, publisher, self._clock, window=delivery_window, retry_s=retry_s)
        self._policy = WarningPolicy(warning)
        self._armed = outbox.setting(_ARMED_SETTING) != "0"
        self._present = False
        self._mismatch_since: float | None = None
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._timer: threading.Thread | None = None
        #: Called with the stored ``intrusion`` event after it is committed (e.g. to take snapshots). It runs on the
        #: sensor's thread: return quickly. Its failures are logged and never affect the warning or the event.
        self.when_intrusion: Callable[[StoredEvent], None] | None = None
        self._started_at = self._clock.monotonic()
        self._next_heartbeat = self._started_at + heartbeat_s

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start delivery, record ``agent_started``, listen to the sensor and run the timer."""
        self._started_at = self._clock.monotonic()
        self._next_heartbeat = self._started_at + self.heartbeat_s
        self.courier.start()
        self.record(
            EventType.AGENT_STARTED,
            {"agent_version": self.agent_version, "armed": self._armed, "outbox_depth": self._outbox.depth()},
        )
        self._motion.set_handlers(on_start=self._on_motion_start, on_end=self._on_motion_end)
        self._timer = threading.Thread(target=self._run_timer, name="seal-agent-timer", daemon=True)
        self._timer.start()
        logger.info(
            "seal %s started (case %s, %s, %d event(s) waiting)",
            self.identity.device_id,
            self.identity.case_no,
            "armed" if self._armed else "disarmed",
            self._outbox.depth(),
        )

    def stop(self, drain_timeout: float = 2.0) -> None:
        """Stop the timer, silence the speaker and give in-flight events ``drain_timeout`` s to be acknowledged.

        The caller closes the sensor, the speaker and the publisher it created.
        """
        self._motion.set_handlers(on_start=_ignore, on_end=_ignore)
        self._stopping.set()
        self._wake.set()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.join(5.0)
        self._speaker.stop()
        if drain_timeout > 0 and not self.courier.wait_drained(drain_timeout):
            logger.info("stopping with %d event(s) in the outbox; they are sent after restart", self._outbox.depth())
        self.courier.stop()

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def present(self) -> bool:
        """True while the seal believes someone is present."""
        return self._present

    def arm(self, reason: str = "local") -> bool:
        """Arm the seal (warnings on); records an ``armed`` event. False if it was armed already."""
        with self._lock:
            if self._armed:
                return False
            self.record(EventType.ARMED, {"reason": reason}, settings={_ARMED_SETTING: "1"})
            self._armed = True
            self._policy.reset()
            play = self._present and self._policy.motion_started(self._clock.monotonic())
        if play:
            self._play_warning()
        self._wake.set()
        return True

    def disarm(self, reason: str = "local") -> bool:
        """Disarm the seal (no warnings; intrusions still recorded); records ``disarmed``. False if already so."""
        with self._lock:
            if not self._armed:
                return False
            self.record(EventType.DISARMED, {"reason": reason}, settings={_ARMED_SETTING: "0"})
            self._armed = False
            self._policy.reset()
        self._speaker.stop()
        return True

    def record(
        self, type: EventType, payload: Mapping[str, Any] | None = None, *, settings: Mapping[str, str] | None = None
    ) -> StoredEvent:
        """Commit a signed event to the outbox and wake the courier. Raises ``OutboxError`` if it cannot."""
        stored = self.recorder.record(type, payload, settings=settings)
        logger.info("event seq=%d %s committed", stored.seq, type.value)
        self.courier.notify()
        return stored

    def heartbeat(self) -> StoredEvent:
        """Record a ``heartbeat`` event now."""
        return self.record(
            EventType.HEARTBEAT,
            {
                "outbox_depth": self._outbox.depth(),
                "uptime_s": int(self._clock.monotonic() - self._started_at),
                "agent_version": self.agent_version,
                "pir_state": "motion" if self._motion.is_active else "idle",
                "armed": self._armed,
            },
        )

    # -- sensor callbacks (sensor thread) ---------------------------------------------------------------------

    def _on_motion_start(self) -> None:
        _guarded("motion start", self._motion_started)

    def _on_motion_end(self) -> None:
        _guarded("motion end", self._motion_ended)

    def _motion_started(self) -> None:
        with self._lock:
            if self._present:
                return
            self._present = True
            play = self._armed and self._policy.motion_started(self._clock.monotonic())
            armed = self._armed
        if play:
            self._play_warning()  # the warning first: it is what a person on site notices
        stored = self.record(EventType.INTRUSION, {"sensor": "pir", "armed": armed, "warning": play})
        self._wake.set()
        hook = self.when_intrusion
        if hook is not None:
            _guarded("when_intrusion", lambda: hook(stored))

    def _motion_ended(self) -> None:
        with self._lock:
            if not self._present:
                return
            self._present = False
            self._policy.motion_ended(self._clock.monotonic())
        logger.info("presence ended")

    def _play_warning(self) -> None:
        """Start the warning; a speaker failure is logged and never stops the event that follows."""
        try:
            if self._speaker.play_warning():
                logger.info("warning started")
        except Exception:
            logger.exception("the warning could not be started")

    # -- timer thread -----------------------------------------------------------------------------------------

    def _run_timer(self) -> None:
        while not self._stopping.is_set():
            _guarded("timer", self._tick)
            with self._lock:
                deadline = min(self._next_heartbeat, self._policy.next_due() or float("inf"))
            timeout = min(RECONCILE_S, max(0.0, deadline - self._clock.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()

    def _tick(self) -> None:
        now = self._clock.monotonic()
        self._catch_missed_edge(now)
        with self._lock:
            play = self._armed and self._policy.due(now)
            beat = now >= self._next_heartbeat
            if beat:
                self._next_heartbeat = now + self.heartbeat_s
        if play:
            self._play_warning()
        if beat:
            self.heartbeat()

    def _catch_missed_edge(self, now: float) -> None:
        """If the sensor's level disagrees with our belief for a while, an edge was lost: act on the level."""
        if self._motion.is_active == self._present:
            self._mismatch_since = None
            return
        if self._mismatch_since is None:
            self._mismatch_since = now
            return
        if now - self._mismatch_since >= RECONCILE_S / 2:
            self._mismatch_since = None
            active = not self._present
            logger.warning("sensor reads %s but its edge was missed; catching up", "motion" if active else "idle")
            (self._motion_started if active else self._motion_ended)()


def _ignore() -> None:
    pass


def _guarded(what: str, action: Callable[[], None]) -> None:
    """Run a callback body at the top of a foreign thread: log any failure with its traceback, never raise."""
    try:
        action()
    except Exception:
        logger.exception("%s handler failed", what)
