"""Court commands: check each one against the pinned court key, act, and answer with a signed event.

The rule for every command that reaches the seal's ``cmd`` topic:

* :func:`seal_protocol.commands.check_command` decides; a refusal records ``command_rejected``
  ``{command_id, reason, detail}`` (:func:`~seal_protocol.commands.refusal_payload`). ``command_id`` is the court's
  only once the command's signature verified: a ``malformed``, ``unsigned`` or ``bad_signature`` refusal names no
  ``command_id`` (null) but the ``claimed_command_id`` of bytes no court key signed and their ``sha256``. A
  ``replayed`` refusal (an id not above the last accepted one) also signs the refused bytes' ``sha256`` and the
  ``last_accepted_id``: the court tells a command delivered again from a new one under an id it gave before (its
  ids went back: a restored database), which the seal never carries out. A command
  issued for another case than the configured ``case_no`` (one decided before the seal was moved, delivered late
  from the broker's session) is refused as ``wrong_case``; spellings of one number (one canonical form) are one
  case.
* An accepted command is carried out first; only then is ``command_ack`` ``{command_id, action, result, …}``
  recorded, and in the same outbox transaction the command's id becomes the last accepted one. A second delivery
  of the same command (a QoS 1 redelivery after a crash) is therefore refused as ``replayed``: its ack exists.
* A command carried out whose answer could not be committed *for now* (:class:`~seal_agent.errors.OutboxError`, e.g.
  a full disk) is *unanswered*: the desk remembers its result, and when the
  court's command comes again it is answered with that result and not carried out again — also if it has expired
  meanwhile, names a case the seal no longer guards, or if a later id was accepted in between: such a delivery is
  acknowledged, never refused (``replayed``, ``expired``, ``wrong_case``), since the seal obeyed it. A test warning
  is answered with its outcome as it stands then. The memory is the process's; an ``arm`` or ``disarm`` also
  survives a restart, through the state's ``by`` that the seal committed with its ``armed``/``disarmed`` event
  (:attr:`~seal_agent.behaviour.seal.SealAgent.changed_by`): the restarted seal answers it ``armed``/``disarmed``.
  A ping, snapshot or test warning whose answer was lost with the process is carried out again if still valid.
* An answer that can *never* be recorded (the outbox refuses that event for its own sake:
  :class:`~seal_agent.errors.EventLost`, whose ``event_lost`` naming the command is committed in its place) does not
  hold up later commands: the command counts as answered. Its id becomes the last accepted one, so it is not carried
  out again (a later delivery is refused as ``replayed``) and nothing is remembered for a restart; the court sees the
  ``event_lost`` and the command expire unanswered. A test warning's ``warning_result`` then follows no answer and is
  not recorded. A refusal (``command_rejected``) that can never be recorded is likewise replaced by its
  ``event_lost``. So does an action whose own event can never be recorded (an ``arm`` whose ``armed`` the outbox
  refuses for its own sake): the action took no effect, its ``event_lost`` stands in its place, and the command
  counts as taken, unanswered, not to be tried again; the court sees it expire (``arm_failed``/``disarm_failed``).
* A command's validity window is judged by the seal's wall clock. While the kernel does not say the wall clock is
  synchronised (``synced`` false or unknown), never below the court's latest signed time it has accepted a command of
  (:class:`~seal_agent.behaviour.court_time.CourtTime`): a seal booted with its clock behind refuses as ``expired`` a
  command the court's later word shows expired; and a command issued "in the future" is not refused
  ``not_yet_valid``: the court's signed time beats an unset clock; it is accepted and raises that floor (no further
  than its own ``expires_at``). Once the kernel says the clock is synchronised, the clock alone judges: the floor is
  dropped, from the outbox too, so a court clock wrong once does not outlast it; a command from the future is refused.
* A :class:`CommandDesk` without a court key refuses every command as ``bad_signature`` (malformed and unsigned
  ones keep their own reason): it obeys nobody rather than anybody. A running seal always has the key: the
  runtime refuses a configuration without ``[commands] server_public_key``, which also verifies the receipts.

Handlers run on paho's network thread, one command at a time; the broker gets its PUBACK when they return. A failure of
the action or of committing the answer *for now* propagates: the command then stays unacknowledged, the publisher takes
no later command on that connection and renews it after a back-off, and the broker delivers them again, in order, the
failed one first (:mod:`seal_agent.mqtt`). An action that failed was not carried out (an ``arm`` whose ``armed`` could
not be committed did not arm) and is tried again then.

Once the seal stops (:meth:`CommandDesk.close`, before the agent stops), a command is not taken at all
(:class:`~seal_agent.errors.SealStopping`): an ack given then could promise a follow-up (a ``test_warning``'s
``warning_result``) that a stopped agent never records. It stays unacknowledged like one whose answer failed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seal_agent.behaviour.court_time import COURT_TIME_SETTING, CourtTime
from seal_agent.behaviour.owed_results import owe
from seal_agent.behaviour.seal import SealAgent
from seal_agent.behaviour.warning_outcome import WarningStart
from seal_agent.errors import EventLost, OutboxError, SealStopping
from seal_agent.interfaces import CLOCK_UNKNOWN, Clock, ClockState
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType
from seal_protocol.commands import (
    Command,
    CommandAction,
    CommandRefused,
    RejectReason,
    check_command,
    refusal_payload,
)
from seal_protocol.signing import SigningKey, VerifyKey

logger = logging.getLogger(__name__)

LAST_COMMAND_SETTING = "last_command_id"
#: How many commands carried out but not answered the desk remembers (one at a time, unless the broker lost some).
UNANSWERED_KEPT = 16
#: Refusals of a genuine court command for this seal (its signature checked) that one it obeyed never gets.
_OBEYED_REFUSALS = frozenset(
    {RejectReason.REPLAYED, RejectReason.EXPIRED, RejectReason.NOT_YET_VALID, RejectReason.WRONG_CASE}
)


@dataclass(slots=True)
class _Done:
    """A command carried out: its action and result (for a test warning, the warning, settled when answering)."""

    action: CommandAction
    result: dict[str, Any]
    warning: WarningStart | None = None
    #: SHA-256 (hex) of the command's bytes, signed in its ``command_ack`` (``None``: an arm/disarm known only from
    #: the state's ``by`` after a restart, whose bytes this process never saw).
    sha256: str | None = None


def _same_bytes(done: _Done, data: bytes) -> bool:
    """Whether ``data`` is the command ``done`` was carried out for (unknown bytes: taken as the same, as before)."""
    return done.sha256 is None or done.sha256 == hashlib.sha256(data).hexdigest()


class CommandDesk:
    """Receives raw commands for ``agent`` (bind :meth:`handle` to the publisher) and records each answer with
    ``recorder``."""

    def __init__(
        self,
        agent: SealAgent,
        recorder: EventRecorder,
        clock: Clock,
        *,
        server_key: VerifyKey | None,
        clock_state: ClockState | None = None,
    ) -> None:
        self._agent = agent
        self._recorder = recorder
        self._clock_state = clock_state  # None: the clock's sync state is unknown (judged as not synchronised)
        self._court_time = CourtTime(clock, recorder.outbox.setting(COURT_TIME_SETTING))
        self._server_key = server_key
        # Without a pinned key, signatures are checked against a key whose private half was thrown away.
        self._nobody = SigningKey.generate().verify_key
        self._lock = threading.Lock()
        self._warning: WarningStart | None = None  # the test warning the action being carried out started
        self._closed = False
        self._unanswered: dict[int, _Done] = {}  # command id -> carried out, its answer not committed
        self._lost: set[int] = set()  # commands carried out whose answer can never be recorded (this process)
        by = agent.changed_by  # an arm/disarm whose state the seal committed but whose answer it may not have
        if by is not None and by > self.last_accepted_id:
            armed = agent.armed
            action = CommandAction.ARM if armed else CommandAction.DISARM
            self._unanswered[by] = _Done(action, {"result": "armed" if armed else "disarmed"})
        self._actions: dict[CommandAction, Callable[[Command], dict[str, Any]]] = {
            CommandAction.DISARM: self._disarm,
            CommandAction.ARM: self._arm,
            CommandAction.TEST_WARNING: self._test_warning,
            CommandAction.SNAPSHOT: self._snapshot,
            CommandAction.PING: self._ping,
        }
        if server_key is None:
            logger.warning("no [commands] server_public_key configured: every court command will be refused")

    @property
    def last_accepted_id(self) -> int:
        return int(self._recorder.outbox.setting(LAST_COMMAND_SETTING) or 0)

    def close(self) -> None:
        """Take no more commands (the seal is stopping); waits for the one being carried out, whose follow-up the
        agent's stop then records."""
        with self._lock:
            self._closed = True

    def handle(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise SealStopping("the seal is stopping: the command is not taken")
            unsynced = self._clock_unsynced()
            if not unsynced:
                self._trust_own_clock()
            try:
                command = check_command(
                    data,
                    device_id=self._recorder.device_id,
                    case_no=self._recorder.case_no,
                    server_key=self._server_key or self._nobody,
                    last_accepted_id=self.last_accepted_id,
                    now=self._court_time.now(),
                    clock_unsynced=unsynced,
                )
            except CommandRefused as refused:
                if refused.command_id in self._lost and refused.reason in _OBEYED_REFUSALS:
                    logger.info("court command %s again: carried out, its answer lost for good", refused.command_id)
                    return
                done = self._unanswered.get(refused.command_id or 0)
                if done is None or refused.reason not in _OBEYED_REFUSALS:
                    self._reject(refused, data)
                    return
                logger.info("court command %s again: carried out, now answered", refused.command_id)
                self._answer(refused.command_id or 0, done)
                if not _same_bytes(done, data):  # another command under that id: refused in its own right
                    self._reject(refused, data)
                return
            if unsynced:
                self._court_time.saw(command.issued_at, command.expires_at)
            if command.command_id in self._lost:
                logger.info("court command %d again: carried out, its answer lost for good", command.command_id)
                return
            done = self._unanswered.get(command.command_id)
            if done is not None and not _same_bytes(done, data):
                self._answer_reused(command.command_id, done, data)
                return
            if done is None:
                logger.info("court command %d accepted: %s", command.command_id, command.action.value)
                self._warning = None
                try:
                    result = self._actions[command.action](command)
                except EventLost as lost:  # the action's own event (armed, disarmed…) can never be recorded
                    self._taken(command.command_id, max(command.command_id, self.last_accepted_id), lost, "not done")
                    return
                done = _Done(command.action, result, self._warning, hashlib.sha256(data).hexdigest())
                self._remember(command.command_id, done)
            self._answer(command.command_id, done)

    def _clock_unsynced(self) -> bool:
        """The kernel does not say the wall clock is synchronised (false, or unknown)."""
        sync = CLOCK_UNKNOWN if self._clock_state is None else self._clock_state.sync()
        return sync.synced is not True

    def _trust_own_clock(self) -> None:
        """The kernel says the wall clock is synchronised: it alone judges commands. The court-time floor is dropped,
        and removed from the outbox, so that a restart before NTP answers does not bring back a floor a wrong court
        clock may have raised (if that removal fails, the next answer removes it with itself)."""
        self._court_time.drop()
        try:
            if self._recorder.outbox.setting(COURT_TIME_SETTING) is not None:
                self._recorder.outbox.unset_setting(COURT_TIME_SETTING)
                logger.info("the wall clock is synchronised: the court-time floor is dropped")
        except OutboxError as exc:
            logger.warning("cannot remove the court-time floor from the outbox (%s): the next answer removes it", exc)

    def _remember(self, command_id: int, done: _Done) -> None:
        """Keep ``done`` until its answer is committed (the oldest goes first past :data:`UNANSWERED_KEPT`)."""
        self._unanswered[command_id] = done
        while len(self._unanswered) > UNANSWERED_KEPT:
            self._unanswered.pop(min(self._unanswered))

    def _answer(self, command_id: int, done: _Done) -> None:
        """Commit ``command_ack`` for a command carried out; the last accepted id never goes back (a command answered
        late, after a later one was accepted, leaves it at the later one)."""
        result, owed = done.result, None
        if done.warning is not None:  # the test warning as it stands now (it may have ended since the first try)
            state, languages = done.warning.settle()
            result = {"result": state, "warning_languages": languages}
            owed = owe(done.warning, "command_ack", languages)  # committed with the ack: its warning_result is owed
        last = max(command_id, self.last_accepted_id)
        carried_out = {} if done.sha256 is None else {"sha256": done.sha256}
        try:
            stored = self._recorder.record(
                EventType.COMMAND_ACK,
                {"command_id": command_id, "action": done.action.value, **result, **carried_out},
                settings={LAST_COMMAND_SETTING: str(last), **self._court_time_setting(), **(owed or {})},
            )
        except EventLost as lost:
            del self._unanswered[command_id]
            self._taken(command_id, last, lost, "carried out")
            return
        del self._unanswered[command_id]
        if done.warning is not None:
            self._agent.follow_warning(done.warning, trigger="command_ack", trigger_seq=stored.seq)

    def _court_time_setting(self) -> dict[str, str | None]:
        """The court-time floor to keep with an answer (None: none, removed)."""
        return {COURT_TIME_SETTING: self._court_time.setting()}

    def _answer_reused(self, command_id: int, done: _Done, data: bytes) -> None:
        """``data``, a valid command under the id of one carried out but not yet answered, is another command: the
        court gave the id twice. The one carried out is answered (its ack names its own bytes' ``sha256``); the new
        one is refused ``replayed``, as it would be once that answer is committed — it is never carried out."""
        logger.info("court command %d again: carried out, now answered", command_id)
        self._answer(command_id, done)
        detail = f"id {command_id} is that of another command this seal carried out"
        self._reject(CommandRefused(RejectReason.REPLAYED, detail, command_id, last_accepted=command_id), data)

    def _taken(self, command_id: int, last: int, lost: EventLost, what: str) -> None:
        """A command whose answer — or, ``not done``, whose action's own event (``armed``, ``disarmed``…: the action
        then took no effect) — can never be recorded: its ``event_lost`` stands in its place. The command counts as
        taken, not to be carried out or answered again, and its id becomes the last accepted one: it does not hold
        up later commands (the court sees it expire unanswered, and the ``event_lost``)."""
        self._lost.add(command_id)
        logger.error(
            "court command %d (%s): what it must record can never be recorded (%s): event_lost seq=%d stands in its "
            "place, and later commands are taken",
            command_id,
            what,
            lost,
            lost.seq,
        )
        try:
            self._recorder.outbox.set_setting(LAST_COMMAND_SETTING, str(last))
        except OutboxError as exc:  # this process still knows it; a restart may answer an arm/disarm once more
            logger.warning("cannot record court command %d as the last accepted one (%s)", command_id, exc)

    def _reject(self, refused: CommandRefused, data: bytes) -> None:
        detail = str(refused).split(": ", 1)[-1]
        if self._server_key is None and refused.reason is RejectReason.BAD_SIGNATURE:
            detail = "no court public key is configured on this seal ([commands] server_public_key)"
        payload = refusal_payload(refused, data, detail)
        named = payload["command_id"] if payload["command_id"] is not None else f"claiming {refused.claimed_command_id}"
        logger.warning("court command %s refused: %s (%s)", named, refused.reason.value, detail)
        try:
            self._recorder.record(EventType.COMMAND_REJECTED, payload)
        except EventLost as lost:  # its event_lost stands in its place: the refusal does not hold up later commands
            logger.error("the refusal of court command %s can never be recorded: %s", named, lost)

    def _disarm(self, command: Command) -> dict[str, Any]:
        changed = self._agent.disarm(f"court command {command.command_id}", by=command.command_id)
        return {"result": "disarmed" if changed else "already_disarmed"}

    def _arm(self, command: Command) -> dict[str, Any]:
        changed = self._agent.arm(f"court command {command.command_id}", by=command.command_id)
        return {"result": "armed" if changed else "already_armed"}

    def _test_warning(self, command: Command) -> dict[str, Any]:
        self._warning = self._agent.test_warning()
        return {}  # the answer settles it

    def _snapshot(self, command: Command) -> dict[str, Any]:
        return self._agent.snapshot_now()  # says whether the frame was current and stored, and the camera's state

    def _ping(self, command: Command) -> dict[str, Any]:
        return {"result": "pong", "armed": self._agent.armed, "camera": self._agent.camera_state}
