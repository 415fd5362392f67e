"""A quarantined message is receipted only if its quarantine row keeps all its bytes: the seal deletes what a receipt
names, so bytes the quarantine's budget refused must stay on the seal.

Anyone with a seal's MQTT password can spend its account's quarantine budget on garbage; a genuine message the
court then refuses for its bytes alone — a signed event of a newer agent naming more than 256 pictures, a camera's
picture breaking the court's JPEG rules — would otherwise be lost on both sides."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from seal_protocol import MAX_NAMED_SNAPSHOTS, EventType, envelope_hash, snapshot_topic
from server.config import IngestSettings
from server.core.db import SessionFactory
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.receipts import committed_hashes
from server.ingest.results import IngestResult, Message, Outcome, Reason
from tests.server.ingest_world import Court, make_court, resigned

BUDGET = 4096  # bytes of quarantine per seal account


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def genuine_refusals(court: Court) -> list[Message]:
    """seal-a's signed event naming 257 pictures (a modified or newer agent) and its progressive JPEG picture:
    refused for their bytes alone, each larger than what is left of the budget once garbage spent it."""
    a = court.a
    names = [f"{n:064x}" for n in range(MAX_NAMED_SNAPSHOTS + 1)]
    signed = resigned(a.event(EventType.INTRUSION, {"snapshots": []}), a.key, payload={"snapshots": names})
    a.prev_hash = envelope_hash(signed)
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(out, "JPEG", progressive=True)
    picture = out.getvalue()
    now = datetime.now(UTC)
    return [Message(a.event_topic, signed, now), Message(snapshot_topic("seal-a", sha(picture)), picture, now)]


def ingest(court: Court, messages: list[Message]) -> tuple[list[IngestResult], dict[str, list[str]]]:
    results = court.ingestor.ingest(messages)
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.QUARANTINED, Reason.INVALID_ENVELOPE),
        (Outcome.QUARANTINED, Reason.INVALID_SNAPSHOT),
    ][: len(messages)]
    return results, committed_hashes(messages, results)


def kept_bytes(session_factory: SessionFactory) -> dict[str, bytes]:
    with session_factory() as session:
        return {row.sha256: row.raw for row in session.scalars(select(QuarantinedMessage))}


def test_bytes_the_exhausted_budget_did_not_keep_are_not_receipted(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path, ingest=IngestSettings(quarantine_seal_bytes=BUDGET))
    garbage = b"\x00garbage" * (BUDGET // 8)  # seal-a's account spends its whole budget
    spent = court.ingestor.ingest([Message(court.a.event_topic, garbage, datetime.now(UTC))])
    assert spent[0].bytes_kept and committed_hashes([Message(court.a.event_topic, garbage, datetime.now(UTC))], spent)

    genuine = genuine_refusals(court)
    results, receipted = ingest(court, genuine)
    assert receipted == {}, "receipted although the court kept none of its bytes"
    assert not any(r.bytes_kept for r in results)
    kept = kept_bytes(session_factory)
    assert [kept[sha(m.payload)] for m in genuine] == [b"", b""]

    # Sent again (the seal keeps them): counted on the rows without bytes, still not receipted (nor counted again).
    again = [Message(m.topic, m.payload, datetime.now(UTC)) for m in genuine]
    assert ingest(court, again)[1] == {}
    assert court.metrics.quarantine_not_kept() == {"seal": 2}


def test_a_copy_fills_in_the_bytes_a_raised_budget_allows_and_is_receipted(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The operator raises the budget the garbage spent: the next copy of a genuine message refused for its bytes
    fills them into its row (which says so), counted against the budget, and is receipted."""
    court = make_court(session_factory, tmp_path, ingest=IngestSettings(quarantine_seal_bytes=BUDGET))
    garbage = b"\x00garbage" * (BUDGET // 8)
    court.ingestor.ingest([Message(court.a.event_topic, garbage, datetime.now(UTC))])
    genuine = genuine_refusals(court)
    assert ingest(court, genuine)[1] == {}
    assert [kept_bytes(session_factory)[sha(m.payload)] for m in genuine] == [b"", b""]

    court.ingestor.close()
    raised = IngestSettings(quarantine_seal_bytes=BUDGET + sum(len(m.payload) for m in genuine))
    court.ingestor = Ingestor(
        session_factory, metrics=court.metrics, snapshot_dir=tmp_path / "snapshots", ingest=raised
    )
    again = [Message(m.topic, m.payload, datetime.now(UTC)) for m in genuine]
    results, receipted = ingest(court, again)
    assert all(r.bytes_kept for r in results)
    assert receipted == {"seal-a": [sha(m.payload) for m in genuine]}
    with session_factory() as session:
        rows = {row.sha256: row for row in session.scalars(select(QuarantinedMessage))}
    for message in genuine:
        row = rows[sha(message.payload)]
        assert (row.raw, row.size, row.copies) == (message.payload, len(message.payload), 2)
        assert "its bytes were not kept: the seal account's quarantine holds 4096 bytes" in row.detail
        assert "(its bytes were kept later, from a copy received at " in row.detail

    # The bytes filled in are counted: the raised budget is spent again, and a copy is receipted again.
    late = court.ingestor.ingest([Message(court.a.event_topic, b"{", datetime.now(UTC))])
    assert late[0].outcome is Outcome.QUARANTINED and not late[0].bytes_kept
    assert court.metrics.quarantine_not_kept() == {"seal": 3}
    assert ingest(court, [Message(m.topic, m.payload, datetime.now(UTC)) for m in genuine])[1] == receipted


def test_bytes_kept_within_the_budget_are_receipted(session_factory: SessionFactory, tmp_path: Path) -> None:
    court = make_court(session_factory, tmp_path)  # the default budget: room enough
    genuine = genuine_refusals(court)
    results, receipted = ingest(court, genuine)
    assert all(r.bytes_kept for r in results)
    assert receipted == {"seal-a": [sha(m.payload) for m in genuine]}
    kept = kept_bytes(session_factory)
    assert [kept[sha(m.payload)] for m in genuine] == [m.payload for m in genuine]

    # A copy counted on a row that keeps the bytes is receipted again (the seal's receipt may have been lost).
    again = [Message(m.topic, m.payload, datetime.now(UTC)) for m in genuine]
    assert ingest(court, again)[1] == receipted
