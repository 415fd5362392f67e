"""What an ingest worker keeps between transactions (a seal's parsed key, its chain head) is never trusted over the
database: a key replaced since, or a head another worker has moved past, is checked against what is stored now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from seal_protocol import EventType, envelope_hash
from seal_protocol.signing import generate_signing_key
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult, Message, Outcome, Reason
from server.seals.models import Seal
from tests.server.helpers import SimulatedSeal
from tests.server.ingest_world import Court, make_court, resigned


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def outcomes(results: list[IngestResult]) -> list[tuple[Outcome, Reason | None]]:
    return [(r.outcome, r.reason) for r in results]


def test_a_replaced_key_is_used_from_the_next_batch_on(court: Court) -> None:
    a = court.a
    assert outcomes(court.send(a, a.event())) == [(Outcome.STORED, None)]  # the worker now holds a's first key
    old_key, a.key = a.key, generate_signing_key()
    with session_scope(court.session_factory) as session:  # the stored key is corrected (another process)
        # Not through ``register_seal``: it refuses a new key for a seal whose events the court stores (a new key
        # means a new chain there); the ingest must still take any change of the stored key from the next batch on.
        session.execute(update(Seal).where(Seal.device_id == a.device_id).values(public_key=a.public_key))
    by_old = a.event(key=old_key)
    a.seq, a.prev_hash = 1, court_head(court, a)
    by_new = a.event()

    assert outcomes(court.send(a, by_old)) == [(Outcome.QUARANTINED, Reason.BAD_SIGNATURE)]
    assert outcomes(court.send(a, by_new)) == [(Outcome.STORED, None)]
    assert court.seqs(a.device_id) == [1, 2]


def court_head(court: Court, seal: SimulatedSeal) -> str:
    with court.session_factory() as session:
        raw = session.scalars(
            select(Event.raw).where(Event.device_id == seal.device_id).order_by(Event.seq.desc())
        ).first()
        assert raw is not None
        return envelope_hash(raw)


def test_a_head_another_worker_moved_past_is_not_trusted(court: Court, tmp_path: Path) -> None:
    """Worker 1 holds seq 2 as the head; worker 2 stores seq 3. A seq 3 of other content that links to the head
    worker 1 knows is a replay, and a seq 4 that links to it is a broken chain; the seal's own seq 4 is stored."""
    a = court.a
    other = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "other")
    first, second = a.event(), a.event()
    assert outcomes(court.send(a, first, second)) == [(Outcome.STORED, None)] * 2
    third = a.event()
    assert outcomes(other.ingest([Message(a.event_topic, third, datetime.now(UTC))])) == [(Outcome.STORED, None)]
    fourth = a.event()
    rival_third = resigned(third, a.key, type=EventType.INTRUSION)  # seq 3, prev = head of 2, other content
    a.seq, a.prev_hash = 3, envelope_hash(rival_third)
    rival_fourth = a.event()  # seq 4 linking to the rival seq 3

    assert outcomes(court.send(a, rival_third)) == [(Outcome.QUARANTINED, Reason.REPLAYED_SEQ)]
    assert outcomes(court.send(a, rival_fourth)) == [(Outcome.QUARANTINED, Reason.BROKEN_CHAIN)]
    assert outcomes(court.send(a, fourth)) == [(Outcome.STORED, None)]
    assert court.seqs(a.device_id) == [1, 2, 3, 4]
