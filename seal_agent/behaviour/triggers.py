"""What the seal does once a trigger fired: the warning, the event, the snapshots around it, the follow-up event.

The seal (:class:`~seal_agent.behaviour.seal.SealAgent`) decides *whether* a presence deserves a warning (armed,
cool-down); :class:`TriggerResponder` then acts on that decision for an ``intrusion`` (PIR edge) or a ``tamper``
(lid opened). A box smashed a second after the edge must leave both a warning and an event behind, so nothing
waits for the camera before the event is committed:

1. on the edge's own thread: the warning starts at once. With ``require_motion_confirmation`` it starts at once only
   if the camera already saw motion before the edge; otherwise a confirmation thread waits (at most
   ``motion_window_s`` + 0.5 s) for the camera's verdict, and only ``not_seen`` suppresses the warning (a blind, lost
   or still learning camera, ``unknown``, never silences the seal);
2. on the single trigger worker (``seal-triggers``, so events keep the order of their edges and the edge's thread
   is free for the next edge): the snapshots that exist from before the trigger are encoded and hashed in memory,
   and the signed event listing them is committed, with the verdict the camera can give *now* (frames up to the edge)
   — or, on a full disk, held in the recorder's line (:meth:`~seal_agent.journal.recorder.EventRecorder.record_in_line`)
   and the worker goes on with the next trigger, whose event queues behind it;
3. on ``seal-trigger-commits``, in the order of the triggers: once the event is committed, what needs its ``seq``
   (``on_recorded``, the ``warning_result`` it owes);
4. on the trigger's follow-up thread, started there too, once its event is settled (a trigger held on a full disk
   costs no thread, and the snapshots kept in memory for held events are bounded:
   :mod:`seal_agent.behaviour.held_snapshots`): those snapshots are stored and queued (the first is published at
   once), the post-trigger ones come in, and a ``snapshot_taken`` event lists them with the late motion verdict
   (frames up to ``motion_window_s`` after the edge), a pending confirmation's outcome, the trigger's ``seq`` and
   ``not_stored``;
5. on a warning follow-up thread, if the warning was still playing when its event was committed (``started``): a
   ``warning_result`` event with what each language's clip really did, once the warning is over (see
   :mod:`seal_agent.behaviour.warning_outcome`).

A trigger's event is signed with the time of its edge (taken on the edge's thread, before the warning starts, on the
monotonic clock; for an edge the level check caught, when caught, and the event signs ``detected_by``/``not_before``),
not when committed: capture, a slow commit or triggers retried on a full disk delay the commit, never the ``ts``. That
moment is told in the wall clock in force at the event's place in the chain, read as it takes its place in the
recorder's line (:mod:`seal_agent.journal.recorder`): an edge before a step of the wall clock whose event comes after
the ``clock_stepped`` is told in the new clock, as the events around it are. Its ``seq`` follows the commit order. An
event the outbox refuses (a full disk) is evidence: held in the recorder's line, in memory, and committed with that time
(a follow-up event: its first attempt's) once the disk has room — by the next event anyone records, which commits the
held ones first (an ``armed``/``disarmed``, a heartbeat, a command's answer never overtakes it), or by the retries of
the thread waiting for it; only a stop gives up waiting (the recorder's close then tries it once more, or logs it
whole), and what the trigger owes (``snapshot_taken``, ``warning_result``) is put in line behind it, naming its ``seq``
as that close commits it. An event that can never be recorded (the outbox refuses it for a reason of its own, e.g.
``SQLITE_TOOBIG``, or it cannot be built) is not tried again: the recorder commits a signed ``event_lost`` in its place,
and its trigger's follow-ups go on without its ``seq``. It imports no hardware library: speaker, camera and the recorder
are its arguments.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from seal_agent.behaviour.deferred import DEFERRED_COOLDOWN, DeferredWarning
from seal_agent.behaviour.held_snapshots import HeldSnapshots, TriggerSeq, seq_fields, seq_of
from seal_agent.behaviour.in_line import EventLine, TriggerLine
from seal_agent.behaviour.owed_results import owe, paid, promise
from seal_agent.behaviour.trigger import Trigger
from seal_agent.behaviour.warning_outcome import SpeakerHealth, WarningStart, start_warning
from seal_agent.interfaces import EvidenceCamera, Speaker, TriggerEvidence
from seal_agent.journal.outbox import Settings, StoredEvent
from seal_agent.journal.recorder import Turn
from seal_agent.journal.unkept import kept_settings, unkept_settings
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: Called with a trigger's committed event, on the ``seal-trigger-commits`` thread, in the order of the triggers.
OnRecorded = Callable[[StoredEvent], None]
#: What follows a trigger's event once settled: its seq (read late if it is left in line at the stop), and the event
#: if committed.
Then = Callable[[TriggerSeq, StoredEvent | None], None]
#: Runs its argument (start the warning) atomically with the seal's armed state if it is armed; None if disarmed.
WhileArmed = Callable[[Callable[[], WarningStart]], WarningStart | None]
#: An intrusion's ``warning`` while the camera has not yet confirmed or denied the presence.
PENDING_CONFIRMATION = "pending_confirmation"
#: How long a camera verdict may wait beyond the end of its window.
VERDICT_GRACE_S = 0.5
#: How long a ``warning_result`` waits for a warning to end (its clips last seconds; stop() ends it at once).
WARNING_END_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class CameraPolicy:
    """Whether the warning needs the camera to confirm the PIR, and the window (s) around the edge it looks at."""

    require_motion_confirmation: bool = False
    motion_window_s: float = 1.0


class TriggerResponder:
    """Warns at once, records each trigger's event on one worker thread, and follows up on the camera's evidence.

    :meth:`start` before the first trigger; :meth:`stop` records what is queued and waits for the follow-ups.
    """

    def __init__(
        self,
        *,
        speaker: Speaker,
        line: EventLine,
        camera: EvidenceCamera | None = None,
        camera_policy: CameraPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._speaker = speaker
        self.speaker_health = SpeakerHealth(monotonic)
        self._line = line
        self._queue = TriggerLine(line)
        self._camera = camera
        self.camera_absent = "none"  # the camera state without one: "unavailable" if one is configured but unusable
        self._policy = camera_policy or CameraPolicy()
        self._helpers: list[threading.Thread] = []
        self._helpers_lock = threading.Lock()
        self._held = HeldSnapshots()

    @property
    def camera_state(self) -> str:
        return self.camera_absent if self._camera is None else self._camera.state

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._queue.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Record every trigger already queued, then wait for confirmations and follow-ups, all within ``timeout``
        s — twice that if a hook hung past it (stop the camera first so that they finish at once)."""
        deadline = time.monotonic() + timeout
        if self._queue.stop(timeout):  # an event the outbox keeps refusing is tried once more, not for ever
            deadline = time.monotonic() + timeout  # a hook hung: the follow-ups it held back get their own timeout
        with self._helpers_lock:
            helpers, self._helpers = self._helpers, []
        for helper in helpers:
            helper.join(max(0.0, deadline - time.monotonic()))
        if late := [helper.name for helper in helpers if helper.is_alive()]:
            logger.error("%d follow-up(s) did not end by the stop: %s", len(late), ", ".join(late))

    def wait_in_line(self, timeout: float) -> bool:
        """Wait until the event of every trigger so far is committed or held in the recorder's line (so that any
        event recorded next comes after it); False on timeout."""
        return self._queue.wait_in_line(timeout)

    def wait_recorded(self, timeout: float, *, follow_ups: bool = False) -> bool:
        """Wait until the event of every trigger so far is committed (or failed) and, with ``follow_ups``, its
        confirmation and follow-up are done too; False on timeout."""
        deadline = time.monotonic() + timeout
        if not self._queue.wait_committed(timeout):
            return False
        if follow_ups:
            with self._helpers_lock:
                helpers = list(self._helpers)
            for helper in helpers:
                helper.join(max(0.0, deadline - time.monotonic()))
                if helper.is_alive():
                    return False
        return True

    # -- triggers (the edge's thread) -------------------------------------------------------------------------

    def play_warning(self) -> WarningStart:
        """Start the warning (:func:`~seal_agent.behaviour.warning_outcome.start_warning`). Never raises."""
        start = start_warning(self._speaker)
        self.speaker_health.watch(start)
        return start

    def follow_warning(self, start: WarningStart, *, trigger: str, trigger_seq: TriggerSeq) -> None:
        """If the event ``trigger_seq`` recorded ``start``'s warning as ``started`` (or ``deferred_cooldown``: see
        :mod:`seal_agent.behaviour.deferred`), record ``warning_result`` for it once it is over (on a follow-up
        thread); the promise is kept in the outbox until then (:mod:`seal_agent.behaviour.owed_results`)."""
        # Decided by what the event said, not by whether playback is over now: a warning that ended between the
        # event's commit and this call still owes the event its warning_result.
        if start.promised_result:
            promise(self._line.outbox, start, trigger, trigger_seq)  # a deferred one's: no event committed it
            self._helper("seal-warning-result", lambda: self._warning_result(start, trigger, trigger_seq))

    def _warning_result(self, start: WarningStart, trigger: str, trigger_seq: TriggerSeq) -> None:
        playback = start.playback
        if playback is not None and not playback.wait_ended(WARNING_END_MAX_S):  # recorded failed, not only logged
            logger.error("the warning of %s did not end in %.0f s", trigger, WARNING_END_MAX_S)
            playback.give_up(f"the warning did not end within {WARNING_END_MAX_S:.0f} s (the speaker hung)")
        warning, languages = (start.result, []) if playback is None else playback.outcome()
        seq, late = seq_fields(trigger_seq)  # an event left in line at the stop: its seq once the close commits it
        details = {"trigger": trigger, **seq, "warning": warning, "warning_languages": languages}
        self._record(EventType.WARNING_RESULT, details, late=late, settings=paid(start))

    def intrusion(
        self,
        now: float,
        *,
        armed: bool,
        wanted: bool,
        on_not_seen: Callable[[], None],
        while_armed: WhileArmed,
        on_recorded: OnRecorded | None = None,
        deferred: DeferredWarning | None = None,
        **detected: Any,
    ) -> None:
        """A presence began at ``now`` (monotonic); ``wanted``: the policy asked for a warning.

        ``on_not_seen`` is called (on the confirmation thread) if the camera's verdict suppressed the wanted warning,
        so the seal can cancel the repeats it scheduled; a pending confirmation starts its warning through
        ``while_armed`` (a seal disarmed meanwhile plays nothing: ``suppressed_disarmed``); ``on_recorded`` is called
        with the committed event (not by a stop that found a hook hung); ``deferred`` learns its seq, also if it is
        left in line at the stop; ``detected`` are signed too (an edge the level check caught, and when).
        """
        trigger = Trigger("intrusion", now)
        verdict: str | None = None
        start: WarningStart | None = None
        if wanted and self._camera is not None and self._policy.require_motion_confirmation:
            verdict = self._verdict(now, late=False)
            if verdict == "seen":
                start = self.play_warning()
            else:
                start = WarningStart(PENDING_CONFIRMATION)
                self._helper("seal-confirm", lambda: self._confirm(trigger, on_not_seen, while_armed))
        elif wanted:
            start = self.play_warning()
        else:
            start = WarningStart(DEFERRED_COOLDOWN if armed else "suppressed_disarmed")  # the policy deferred it
        if start.result != PENDING_CONFIRMATION:
            trigger.decided.set()

        def commit() -> None:
            evidence = self._capture(now)
            warning, languages = start.settle()
            payload = {
                "sensor": "pir",
                "armed": armed,
                "warning": warning,
                "warning_languages": languages,
                "camera": self.camera_state,
                "camera_motion": verdict or self._verdict(now, late=False),
                "snapshots": [] if evidence is None else evidence.hashes,
            }

            def then(seq: TriggerSeq, stored: StoredEvent | None) -> None:
                self.follow_warning(start, trigger="intrusion", trigger_seq=seq)
                if deferred is not None:
                    deferred.recorded(seq)
                if stored is None or on_recorded is None:
                    return
                if self._queue.draining:  # it must not hang the stop too
                    logger.error("intrusion seq=%d not passed on: a hook before it hung past the stop", stored.seq)
                else:
                    on_recorded(stored)

            owed = owe(start, "intrusion", languages)
            self._commit(EventType.INTRUSION, trigger, {**payload, **detected}, evidence, then, owed)

        self._queue.submit(commit)

    def tamper(self, now: float, *, armed: bool, at_start: bool, **detected: Any) -> None:
        """The enclosure was opened at ``now`` (monotonic): warn unless disarmed (a disarmed seal is being removed)."""
        trigger = Trigger("tamper", now)
        start = self.play_warning() if armed else WarningStart("suppressed_disarmed")
        trigger.decided.set()

        def commit() -> None:
            evidence = self._capture(now)
            warning, languages = start.settle()
            payload = {
                "state": "open",
                "at_start": at_start,
                "armed": armed,
                "warning": warning,
                "warning_languages": languages,
                "camera": self.camera_state,
                "snapshots": [] if evidence is None else evidence.hashes,
            }
            self._commit(
                EventType.TAMPER,
                trigger,
                {**payload, **detected},
                evidence,
                lambda seq, _: self.follow_warning(start, trigger="tamper", trigger_seq=seq),
                owe(start, "tamper", languages),
            )

        self._queue.submit(commit)

    def note(self, type: EventType, payload: Mapping[str, Any], at: float) -> None:
        """Sign a sensor's event (``sensor_flapping`` …) that happened at ``at``, behind the triggers' before it."""
        self._queue.submit(lambda: None if self._queue.commit(type, payload, at=at, then=lambda *_: None) else None)

    def _commit(
        self,
        type: EventType,
        trigger: Trigger,
        payload: Mapping[str, Any],
        evidence: TriggerEvidence | None,
        then: Then,
        owed: Settings | None = None,
    ) -> None:
        """Commit the trigger's event or put it in line (the worker goes on at once); once it is settled (committed,
        lost, or left in line at the stop), after those of the triggers before it, its follow-up starts (the
        snapshots are kept even if the event could not be committed) and ``then`` runs with its seq: the committed
        event's, or, for one left in line at the stop, read when a follow-up is committed (none for one lost).
        While the event is held, its snapshots wait in memory, for a bounded number of triggers
        (:class:`~seal_agent.behaviour.held_snapshots.HeldSnapshots`). ``owed``: the promise of its warning_result."""

        def committed(stored: StoredEvent | None, turn: Turn) -> None:
            trigger.seq, trigger.turn = (None if stored is None else stored.seq), turn
            try:
                if evidence is not None:
                    self._follow(trigger, evidence)
            finally:
                if (seq := trigger.follow_seq) is not None:
                    then(seq, stored)

        # Its snapshots are named before they are stored: a record, committed with it, says so until they are.
        trigger.unkept, settings = unkept_settings(evidence.hashes) if evidence and evidence.hashes else (None, None)
        settings = {**(settings or {}), **(owed or {})} or None
        try:
            trigger.turn = self._queue.commit(type, payload, at=trigger.at, then=committed, settings=settings)
        except Exception:
            if evidence is not None:  # no seq will come: the follow-up goes on without it
                self._follow(trigger, evidence)
            raise
        if evidence is not None:
            self._held.hold(trigger.turn, evidence)

    def _follow(self, trigger: Trigger, evidence: TriggerEvidence) -> None:
        """The trigger's event is settled: its snapshots are no longer held for it; start its follow-up."""
        if trigger.turn is not None:
            self._held.release(trigger.turn)
        self._helper("seal-trigger-follow-up", lambda: self._follow_up(trigger, evidence))

    # -- camera -----------------------------------------------------------------------------------------------

    def _capture(self, now: float) -> TriggerEvidence | None:
        return None if self._camera is None else self._camera.capture_around(now)

    def _verdict(self, now: float, *, late: bool) -> str:
        """Motion in the window before ``now`` at once, or (``late``) in the window around it, waiting for it."""
        if self._camera is None:
            return "unknown"
        window = self._policy.motion_window_s
        if not late:
            return self._camera.motion_verdict(now - window, now, 0.0)
        return self._camera.motion_verdict(now - window, now + window, window + VERDICT_GRACE_S)

    def _confirm(self, trigger: Trigger, on_not_seen: Callable[[], None], while_armed: WhileArmed) -> None:
        """The confirmation thread: warn unless the camera says ``not_seen`` around the edge or the seal was
        disarmed meanwhile."""
        try:
            verdict = self._verdict(trigger.at, late=True)
            trigger.late_verdict = verdict
            if verdict == "not_seen":
                on_not_seen()
                trigger.outcome = "suppressed_not_seen"
            else:  # seen, or unknown: a blind or lost camera never silences the seal
                trigger.start = while_armed(self.play_warning)
                trigger.outcome = "suppressed_disarmed" if trigger.start is None else trigger.start.result
        finally:
            trigger.decided.set()

    def _follow_up(self, trigger: Trigger, evidence: TriggerEvidence) -> None:
        """Once the trigger's event is settled: store the pre-trigger snapshots (naming those that could not be), then
        list the post-trigger ones. An event left in line at the stop is ahead of this one: its seq is read then."""
        not_stored = evidence.keep()
        later = evidence.wait_later()
        trigger.decided.wait(self._policy.motion_window_s + VERDICT_GRACE_S + 1.0)
        details: dict[str, Any] = {
            "snapshots": later,
            "not_stored": not_stored + evidence.later_not_stored(),
            "trigger": trigger.kind,
            "trigger_seq": trigger.seq,
            "camera_motion": trigger.late_verdict or self._verdict(trigger.at, late=True),
        }
        settings = dict(kept_settings(trigger.unkept) or {})
        if trigger.start is not None:
            details["warning"], details["warning_languages"] = trigger.start.settle()
            if (follow_seq := trigger.follow_seq) is not None:  # else no warning_result follows
                settings |= owe(trigger.start, trigger.kind, details["warning_languages"], follow_seq) or {}
        elif trigger.outcome is not None:
            details["warning"] = trigger.outcome
        late = None if trigger.seq is not None else lambda: {"trigger_seq": seq_of(trigger.turn)}
        self._record(EventType.SNAPSHOT_TAKEN, details, late=late, settings=settings or None)
        if trigger.start is not None and (seq := trigger.follow_seq) is not None:
            self.follow_warning(trigger.start, trigger=trigger.kind, trigger_seq=seq)

    def _record(self, type: EventType, payload: Mapping[str, Any], **options: Any) -> StoredEvent:
        """Commit a follow-up event (``snapshot_taken``, ``warning_result``) with the time of its first attempt, in
        line behind any event the outbox refused before it, and wait for it (:meth:`TurnWaiter.settled`); ``options``:
        ``late`` fields read when it is committed, ``settings`` committed with it."""
        return self._queue.waiter.settled(self._line.record_in_line(type, payload, **options))

    def _helper(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                logger.exception("%s failed", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._helpers_lock:  # started before a stop can see it (and join it)
            self._helpers = [helper for helper in self._helpers if helper.is_alive()] + [thread]
            thread.start()
