"""Turns "something happened" into a signed, chained envelope committed to the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seal_agent.interfaces import Clock
from seal_agent.journal.outbox import Outbox, StoredEvent
from seal_protocol import EventType, encode_envelope, new_envelope
from seal_protocol.signing import SigningKey, sign_envelope


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

    def record(
        self, type: EventType, payload: Mapping[str, Any] | None = None, *, settings: Mapping[str, str] | None = None
    ) -> StoredEvent:
        """Commit one event; ``settings`` are stored in the same transaction. Returns the stored bytes."""
        now = self._clock.now()
        body = dict(payload or {})

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

        return self._outbox.append(build, settings=settings)
