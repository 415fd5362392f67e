"""The one place where events are recorded: "something happened" becomes a signed, chained envelope committed to the
outbox, and delivery is told.

Everything in the seal that raises an event calls :meth:`EventRecorder.record` itself: the seal's behaviour (arm,
disarm, heartbeat, ``agent_started``), its trigger responder (``intrusion``, ``tamper``, ``snapshot_taken``,
``warning_result``), the court command desk (``command_ack``, ``command_rejected``), the camera's health and the
snapshot spool's thinning (wired by the runtime). An event that can never be recorded is replaced by a signed
``event_lost`` (see :class:`EventRecorder`). The recorder calls nothing back but
:attr:`EventRecorder.on_committed`, which :class:`~seal_agent.journal.delivery.Delivery` sets to its event courier's
``notify``: the data path runs one way, into the journal and on to delivery.

Events are committed in the order they happened, also on a full disk. An event the outbox refuses for now (a full
disk) is held *in line* (a :class:`Turn`): every later event, whoever records it, commits the held ones first, in
their order, or waits behind them; none is dropped and none is overtaken. :meth:`EventRecorder.record_or_hold` holds
one for a thread that must not wait; :meth:`EventRecorder.record_in_line` holds it and gives its turn to a caller who
needs the committed event later (the trigger responder: its seq for the follow-ups); :meth:`EventRecorder.record` is
refused at once (its caller, an arm or a heartbeat, is not carried out then) but still commits the held ones first.

Each event's ``ts`` is in the wall clock the chain says is in force at its place: an event is stamped when it takes
its place in the line (under the same lock that orders the line), as the moment it happened (a trigger's edge, on the
monotonic clock) told in the wall clock read then; the clock's :class:`Timeline` (the seal's
:class:`~seal_agent.behaviour.clock.ClockWatch`) compares that reading with its last one, and a step of the wall
clock since is put in line first, as ``clock_stepped``. So no event stamped by the old clock follows a
``clock_stepped``, and none stamped by the new one comes before it (an edge before the step, built after it, is told
in the new clock; held on a full disk, an event keeps the stamp of its place). :class:`Moment` values in a payload
(``not_before``) are told in the clock of the event's ``ts``. Each refused and each accepted commit is told to
:attr:`EventRecorder.storage` (:mod:`.storage_health`): the seal's status says while it cannot store.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from seal_agent.errors import EventLost, EventRefused, OutboxError
from seal_agent.interfaces import Clock
from seal_agent.journal.disk_room import FullDiskWatch
from seal_agent.journal.outbox import Outbox, Settings, StoredEvent
from seal_agent.journal.outbox_salvage import lost_payload
from seal_agent.journal.storage_health import StorageHealth
from seal_agent.journal.timeline import Anchor, LiveClock, Timeline, told
from seal_agent.journal.turn import LateFields, Turn
from seal_protocol import EventType, InvalidEnvelope, encode_envelope, new_envelope, utc_now_ms
from seal_protocol.envelope import SIMULATED_FIELD
from seal_protocol.signing import SigningKey, sign_envelope

logger = logging.getLogger(__name__)

#: Characters of the reason an ``event_lost`` event carries (the log has all of it).
LOST_DETAIL_CHARS = 300
#: Characters of a lost event's payload the log shows: the log is then its only record, so any payload an envelope
#: could carry (64 KiB) is logged whole; only one of a size no envelope holds is cut.
LOG_PAYLOAD_CHARS = 256 * 1024


class EventRecorder:
    """Builds each event with the next ``seq``, the previous event's hash and the device's signature.

    The envelope is built and signed inside the outbox transaction, so ``seq`` and ``prev_hash`` are exactly the
    ones committed with it, even when several threads record at once.

    An event that can never be recorded costs that event only, and the court learns of it: one the outbox refuses for
    a reason of its own (:class:`~seal_agent.errors.EventRefused`, e.g. ``SQLITE_TOOBIG``) or that cannot be built
    (oversized, a payload that is not wire JSON) is replaced, at its place in the chain, by a signed ``event_lost``
    event naming its type, its time and the reason (then :class:`~seal_agent.errors.EventLost` is raised). If the
    outbox refuses that small event too, the fault is the database's, not the event's: it is then an
    :class:`~seal_agent.errors.OutboxError` like a full disk, and the event is kept and tried again.
    """

    def __init__(
        self,
        *,
        device_id: str,
        case_no: str,
        signing_key: SigningKey,
        outbox: Outbox,
        clock: Clock,
        simulated: bool = False,
    ) -> None:
        self.device_id = device_id
        #: The seal runs on mock pins (``seal-agent simulate``): every event it signs says ``"simulated": true``.
        self.simulated = simulated
        self.case_no = case_no
        self._key = signing_key
        self._outbox = outbox
        self._timeline: Timeline = LiveClock(clock)
        #: Called after each commit, on the recording thread (delivery's event courier's ``notify``): return quickly.
        self.on_committed: Callable[[], None] = _nothing
        self.full_disk = FullDiskWatch()  # its on_full: the outbox refused an event for a full disk (spool sets it)
        self.storage = StorageHealth(outbox.path.parent, clock.now)
        self._order = threading.Lock()  # held events are committed before any later one, in their order
        self._held: list[Turn] = []
        self._closed = False  # close() has given up what was held: nothing is held any more
        self._commits = 0  # events committed so far (under _order)
        self._damage_seen = 0  # the outbox's repairs whose notes were put in line (under _order)
        self._damage_lined: set[str] = set()

    @property
    def held(self) -> int:
        """Events the outbox refused (a full disk) that wait in line, in memory, for the next commit."""
        return len(self._held)

    def record_or_hold(
        self, type: EventType, payload: Mapping[str, Any] | None = None, *, late: LateFields | None = None
    ) -> None:
        """Commit one event for a thread that must not wait (the camera's, the spool's); if the outbox refuses it
        (:class:`~seal_agent.errors.OutboxError`, a full disk), keep it in line with its time and commit it before
        the next event (a heartbeat at the latest). Never raises an OutboxError, nor an EventLost (its
        ``event_lost`` is committed). ``late``: as for :meth:`record`, read when it is committed."""
        self.record_in_line(type, payload, late=late)

    def record_in_line(
        self,
        type: EventType,
        payload: Mapping[str, Any] | None = None,
        *,
        at: float | None = None,
        late: LateFields | None = None,
        settings: Settings | None = None,
    ) -> Turn:
        """Commit one event that happened at ``at`` (monotonic; default now), or, if the outbox refuses it for now (a
        full disk), hold it in line: it is committed, with the ``ts`` of its place, before any later event, by whoever
        records next (or :meth:`retry_held`). Its :class:`Turn` tells when it is settled and how. Never raises an
        OutboxError, nor an EventLost (its ``event_lost`` is committed; the turn says so). ``settings``: as for
        :meth:`record`, stored with the event when it is committed (none with an ``event_lost`` in its place)."""
        moment = self._timeline.monotonic() if at is None else at
        with self._notifying(), self._order:  # placed and tried in one turn: no later event is committed in between
            turn = Turn(type, payload or {}, moment, self._place(), late, settings)
            self._line(turn)
        return turn

    def follow_clock(self, timeline: Timeline) -> None:
        """Stamp the events from now on with ``timeline`` (the seal's clock watch), which tells the steps of the wall
        clock (recorded as ``clock_stepped`` at their place in the line)."""
        with self._order:
            self._timeline = timeline

    def check_clock(self) -> None:
        """Put a ``clock_stepped`` in line if the wall clock stepped since the last event or check (timer, ~1/s)."""
        with self._notifying(), self._order:
            self._place()

    def _place(self) -> Anchor:
        """The clocks an event taking its place in the line now is stamped with, a step of the wall clock since the
        last reading put in line first (``_order`` held)."""
        anchor, stepped = self._timeline.place()
        if stepped is not None:
            self._line(Turn(EventType.CLOCK_STEPPED, stepped, anchor[0], anchor))
        repairs = self._outbox.repairs()  # its file checked to be in its place (else written back), at each tick too
        if repairs != self._damage_seen:  # a damaged outbox was repaired (or its file written back): signed
            self._damage_seen = repairs
            for key, note in self._outbox.damage_notes().items():
                if key not in self._damage_lined:
                    self._damage_lined.add(key)
                    self._line(Turn(EventType.EVENT_LOST, lost_payload(note), anchor[0], anchor, settings={key: ""}))
        return anchor

    def _line(self, turn: Turn) -> None:
        """Commit the held events and ``turn``, or hold it in line (``_order`` held); never raises an OutboxError nor
        an EventLost (the turn says so)."""
        try:
            turn._settle(self._record_in_order(turn))
        except OutboxError as exc:
            if self._closed:  # nobody will try it again: its only record is this line
                logger.critical(
                    "%s of %s not committed after stopping (%s): %s", turn.type.value, turn.at, exc, turn.body
                )
                turn._settle(error=exc)
                return
            self._held.append(turn)
            logger.exception("%s not committed; held in line until the outbox takes events again", turn.type.value)
        except EventLost as lost:  # logged, and its event_lost committed in its place
            turn._settle(error=lost)

    def retry_held(self) -> None:
        """Commit the held events now, in order (a waiter's retry); OutboxError if the outbox refuses the first."""
        with self._notifying(), self._order:
            self._commit_held()

    def close(self) -> None:
        """The agent stops: the held events are tried once more, in order; those the outbox still refuses are given
        up, each with a CRITICAL log line holding its type, time and payload — the only place it is kept then; so is
        any event a thread still running records later, should the outbox refuse it."""
        with self._notifying(), self._order:
            self._closed = True
            try:
                self._commit_held()
            except OutboxError as exc:
                for given_up in self._held:
                    logger.critical(
                        "%s of %s not committed before stopping (%s): %s",
                        given_up.type.value,
                        given_up.at,
                        exc,
                        given_up.body,
                    )
                    given_up._settle(error=exc)
                self._held.clear()

    @property
    def outbox(self) -> Outbox:
        """The outbox the events are committed to (for reading its depth and settings)."""
        return self._outbox

    def record(
        self,
        type: EventType,
        payload: Mapping[str, Any] | None = None,
        *,
        settings: Settings | None = None,
        at: float | None = None,
        late: LateFields | None = None,
    ) -> StoredEvent:
        """Commit one event, after the held ones; ``settings`` are stored in the same transaction. Returns the
        stored bytes.

        ``at`` is when it happened, on the monotonic clock (default: now). ``late`` gives fields read just before this
        event is committed, once the held events ahead of it are: counts such as its ``outbox_depth`` then include
        them.

        Raises :class:`~seal_agent.errors.OutboxError` if the event cannot be committed now (a full disk: it is not
        held; try again), :class:`~seal_agent.errors.EventLost` if it never can be (its ``event_lost`` was
        committed instead, without ``settings``).
        """
        moment = self._timeline.monotonic() if at is None else at
        with self._notifying(), self._order:
            return self._record_in_order(Turn(type, payload or {}, moment, self._place(), late, settings))

    @contextlib.contextmanager
    def _notifying(self) -> Iterator[None]:
        """Tell delivery once, on the way out, if anything was committed meanwhile (held events, an event_lost)."""
        before = self._commits
        try:
            with self.full_disk.telling():  # on_full, also outside the line's lock
                yield
        finally:
            self.storage.tell(len(self._held))  # the seal's status says whether it can store now
            if self._commits != before:
                self.on_committed()

    def _record_in_order(self, turn: Turn) -> StoredEvent:
        """The held events, then this one (``_order`` held)."""
        self._commit_held()  # raises OutboxError while the outbox still refuses them: this one waits too
        return self._commit_or_replace(turn)

    def _commit_held(self) -> None:
        """Commit the held events in their order, settling each turn (``_order`` held); OutboxError if the outbox
        still refuses the first one (it and those behind it stay held)."""
        while self._held:
            turn = self._held[0]
            try:
                stored = self._commit_or_replace(turn)
            except EventLost as lost:  # its event_lost stands in its place
                turn._settle(error=lost)
            else:
                turn._settle(stored)
            self._held.pop(0)

    def _commit_or_replace(self, turn: Turn) -> StoredEvent:
        """Commit the event, or, if it can never be, an ``event_lost`` in its place (then raise EventLost): both
        stamped in the clock in force at its place."""
        type, body, now = turn.type, turn.body, turn.at
        if turn.late is not None:  # read now: the held events ahead of this one are committed
            body = {**body, **told(turn.late(), turn.wall_of)}
        try:
            return self._commit(type, body, now, turn.settings)
        except OutboxError:
            raise  # a passing condition: the caller keeps the event and tries again
        except EventRefused as exc:
            reason, detail = "outbox_refused", f"{exc.code}: {exc}"
        except InvalidEnvelope as exc:
            reason, detail = ("oversized" if exc.code == "oversized" else "invalid_payload"), str(exc)
        except Exception as exc:  # a fault building this one event must not block every later one
            logger.exception("%s cannot be built", type.value)
            reason, detail = "internal_error", f"{exc.__class__.__name__}: {exc}"
        lost = {
            "lost_type": type.value,
            "lost_ts": utc_now_ms(now),
            "reason": reason,
            "detail": detail[:LOST_DETAIL_CHARS],
        }
        if type in (EventType.COMMAND_ACK, EventType.COMMAND_REJECTED):  # which command the lost answer was to
            lost |= {key: body[key] for key in ("command_id", "action") if isinstance(body.get(key), int | str)}
        try:
            marker = self._commit(EventType.EVENT_LOST, lost, turn.wall_of(self._timeline.monotonic()), None)
        except OutboxError:
            raise  # a passing condition after all: the event is kept, and tried again
        except Exception as exc:
            # A small event of the seal's own is refused as well (or cannot be made): the fault is not the event's.
            said = getattr(exc, "code", None) or exc.__class__.__name__
            refused = f"the outbox refuses even an event_lost ({said}: {exc}); {type.value} is kept"
            self.storage.refused(exc)  # held in memory: said in the seal's status, as a passing condition is
            raise OutboxError(refused) from exc
        logger.error(
            "%s of %s can never be recorded (%s: %s; payload %s); event_lost seq=%d committed in its place",
            type.value,
            lost["lost_ts"],
            reason,
            detail,
            _clipped(body),
            marker.seq,
        )
        raise EventLost(f"{type.value} of {lost['lost_ts']} lost ({reason}: {detail})", marker.seq)

    def _commit(self, type: EventType, body: dict[str, Any], now: datetime, settings: Settings | None) -> StoredEvent:
        if self.simulated:
            body = {**body, SIMULATED_FIELD: True}

        def build(seq: int, prev_hash: str | None) -> bytes:
            envelope = new_envelope(
                device_id=self.device_id,
                case_no=self.case_no,
                seq=seq,
                type=type,
                payload=body,
                prev_hash=prev_hash,
                now=now,
            )
            return encode_envelope(sign_envelope(envelope, self._key))

        try:
            with self.full_disk.counting():
                stored = self._outbox.append(build, settings=settings)
        except OutboxError as exc:
            self.storage.refused(exc)
            raise
        self.storage.took()
        self._commits += 1
        logger.info("event seq=%d %s committed", stored.seq, type.value)
        return stored


def _clipped(body: Mapping[str, Any]) -> str:
    """An event's payload for the log, cut to a few lines (it may be what made it too big)."""
    text = repr(dict(body))
    return text if len(text) <= LOG_PAYLOAD_CHARS else f"{text[:LOG_PAYLOAD_CHARS]}… ({len(text)} characters)"


def _nothing() -> None:
    pass
