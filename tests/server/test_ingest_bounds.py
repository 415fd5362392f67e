"""What one message, or one seal, can make the ingest do inside its transaction is bounded by a constant, whatever a
signed payload says (a seal's key is on its SD card, on the debtor's premises): the pictures an event names
(``MAX_NAMED_SNAPSHOTS``), the gaps a chain tracks (``MAX_TRACKED_GAPS``), the bytes the quarantine keeps
(``[ingest] quarantine_seal_bytes`` / ``quarantine_total_bytes``). On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from seal_protocol import MAX_NAMED_SNAPSHOTS, EventType, envelope_hash
from server.config import IngestSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import SnapshotName
from server.ingest.chain import MAX_TRACKED_GAPS
from server.ingest.ingestor import NAMES_PER_TRANSACTION, Ingestor
from server.ingest.results import Message, Outcome, Reason
from tests.server.helpers import SimulatedSeal
from tests.server.ingest_world import Court, make_court, resigned


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def naming(seal: SimulatedSeal, count: int, *, first: int = 0) -> bytes:
    """``seal``'s next intrusion, naming ``count`` distinct pictures, signed by its own key even past the protocol's
    limit (built as a key in the wrong hands would, not by ``new_envelope``)."""
    names = [f"{first + number:064x}" for number in range(count)]
    data = resigned(seal.event(EventType.INTRUSION, {"snapshots": []}), seal.key, payload={"snapshots": names})
    seal.prev_hash = envelope_hash(data)
    return data


def names_stored(court: Court) -> int:
    with court.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(SnapshotName)) or 0)


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements ``engine`` runs meanwhile, with their parameters (an executemany counts once)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
        seen.append((sql, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_an_event_naming_more_pictures_than_the_protocol_allows_is_quarantined_alone(court: Court) -> None:
    hostile = naming(court.a, MAX_NAMED_SNAPSHOTS + 1)
    other = court.b.event()
    results = court.ingestor.ingest(_messages(court, (court.a, hostile), (court.b, other)))

    refused, stored = results
    assert (refused.outcome, refused.reason) == (Outcome.QUARANTINED, Reason.INVALID_ENVELOPE)
    limit = f"snapshots names {MAX_NAMED_SNAPSHOTS + 1} pictures, limit {MAX_NAMED_SNAPSHOTS}"
    assert refused.detail is not None and limit in refused.detail
    assert stored.outcome is Outcome.STORED
    assert court.seqs("seal-a") == [] and court.seqs("seal-b") == [1]
    [row] = court.quarantine()
    assert (row.reason, row.device_id) == ("invalid_envelope", "seal-a") and limit in row.detail
    assert names_stored(court) == 0
    assert court.metrics.snapshot().rejected == {"invalid_envelope": 1}


def test_the_names_of_a_batch_are_written_in_one_statement(court: Court, engine: Engine) -> None:
    """Events at the limit are stored, and their names cost one insert, not one per name."""
    events = [naming(court.a, MAX_NAMED_SNAPSHOTS, first=n * MAX_NAMED_SNAPSHOTS) for n in range(3)]
    with statements(engine) as seen:
        results = court.ingestor.ingest(_messages(court, *((court.a, e) for e in events), (court.b, court.b.event())))

    assert [r.outcome for r in results] == [Outcome.STORED] * 4
    assert names_stored(court) == 3 * MAX_NAMED_SNAPSHOTS
    assert len(name_inserts(seen)) == 1
    assert len(seen) < 60  # the batch's statements do not grow with the names (about 30 here)

    again = court.ingestor.ingest(_messages(court, (court.a, events[0])))  # a redelivery names nothing new
    assert [r.outcome for r in again] == [Outcome.DUPLICATE]
    assert names_stored(court) == 3 * MAX_NAMED_SNAPSHOTS


def test_a_batch_naming_many_pictures_is_stored_in_transactions_of_bounded_size(court: Court, engine: Engine) -> None:
    """However many events of a batch name pictures, one transaction files at most NAMES_PER_TRANSACTION names (so
    that SQLite's one write lock is never held for long); the batch's other seal's event is stored all the same."""
    events = [naming(court.a, MAX_NAMED_SNAPSHOTS, first=n * MAX_NAMED_SNAPSHOTS) for n in range(20)]
    sent = [(court.a, e) for e in events[:10]] + [(court.b, court.b.event())] + [(court.a, e) for e in events[10:]]
    with statements(engine) as seen:
        results = court.ingestor.ingest(_messages(court, *sent))

    assert [r.outcome for r in results] == [Outcome.STORED] * 21
    assert court.seqs("seal-a") == list(range(1, 21)) and court.seqs("seal-b") == [1]
    assert names_stored(court) == 20 * MAX_NAMED_SNAPSHOTS
    inserts = name_inserts(seen)
    assert len(inserts) == -(-20 * MAX_NAMED_SNAPSHOTS // NAMES_PER_TRANSACTION)
    assert all(rows <= NAMES_PER_TRANSACTION for rows in inserts)
    assert court.chain("seal-a").missing == [] and court.alarms("missing_events") == []


def name_inserts(seen: list[tuple[str, Any]]) -> list[int]:
    """The rows of each insert into ``snapshot_names`` among ``seen`` (PostgreSQL: one array per column)."""
    rows = []
    for sql, parameters in seen:
        if sql.lstrip().upper().startswith("INSERT INTO SNAPSHOT_NAMES"):
            rows.append(len(next(iter(parameters.values()))) if isinstance(parameters, dict) else len(parameters))
    return rows


def _messages(court: Court, *sent: tuple[SimulatedSeal, bytes]) -> list[Message]:
    now = datetime.now(UTC)
    return [Message(seal.event_topic, data, now) for seal, data in sent]


def test_a_chain_tracks_at_most_max_tracked_gaps_ranges_and_counts_the_rest(court: Court) -> None:
    """A seal leaving a gap with every event: the chain keeps MAX_TRACKED_GAPS ranges one by one and counts the gaps
    past them in one untracked span; the alarm holds the count and a few ranges. Filling them, tracked or not, is
    counted exactly, and the alarm closes when the last one arrives."""
    tracked = MAX_TRACKED_GAPS
    events = [court.a.event() for _ in range(2 * (tracked + 5) + 2)]  # seqs 1 … 212
    evens = events[1 : 2 * (tracked + 5) : 2]  # 2, 4, … 210: gaps 1, 3, … 209
    for start in range(0, len(evens), 40):
        court.send(court.a, *evens[start : start + 40])

    state = court.chain("seal-a")
    assert state.max_seq == 210 and len(state.missing) == tracked + 1
    assert state.missing[:2] == [[1, 1], [3, 3]] and state.missing[tracked - 1] == [199, 199]
    assert state.missing[-1] == [201, 209, 5]  # 201, 203, … 209: five of them, not listed
    [alarm] = court.alarms("missing_events")
    assert alarm.state == "open" and alarm.details["missing_count"] == tracked + 5
    assert alarm.details["missing"] == [[1, 1], [3, 3], [5, 5], [7, 7], [9, 9]] + [[s, s] for s in range(191, 200, 2)]
    assert alarm.details["missing_ranges"] == tracked
    assert alarm.details["missing_untracked"] == {"first": 201, "last": 209, "count": 5}
    assert len(json.dumps(alarm.details)) < 1000

    court.send(court.a, events[211])  # seq 212 leaves 211 missing: it joins the untracked span
    assert court.chain("seal-a").missing[-1] == [201, 211, 6]
    court.send(court.a, events[204], events[0])  # seq 205 (untracked) and 1 (tracked) arrive
    state = court.chain("seal-a")
    assert len(state.missing) == tracked and state.missing[0] == [3, 3] and state.missing[-1] == [201, 211, 5]
    assert court.alarms("missing_events")[0].details["missing_count"] == tracked + 4

    odds = [e for number, e in enumerate(events) if number % 2 == 0 and number not in (0, 204)]
    for start in range(0, len(odds), 40):
        court.send(court.a, *odds[start : start + 40])
    assert court.seqs("seal-a") == list(range(1, 213))
    assert court.chain("seal-a").missing == []
    [alarm] = court.alarms("missing_events")
    assert alarm.state == "closed"
    assert court.quarantine() == []


def garbage(number: int, size: int = 1000) -> bytes:
    return (f"not an envelope {number:08d} ".encode() * size)[:size]


def test_past_its_byte_budget_the_quarantine_keeps_rows_without_their_bytes(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Distinct garbage on a seal's topic: each row keeps its bytes until its seal account's budget (or the total) is
    used; then the rows are still written — reason, size, SHA-256, detail saying why — without the bytes, counted.
    Another seal's rows are kept until the total budget is used. A restarted ingest reads what is kept already."""
    budget = IngestSettings(quarantine_seal_bytes=3000, quarantine_total_bytes=5000)
    court = make_court(session_factory, tmp_path, ingest=budget)
    a = court.send(court.a, *(garbage(n) for n in range(5)))
    assert [r.outcome for r in a] == [Outcome.QUARANTINED] * 5
    b = court.send(court.b, *(garbage(n + 100) for n in range(3)))
    assert [r.outcome for r in b] == [Outcome.QUARANTINED] * 3

    rows = court.quarantine()
    assert [(r.device_id, len(r.raw), r.size) for r in rows] == [("seal-a", 1000, 1000)] * 3 + [
        ("seal-a", 0, 1000)
    ] * 2 + [("seal-b", 1000, 1000)] * 2 + [("seal-b", 0, 1000)]
    for row in rows:
        assert row.sha256 == hashlib.sha256(row.raw or garbage_of(row)).hexdigest()
        assert row.reason == "invalid_json"
    assert (
        "its bytes were not kept: the seal account's quarantine holds 3000 bytes, its budget is 3000" in rows[3].detail
    )
    assert "its bytes were not kept: the quarantine holds 5000 bytes, its budget is 5000" in rows[7].detail
    assert court.metrics.quarantine_not_kept() == {"seal": 2, "total": 1}
    assert court.metrics.snapshot().rejected == {"invalid_json": 8}

    again = court.send(court.a, garbage(0))  # a copy of a row's bytes is counted on that row, as before
    [first] = [r for r in court.quarantine() if r.sha256 == hashlib.sha256(garbage(0)).hexdigest()]
    assert [r.outcome for r in again] == [Outcome.QUARANTINED] and first.copies == 2

    metrics = IngestMetrics()
    restarted = Ingestor(session_factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots", ingest=budget)
    restarted.ingest(_messages(court, (court.a, garbage(50))))
    assert (court.quarantine()[-1].size, len(court.quarantine()[-1].raw)) == (1000, 0)
    assert metrics.quarantine_not_kept() == {"seal": 1}


def garbage_of(row: Any) -> bytes:
    """The bytes a row of :func:`garbage` stands for, found by its SHA-256."""
    for number in [*range(100), *range(100, 110)]:
        if hashlib.sha256(garbage(number)).hexdigest() == row.sha256:
            return garbage(number)
    raise AssertionError(f"no garbage hashes to {row.sha256}")


def refuse_log_leaves(session_factory: SessionFactory, database_url: str) -> None:
    """Make the database refuse every leaf of the Merkle log: a batch holding an event fails at its log's append, after
    its quarantine rows were counted."""
    with session_factory() as session:
        if database_url.startswith("postgresql"):
            session.execute(
                text(
                    "CREATE FUNCTION refuse_leaf() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON log_leaves FOR EACH ROW EXECUTE FUNCTION refuse_leaf()")
            )
        else:
            session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON log_leaves "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        session.commit()


def test_bytes_counted_in_a_batch_that_rolled_back_are_not_counted_twice(
    session_factory: SessionFactory, tmp_path: Path, database_url: str
) -> None:
    """A batch quarantines garbage, then the database refuses its event's log leaf: the transaction rolls back and the
    messages are stored one by one. The garbage's bytes were counted in the rolled-back transaction; counted again,
    they exhausted a budget that only one copy of them uses (the row then lost its bytes, and its receipt)."""
    court = make_court(session_factory, tmp_path, ingest=IngestSettings(quarantine_seal_bytes=1800))
    refuse_log_leaves(session_factory, database_url)
    results = court.send(court.a, garbage(1), court.a.event())
    assert [r.outcome for r in results] == [Outcome.QUARANTINED, Outcome.QUARANTINED]
    [row] = [r for r in court.quarantine() if r.reason == "invalid_json"]
    assert (len(row.raw), row.size) == (1000, 1000), row.detail
    assert court.metrics.quarantine_not_kept() == {}
