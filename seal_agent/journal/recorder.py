"""The one place where events are recorded: "something happened" becomes a signed, chained envelope committed to the
outbox, and delivery is told.

Everything in the seal that raises an event calls :meth:`EventRecorder.record` itself: the seal's behaviour (arm,
disarm, heartbeat, ``agent_started``), its trigger responder (``intrusion``, ``tamper``, ``snapshot_taken``,
``warning_result``), the court command desk (``command_ack``, ``command_rejected``), the camera's health and the
snapshot spool's thinning (wired by the runtime). An event that can never be recorded is replaced by a signed
``event_lost`` (see :class:`EventRecorder`). The recorder calls nothing back but
:attr:`EventRecorder.on_committed`, which :class:`~seal_agent.journal.delivery.Delivery` sets to its event courier's
``notify``: the data path runs one way, into the journal and on to delivery.
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
from seal_agent.journal.outbox import Outbox, StoredEvent
from seal_protocol import EventType, InvalidEnvelope, encode_envelope, new_envelope, utc_now_ms
from seal_protocol.signing import SigningKey, sign_envelope

logger = logging.getLogger(__name__)

#: Characters of the reason an ``event_lost`` event carries (the log has all of it).
LOST_DETAIL_CHARS = 300
#: Characters of a lost event's payload the log shows: the log is then its only record, so any payload an envelope
#: could carry (64 KiB) is logged whole; only one of a size no envelope holds is cut.
LOG_PAYLOAD_CHARS = 256 * 1024

#: Fields of an event read only when it is committed, after the held events before it (its ``outbox_depth``).
LateFields = Callable[[], Mapping[str, Any]]


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

    def __init__(self, *, device_id: str, case_no: str, signing_key: SigningKey, outbox: Outbox, clock: Clock) -> None:
        self.device_id = device_id
        self.case_no = case_no
        self._key = signing_key
        self._outbox = outbox
        self._clock = clock
        #: Called after each commit, on the recording thread (delivery's event courier's ``notify``): return quickly.
        self.on_committed: Callable[[], None] = _nothing
        self._order = threading.Lock()  # held events are committed before any later one, in their order
        self._held: list[tuple[EventType, dict[str, Any], datetime, LateFields | None]] = []
        self._closed = False  # close() has given up what was held: nothing is held any more
        self._commits = 0  # events committed so far (under _order)

    @property
    def held(self) -> int:
        """Events the outbox refused (a full disk) that wait in memory for the next commit."""
        return len(self._held)

    def record_or_hold(
        self, type: EventType, payload: Mapping[str, Any] | None = None, *, late: LateFields | None = None
    ) -> None:
        """Commit one event for a thread that must not wait (the camera's, the spool's); if the outbox refuses it
        (:class:`~seal_agent.errors.OutboxError`, a full disk), keep it in memory with its time and commit it before
        the next event (a heartbeat at the latest). Never raises an OutboxError, nor an EventLost (its
        ``event_lost`` is committed). ``late``: as for :meth:`record`, read when it is committed."""
        at = self._clock.now()
        body = dict(payload or {})
        with self._notifying():
            try:
                with self._order:  # held in the same turn as its try: no later event is committed in between
                    try:
                        self._record_in_order(type, body, None, at, late)
                    except OutboxError as exc:
                        if self._closed:  # nobody will try it again: its only record is this line
                            logger.critical("%s of %s not committed after stopping (%s): %s", type.value, at, exc, body)
                            return
                        self._held.append((type, body, at, late))
                        raise
            except OutboxError:
                logger.exception("%s not committed; kept in memory until the outbox takes events again", type.value)
            except EventLost:
                pass  # logged, and its event_lost committed in its place

    def close(self) -> None:
        """The agent stops: the held events are tried once more, in order; those the outbox still refuses are given
        up, each with a CRITICAL log line holding its type, time and payload — the only place it is kept then; so is
        any event a thread still running records later, should the outbox refuse it."""
        with self._notifying(), self._order:
            self._closed = True
            while self._held:
                held_type, held_payload, held_at, held_late = self._held[0]
                try:
                    self._commit_or_replace(held_type, held_payload, held_at, None, held_late)
                except EventLost:
                    pass  # its event_lost stands in its place
                except OutboxError as exc:
                    for given_up, payload, at, _ in self._held:
                        logger.critical(
                            "%s of %s not committed before stopping (%s): %s", given_up.value, at, exc, payload
                        )
                    self._held.clear()
                    return
                self._held.pop(0)

    @property
    def outbox(self) -> Outbox:
        """The outbox the events are committed to (for reading its depth and settings)."""
        return self._outbox

    def record(
        self,
        type: EventType,
        payload: Mapping[str, Any] | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        at: datetime | None = None,
        late: LateFields | None = None,
    ) -> StoredEvent:
        """Commit one event; ``settings`` are stored in the same transaction. Returns the stored bytes.

        ``at`` is the event's time (default: now): a retried commit keeps the time the event happened. ``late`` gives
        fields read just before this event is committed, once the held events ahead of it are: counts such as its
        ``outbox_depth`` then include them.

        Raises :class:`~seal_agent.errors.OutboxError` if the event cannot be committed now (a full disk: try
        again), :class:`~seal_agent.errors.EventLost` if it never can be (its ``event_lost`` was committed instead,
        without ``settings``).
        """
        with self._notifying(), self._order:
            return self._record_in_order(type, dict(payload or {}), settings, at or self._clock.now(), late)

    @contextlib.contextmanager
    def _notifying(self) -> Iterator[None]:
        """Tell delivery once, on the way out, if anything was committed meanwhile (held events, an event_lost)."""
        before = self._commits
        try:
            yield
        finally:
            if self._commits != before:
                self.on_committed()

    def _record_in_order(
        self,
        type: EventType,
        body: dict[str, Any],
        settings: Mapping[str, str] | None,
        now: datetime,
        late: LateFields | None = None,
    ) -> StoredEvent:
        """The held events, then this one (``_order`` held)."""
        while self._held:  # raises OutboxError while the outbox still refuses them: this one waits too
            held_type, held_payload, held_at, held_late = self._held[0]
            try:
                self._commit_or_replace(held_type, held_payload, held_at, None, held_late)
            except EventLost:
                pass  # its event_lost stands in its place
            self._held.pop(0)
        return self._commit_or_replace(type, body, now, settings, late)

    def _commit_or_replace(
        self,
        type: EventType,
        body: dict[str, Any],
        now: datetime,
        settings: Mapping[str, str] | None,
        late: LateFields | None = None,
    ) -> StoredEvent:
        """Commit the event, or, if it can never be, an ``event_lost`` in its place (then raise EventLost)."""
        if late is not None:  # read now: the held events ahead of this one are committed
            body = {**body, **late()}
        try:
            return self._commit(type, body, now, settings)
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
            marker = self._commit(EventType.EVENT_LOST, lost, self._clock.now(), None)
        except OutboxError:
            raise  # a passing condition after all: the event is kept, and tried again
        except Exception as exc:
            # A small event of the seal's own is refused as well (or cannot be made): the fault is not the event's.
            said = getattr(exc, "code", None) or exc.__class__.__name__
            refused = f"the outbox refuses even an event_lost ({said}: {exc}); {type.value} is kept"
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

    def _commit(
        self, type: EventType, body: dict[str, Any], now: datetime, settings: Mapping[str, str] | None
    ) -> StoredEvent:
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

        stored = self._outbox.append(build, settings=settings)
        self._commits += 1
        logger.info("event seq=%d %s committed", stored.seq, type.value)
        return stored


def _clipped(body: Mapping[str, Any]) -> str:
    """An event's payload for the log, cut to a few lines (it may be what made it too big)."""
    text = repr(dict(body))
    return text if len(text) <= LOG_PAYLOAD_CHARS else f"{text[:LOG_PAYLOAD_CHARS]}… ({len(text)} characters)"


def _nothing() -> None:
    pass
