"""The seal's behaviour: presence → spoken warning, snapshots and a signed ``intrusion`` event; the enclosure's tamper
switch; heartbeats; arm/disarm.

:class:`SealAgent` gets its sensor, switch, camera, speaker, the journal's recorder and a clock as arguments and
imports no hardware or network library, so the same code runs on a Raspberry Pi, on gpiozero's mock pins and in tests.
Its events leave it once, through the recorder (edge → warning → journal → delivery); it never sees a PUBACK, a
receipt or a command's bytes (:class:`~seal_agent.journal.delivery.Delivery` and
:class:`~seal_agent.behaviour.commands.CommandDesk` own those).

Threads: the sensor's callbacks run on the sensor library's thread and only decide and start the warning; the
trigger's event is recorded on ``seal-triggers`` (see :mod:`seal_agent.behaviour.triggers`); the timer (repeats,
heartbeats, missed-edge check) runs on ``seal-agent-timer``. Decisions are made under one lock, and a warning
they decide on is started under it too: :meth:`SealAgent.arm` and :meth:`SealAgent.disarm` commit their event and
change the state under that lock (a disarm also stops the speaker under it), so an edge sees the seal armed or
disarmed, never between, and a disarmed seal never starts a warning; yet an edge never waits for that commit
(:mod:`seal_agent.behaviour.edge_gate`). Camera I/O and the triggers' events happen outside the lock.

What a trigger then does is :class:`~seal_agent.behaviour.triggers.TriggerResponder`'s; this module decides *whether*
(armed, presence, cool-down; a flapping or stuck sensor: :mod:`.sensor_bound`; the lid's edges: :mod:`.lid`).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from typing import Any

from seal_agent import __version__
from seal_agent.behaviour.armed_state import CHANGED_BY_SETTING, arm_for_new_case, committed_state, stored_armed
from seal_agent.behaviour.clock import ClockWatch, SystemClock, guarded, ignore
from seal_agent.behaviour.deferred import DeferredWarning
from seal_agent.behaviour.edge_gate import EdgeGate
from seal_agent.behaviour.levels import RECONCILE_S, Caught, LevelCheck
from seal_agent.behaviour.lid import LidEdges
from seal_agent.behaviour.owed_results import sign_owed
from seal_agent.behaviour.sensor_bound import SensorBounds, SensorLimits
from seal_agent.behaviour.triggers import CameraPolicy, TriggerResponder
from seal_agent.behaviour.warning import WarningPolicy, WarningSettings
from seal_agent.behaviour.warning_outcome import WarningStart
from seal_agent.errors import OutboxError
from seal_agent.interfaces import Clock, ClockState, EvidenceCamera, MotionSource, Speaker, Switch
from seal_agent.journal.outbox import StoredEvent
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: How long arm or disarm wait for the events of the edges decided before them to be committed.
SETTLE_S = 2.0

__all__ = ["SealAgent", "SystemClock"]


class SealAgent(LidEdges):
    """One seal. Call :meth:`start`, then :meth:`stop`; :meth:`arm` / :meth:`disarm` at any time in between.

    The armed state is committed with the ``armed``/``disarmed`` event and survives restarts in its case (a disarm
    of another: :mod:`.armed_state`). A new seal starts armed. Disarmed, it is silent but records every event.
    Every event goes to ``recorder``; start the delivery before :meth:`start` (it records ``agent_started``).
    """

    def __init__(
        self,
        *,
        recorder: EventRecorder,
        motion: MotionSource,
        speaker: Speaker,
        warning: WarningSettings,
        heartbeat_s: float,
        clock: Clock | None = None,
        agent_version: str = __version__,
        camera: EvidenceCamera | None = None,
        camera_policy: CameraPolicy | None = None,
        tamper: Switch | None = None,
        camera_unavailable: str | None = None,
        clock_state: ClockState | None = None,
        sensor_limits: SensorLimits | None = None,
    ) -> None:
        self.agent_version = agent_version
        self.heartbeat_s = heartbeat_s
        self._recorder = recorder
        self._outbox = recorder.outbox
        self._motion = motion
        self._speaker = speaker
        self._camera = camera
        self._tamper = tamper
        self._clock = clock or SystemClock()
        self._clock_watch = ClockWatch(self._clock, clock_state)  # clock_state None: signed unknown
        self._respond = TriggerResponder(
            speaker=speaker, line=recorder, camera=camera, camera_policy=camera_policy, monotonic=self._clock.monotonic
        )
        # A camera configured but unusable (``camera_unavailable``: why) is signed as such, never as "none".
        self._camera_reason = camera_unavailable if camera is None else None
        if self._camera_reason is not None:
            self._respond.camera_absent = "unavailable"
        self._policy = WarningPolicy(warning)
        self._sensors = SensorBounds(  # flapping or stuck lines: :mod:`.sensor_bound`
            sensor_limits or SensorLimits(), self._clock.monotonic(), tamper=tamper is not None, sign=self._respond.note
        )
        self._armed = stored_armed(self._outbox)  # as committed; a disarm of another case is undone at start
        self._present = False
        self._lid_open = False  # what the tamper switch's edges (or its level check) said last
        self._motion_level = LevelCheck(lambda: motion.is_active, self._clock)
        self._tamper_level = LevelCheck(lambda: bool(tamper and tamper.is_active), self._clock)
        self._deferred: DeferredWarning | None = None  # the warning a cool-down deferred for the present intrusion
        # Held while deciding to warn and starting that warning, and while arm or disarm commit and change the state
        # (the sensors' edges take it through :attr:`_edges`, which never lets them wait for such a commit).
        self._lock = threading.RLock()
        self._edges = EdgeGate(self._lock)
        # Held while arm, disarm or a heartbeat records (no sensor callback takes it): what they tell is in order.
        self._arming = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._timer: threading.Thread | None = None
        #: Called with the stored ``intrusion`` event once committed, on ``seal-trigger-commits``, in the order of the
        #: triggers (the next one's waits for it): return quickly. Failures are logged and affect nothing else; one
        #: hanging past the stop is not called again, and the stop follows up the triggers behind it.
        self.when_intrusion: Callable[[StoredEvent], None] | None = None
        self._started_at = self._clock.monotonic()
        self._next_heartbeat = self._started_at + heartbeat_s

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Record ``agent_started``, listen to the sensors and run the timer."""
        self._started_at = self._clock.monotonic()
        self._next_heartbeat = self._started_at + self.heartbeat_s
        clock = self._clock_watch.started()  # its clock's sync state and the kernel's boot id
        self._recorder.follow_clock(self._clock_watch)  # each event is stamped in the clock in force at its seq
        self._respond.start()
        if not self._armed and arm_for_new_case(self._recorder):  # its ``armed`` first, before it guards
            self._armed = True
        # A full disk must not keep the seal from watching and warning: the event waits in memory for room.
        self._recorder.record_or_hold(
            EventType.AGENT_STARTED,
            {"agent_version": self.agent_version, "armed": self._armed, **self._camera_health(), **clock},
            late=lambda: {"outbox_depth": self._outbox.depth()},  # read once the events held before it are in
        )
        sign_owed(self._recorder)  # the warning_results a crash or a power cut kept the last run from signing
        # The sensors' callbacks run on their library's thread: a failure is logged there, never raised into it.
        self._motion.set_handlers(
            on_start=lambda: guarded("motion start", self._motion_started),
            on_end=lambda: guarded("motion end", self._motion_ended),
        )
        if self._tamper is not None:
            self._tamper.set_handlers(
                on_start=lambda: guarded("tamper", self._tamper_opened),
                on_end=lambda: guarded("tamper closed", self._tamper_closed),
            )
            if self._tamper.is_active:
                guarded("tamper at start", lambda: self._tamper_opened(at_start=True))
        self._timer = threading.Thread(target=self._run_timer, name="seal-agent-timer", daemon=True)
        self._timer.start()
        logger.info(
            "seal %s started (case %s, %s, %d event(s) waiting)",
            self._recorder.device_id,
            self._recorder.case_no,
            "armed" if self._armed else "disarmed",
            self._outbox.depth(),
        )

    def stop(self) -> None:
        """Stop listening to the sensors, stop the timer, record what the triggers still owe and silence the speaker.
        The caller stops the delivery and closes the sensors, the camera, the speaker and the publisher it created."""
        self._motion.set_handlers(on_start=ignore, on_end=ignore)
        if self._tamper is not None:
            self._tamper.set_handlers(on_start=ignore, on_end=ignore)
        self._stopping.set()
        self._wake.set()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.join(5.0)
        with self._lock:  # every edge counted is signed
            self._sensors.flush(self._clock.monotonic())
        self._speaker.stop()  # a warning under way ends now, so its warning_result is recorded before we return
        with self._lock:  # a warning a cool-down deferred never started: no warning_result (none is true to sign)
            self._deferred = None
        self._respond.stop()
        self._speaker.stop()  # and one a pending confirmation started meanwhile

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def changed_by(self) -> int | None:
        """The command whose ``armed``/``disarmed`` set the present state (its ``by``), if one did (none yet)."""
        by = self._outbox.setting(CHANGED_BY_SETTING)
        return int(by) if by and self._armed == stored_armed(self._outbox) else None

    def arm(self, reason: str = "local", *, by: int | None = None) -> bool:
        """Arm the seal (warnings on); records ``armed`` (``by`` = command id). False if it was armed already.

        Someone already present is warned at once; like a repeat, that warning has no event of its own (the
        presence's ``intrusion`` was recorded when it began): its outcome shows in the heartbeat's ``speaker``."""
        with self._arming, self._edges.changing():
            if self._armed:
                return False
            self._change(EventType.ARMED, reason, by, armed=True)
            if self._present and self._policy.motion_started(self._clock.monotonic()):
                self._respond.play_warning()
        self._wake.set()
        return True

    def disarm(self, reason: str = "local", *, by: int | None = None) -> bool:
        """Disarm the seal (no warnings; events still recorded); records ``disarmed``. False if already so."""
        with self._arming, self._edges.changing():
            if not self._armed:
                return False
            self._change(EventType.DISARMED, reason, by, armed=False)
            self._speaker.stop()  # under the lock: no edge starts a warning between the state and the stop
        return True

    def _change(self, type: EventType, reason: str, by: int | None, *, armed: bool) -> None:
        """Commit ``armed``/``disarmed`` and take the state it tells (under both locks; the edges meanwhile are decided
        after it: :mod:`.edge_gate`). The events of the edges decided before it enter the recorder's line first (at
        most :data:`SETTLE_S`), which commits them before the change: an ``intrusion`` with the old ``armed`` never
        follows it. One still being made then (a slow camera or speaker), or refused (a full disk), refuses it."""
        if not self._respond.wait_in_line(SETTLE_S):
            raise OutboxError(f"{type.value} refused: an earlier trigger's event is still being made at {SETTLE_S} s")
        state = committed_state(armed=armed, by=by, case_no=self._recorder.case_no)
        self._recorder.record(type, {"reason": reason, "by": by}, settings=state)
        self._armed = armed
        self._policy.reset()
        self._settle_deferred(WarningStart("suppressed_disarmed"))

    def _settle_deferred(self, start: WarningStart) -> None:
        """What became of the warning a cool-down deferred, if one is pending (under the lock)."""
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred.decided(start)

    def test_warning(self) -> WarningStart:
        """Play the warning now, armed or not (a court's ``test_warning``): ``started``, ``busy`` or ``failed``."""
        return self._respond.play_warning()

    def follow_warning(self, start: WarningStart, *, trigger: str, trigger_seq: int) -> None:
        """Record ``warning_result`` for the event ``trigger_seq`` once ``start``'s warning is over, if it is not."""
        self._respond.follow_warning(start, trigger=trigger, trigger_seq=trigger_seq)

    def wait_recorded(self, timeout: float, *, follow_ups: bool = False) -> bool:
        """Wait until every trigger's event (and, with ``follow_ups``, its ``snapshot_taken``) is recorded."""
        return self._respond.wait_recorded(timeout, follow_ups=follow_ups)

    def snapshot_now(self) -> dict[str, Any]:
        """Store and queue the camera's frame: the ``snapshot`` command's answer (see
        :meth:`~seal_agent.interfaces.EvidenceCamera.snapshot_now`); ``no_camera`` or ``camera_unavailable`` if none."""
        if self._camera is not None:
            return self._camera.snapshot_now()
        result = "no_camera" if self._camera_reason is None else "camera_unavailable"
        return {"result": result, "snapshot": None, **self._camera_health()}

    @property
    def camera_state(self) -> str:
        return self._respond.camera_state

    def _camera_health(self) -> dict[str, str]:
        """``camera``, and ``camera_reason`` for a configured camera the seal cannot use."""
        reason = {} if self._camera_reason is None else {"camera_reason": self._camera_reason}
        return {"camera": self.camera_state, **reason}

    def heartbeat(self, extra: Mapping[str, Any] | None = None) -> StoredEvent:
        """Record a ``heartbeat`` event now. Its ``armed`` is read and recorded under the lock that :meth:`arm` and
        :meth:`disarm` record under: the court takes the latest ``seq`` that tells as the seal's state, so a heartbeat
        that read ``armed`` before a disarm must not follow the ``disarmed`` (nor its ``command_ack``). A PIR edge
        meanwhile starts its warning at once."""
        with self._arming:
            return self._recorder.record(
                EventType.HEARTBEAT,
                {
                    "uptime_s": int(self._clock.monotonic() - self._started_at),
                    "agent_version": self.agent_version,
                    "pir_state": "motion" if self._motion.is_active else "idle",
                    "tamper": "none" if self._tamper is None else ("open" if self._tamper.is_active else "closed"),
                    "sensors": self._sensors.heartbeat(),  # ints and states read without the edges' lock
                    **self._camera_health(),
                    "armed": self._armed,
                    "disk_free_bytes": shutil.disk_usage(self._outbox.path.parent).free,
                    **self._respond.speaker_health.payload(),
                    **(extra or {}),
                },
                late=lambda: {**self._counts(), **self._clock_watch.heartbeat_fields()},  # clock: of its ts
            )

    def _counts(self) -> dict[str, int]:
        """What waits for the court's receipt, read when the heartbeat is committed (the events held before it too)."""
        return {
            "outbox_depth": self._outbox.depth(),
            "snapshots_pending": self._outbox.snapshot_depth(),  # camera or not: they are still delivered
        }

    # -- sensor callbacks (sensor thread) ---------------------------------------------------------------------

    def _motion_started(self, caught: Caught | None = None) -> None:
        """A presence began: at its edge, or ``caught`` by the level check (then stamped when caught, saying so)."""
        now = self._clock.monotonic()  # on the edge's thread: a change being committed delays its decision only
        self._motion_level.saw(True)
        self._edges.decide(lambda: self._presence_began(now, caught))

    def _presence_began(self, now: float, caught: Caught | None) -> None:  # under the lock
        full = self._sensors.edge("pir", now, high=True, trigger=not self._present)
        if self._present:
            return
        self._present = True
        armed = self._armed
        wanted = armed and self._policy.motion_started(now)
        if not full:  # flapping: merged into a signed count (:mod:`.sensor_bound`); the warning keeps its policy
            if wanted:
                self._respond.play_warning()
            return
        # Not wanted though armed: the cool-down deferred it (intrusion: deferred_cooldown; a warning_result tells).
        deferred = self._deferred = DeferredWarning(self._respond.follow_warning) if armed and not wanted else None
        self._respond.intrusion(
            now,
            armed=armed,
            wanted=wanted,
            on_not_seen=self._cancel_warning,
            while_armed=self._while_armed,
            on_recorded=self._intrusion_recorded,
            deferred=deferred,
            **({} if caught is None else caught.payload()),
        )

    def _while_armed(self, action: Callable[[], WarningStart]) -> WarningStart | None:
        """Run ``action`` (start a warning) under the lock if the seal is armed; None if it is disarmed."""
        with self._lock:
            return action() if self._armed else None

    def _intrusion_recorded(self, stored: StoredEvent) -> None:
        self._wake.set()  # the timer schedules the repeats (not earlier: it would compete with the commit)
        hook = self.when_intrusion
        if hook is not None:
            guarded("when_intrusion", lambda: hook(stored))

    def _cancel_warning(self) -> None:
        with self._lock:
            self._policy.cancel()

    def _motion_ended(self, caught: Caught | None = None) -> None:
        now = self._clock.monotonic()
        self._motion_level.saw(False)
        self._edges.decide(lambda: self._presence_ended(now))

    def _presence_ended(self, now: float) -> None:  # under the lock
        self._sensors.edge("pir", now, high=False)
        if not self._present:
            return
        self._present = False
        self._policy.motion_ended(now)
        self._settle_deferred(WarningStart("suppressed_cooldown"))  # it ended within the cool-down: no warning
        logger.info("presence ended")

    # -- timer thread -----------------------------------------------------------------------------------------

    def _run_timer(self) -> None:
        while not self._stopping.is_set():
            guarded("timer", self._tick)
            with self._lock:
                deadline = min(self._next_heartbeat, self._policy.next_due() or float("inf"))
            timeout = min(RECONCILE_S, max(0.0, deadline - self._clock.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()

    def _tick(self) -> None:
        guarded("clock watch", self._recorder.check_clock)  # a step is recorded now, if no event saw it first
        now = self._clock.monotonic()
        self._catch_missed_edges(now)
        with self._lock:
            if self._armed and self._policy.due(now):
                self._settle_deferred(self._respond.play_warning())  # a repeat, or the warning a cool-down deferred
            self._sensors.due(now, {"pir": self._present, "tamper": self._lid_open})
            beat = now >= self._next_heartbeat
            if beat:
                self._next_heartbeat = now + self.heartbeat_s
        if beat:
            self._beat()

    def _beat(self) -> None:
        """The timer's heartbeat. One falling due while the outbox refuses events (a full disk) is skipped, not held:
        it reports the seal's state when it is committed, and the next one, ``heartbeat_s`` later, reports it then."""
        try:
            self.heartbeat()
        except OutboxError as exc:
            logger.warning("heartbeat skipped (not held: the next is due in %.0f s): %s", self.heartbeat_s, exc)

    def _catch_missed_edges(self, now: float) -> None:
        """A sensor's level long unlike our belief: an edge was lost; act on it, saying so (:mod:`.levels`)."""
        caught = self._motion_level.missed(self._present, now)
        if caught is not None:
            logger.warning("PIR reads %s but its edge was missed; catching up", "motion" if caught.active else "idle")
            (self._motion_started if caught.active else self._motion_ended)(caught)
        caught = None if self._tamper is None else self._tamper_level.missed(self._lid_open, now)
        if caught is not None:
            logger.warning("tamper switch reads %s but its edge was missed", "open" if caught.active else "closed")
            (self._tamper_opened if caught.active else self._tamper_closed)(caught=caught)
