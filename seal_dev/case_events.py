"""A case full of real signed events, inserted in bulk: for measuring what the court does with a large case (the
evidence export's memory, ``bench/export_memory.py``, and its test) without the ingest's time.

Each seal signs its events as ``seal_agent`` does (Ed25519, hash-chained from seq 1, canonical envelopes of about
600 bytes): mostly heartbeats a minute apart, and every :data:`INTRUSION_EVERY`-th event an intrusion naming a
snapshot the court never received, followed by its warning's ``warning_result``. The rows go in as the ingest
inserts them (the events table, then the Merkle log's leaves), a few thousand per transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from seal_protocol import EventType, encode_envelope, envelope_hash, new_envelope
from seal_protocol.signing import SigningKey, generate_signing_key, public_key_b64, sign_envelope
from server.core.db import SessionFactory, session_scope
from server.evidence.log import append_events
from server.ingest.rows import Leaf, insert_events
from server.seals.cases import add_case
from server.seals.registry import register_seal

#: Every this many events of a seal, an intrusion (and the next event its warning's outcome).
INTRUSION_EVERY = 50
#: When the first event was signed: a fixed moment, so that two fills of one size are alike.
START = datetime(2026, 11, 1, tzinfo=UTC)


class _Seal:
    def __init__(self, device_id: str, case_no: str) -> None:
        self.device_id, self.case_no = device_id, case_no
        self.key: SigningKey = generate_signing_key()
        self.seq = 0
        self.prev: str | None = None

    def sign(self, type: EventType, payload: dict[str, Any], at: datetime) -> dict[str, Any]:  # noqa: A002
        self.seq += 1
        envelope = new_envelope(
            device_id=self.device_id,
            case_no=self.case_no,
            seq=self.seq,
            type=type,
            payload=payload,
            prev_hash=self.prev,
            now=at,
        )
        signed = sign_envelope(envelope, self.key)
        raw = encode_envelope(signed)
        self.prev = envelope_hash(raw)
        return {
            "device_id": self.device_id,
            "case_no": self.case_no,
            "seq": self.seq,
            "event_id": str(envelope.event_id),
            "type": type.value,
            "ts": envelope.occurred_at,
            "received_at": envelope.occurred_at + timedelta(milliseconds=300),
            "prev_hash": envelope.prev_hash,
            "sig": signed.sig,
            "payload": payload,
            "raw": raw,
        }

    def next_event(self) -> dict[str, Any]:
        at = START + timedelta(minutes=self.seq)
        if self.seq % INTRUSION_EVERY == INTRUSION_EVERY - 2:
            picture = hashlib.sha256(f"{self.device_id}/{self.seq}".encode()).hexdigest()
            payload: dict[str, Any] = {"armed": True, "warning": "started", "snapshots": [picture]}
            return self.sign(EventType.INTRUSION, payload, at)
        if self.seq % INTRUSION_EVERY == INTRUSION_EVERY - 1:
            outcome = {"trigger": "intrusion", "trigger_seq": self.seq, "warning": "played"}
            return self.sign(EventType.WARNING_RESULT, outcome, at)
        heartbeat = {"armed": True, "camera": "ok", "disk_free_bytes": 12_884_901_888, "uptime_s": 60 * self.seq}
        return self.sign(EventType.HEARTBEAT, heartbeat, at)


def _rows(seals: list[_Seal], count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield seals[n % len(seals)].next_event()


def fill_case(
    session_factory: SessionFactory,
    case_no: str,
    events: int,
    *,
    seals: int = 10,
    prefix: str = "seal-big",
    chunk: int = 2000,
) -> None:
    """Add the case ``case_no`` with ``seals`` new seals bound to it (``<prefix>-000``, …) and ``events`` signed
    events of theirs."""
    fleet = [_Seal(f"{prefix}-{n:03d}", case_no) for n in range(seals)]
    with session_scope(session_factory) as session:
        add_case(session, actor=None, case_no=case_no, court="无锡市滨湖区人民法院", judge="王法官")
        for seal in fleet:
            register_seal(
                session, actor=None, device_id=seal.device_id, case_no=case_no, public_key=public_key_b64(seal.key)
            )
    batch: list[dict[str, Any]] = []
    for row in _rows(fleet, events):
        batch.append(row)
        if len(batch) >= chunk:
            _insert(session_factory, batch)
            batch = []
    if batch:
        _insert(session_factory, batch)


def _insert(session_factory: SessionFactory, rows: list[dict[str, Any]]) -> None:
    with session_scope(session_factory) as session:
        ids = insert_events(session, rows)
        append_events(session, [Leaf(i, row["raw"]) for i, row in zip(ids, rows, strict=True)])  # type: ignore[misc]
