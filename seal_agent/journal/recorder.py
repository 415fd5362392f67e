"""The one place where events are recorded: "something happened" becomes a signed, chained envelope committed to the
outbox, and delivery is told.

Everything in the seal that raises an event calls :meth:`EventRecorder.record` itself: the seal's behaviour (arm,
disarm, heartbeat, ``agent_started``), its trigger responder (``intrusion``, ``tamper``, ``snapshot_taken``,
``warning_result``), the court command desk (``command_ack``, ``command_rejected``), the camera's health and the
snapshot spool's thinning (wired by the runtime). The recorder calls nothing back but
:attr:`EventRecorder.on_committed`, which :class:`~seal_agent.journal.delivery.Delivery` sets to its event courier's
``notify``: the data path runs one way, into the journal and on to delivery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from seal_agent.errors import OutboxError
from seal_agent.interfaces import Clock
from seal_agent.journal.outbox import Outbox, StoredEvent
from seal_protocol import EventType, encode_envelope, new_envelope
from seal_protocol.signing import SigningKey, sign_envelope

logger = logging.getLogger(__name__)


class EventRecorder:
    """Builds each event with the next ``seq``, the previous event's hash and the device's signature.

    The envelope is built and signed inside the outbox transaction, so ``seq`` and ``prev_hash`` are exactly the
    ones committed with it, even when several threads record at once.
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
        self._held: list[tuple[EventType, dict[str, Any], datetime]] = []

    @property
    def held(self) -> int:
        """Events the outbox refused (a full disk) that wait in memory for the next commit."""
        return len(self._held)

    def record_or_hold(self, type: EventType, payload: Mapping[str, Any] | None = None) -> None:
        """Commit one event for a thread that must not wait (the camera's, the spool's); if the outbox refuses it
        (:class:`~seal_agent.errors.OutboxError`, a full disk), keep it in memory with its time and commit it before
        the next event (a heartbeat at the latest). Never raises an OutboxError."""
        at = self._clock.now()
        try:
            with self._order:  # held in the same turn as its try: no later event is committed in between
                try:
                    self._record_in_order(type, dict(payload or {}), None, at)
                except OutboxError:
                    self._held.append((type, dict(payload or {}), at))
                    raise
        except OutboxError:
            logger.exception("%s not committed; kept in memory until the outbox takes events again", type.value)
            return
        self.on_committed()

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
    ) -> StoredEvent:
        """Commit one event; ``settings`` are stored in the same transaction. Returns the stored bytes.

        ``at`` is the event's time (default: now): a retried commit keeps the time the event happened.

        Raises :class:`~seal_agent.errors.OutboxError` if the event cannot be committed.
        """
        with self._order:
            stored = self._record_in_order(type, dict(payload or {}), settings, at or self._clock.now())
        self.on_committed()
        return stored

    def _record_in_order(
        self, type: EventType, body: dict[str, Any], settings: Mapping[str, str] | None, now: datetime
    ) -> StoredEvent:
        """The held events, then this one (``_order`` held)."""
        while self._held:  # raises OutboxError while the outbox still refuses them: this one waits too
            held_type, held_payload, held_at = self._held[0]
            try:
                self._commit(held_type, held_payload, held_at, None)
            except OutboxError:
                raise
            except Exception:  # an event that can never be built must not block every later one
                logger.exception("held %s cannot be recorded; dropped: %s", held_type.value, held_payload)
            self._held.pop(0)
        return self._commit(type, body, now, settings)

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
        logger.info("event seq=%d %s committed", stored.seq, type.value)
        return stored


def _nothing() -> None:
    pass
