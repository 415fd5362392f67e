"""``server.core.driver_sql``: the ingest's statements run on SQLite's cursor give the rows, bind the values and raise
the errors that SQLAlchemy's own execution gives, binds and raises (on PostgreSQL they are SQLAlchemy's own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import JSON, Engine, Table, bindparam, event, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from server.alarms import book
from server.core.db import make_session_factory
from server.core.driver_sql import DriverSelect, bound_rows, executemany
from server.core.metrics import IngestMetrics
from server.evidence import log
from server.evidence.models import Event, LogNode
from server.ingest import chain, rows, seal_cache
from server.ingest.ingestor import Ingestor
from server.ingest.results import Outcome
from server.seals.models import Seal
from tests.server.helpers import CASE_A, SimulatedSeal, message, register

EAST8 = timezone(timedelta(hours=8))


def _court(engine: Engine, tmp_path: Path) -> list[str]:
    """Two seals' events through the real ingest (one with a gap: a ``missing_events`` alarm and a chain state
    with a missing range), a status stored on one seal; the seals' ids."""
    factory = make_session_factory(engine)
    seals = [SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_A)]
    register(factory, *seals)
    a, b = seals
    wires = [a.event(), a.event(), b.event()]
    b.event()  # seq 2 never arrives: a gap
    wires.append(b.event())
    ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    try:
        topics = [a.event_topic, a.event_topic, b.event_topic, b.event_topic]
        results = ingestor.ingest([message(topic, wire) for topic, wire in zip(topics, wires, strict=True)])
    finally:
        ingestor.close()
    assert [r.outcome for r in results] == [Outcome.STORED] * 4
    seals_table = cast(Table, Seal.__table__)
    stamp = datetime(2026, 12, 5, 8, 0, 0, 5, tzinfo=EAST8)
    with factory.begin() as session:
        values = {"status": "online", "status_changed_at": stamp, "status_ts": stamp + timedelta(seconds=1)}
        session.execute(update(seals_table).where(seals_table.c.device_id == "seal-a").values(values))
    return [seal.device_id for seal in seals]


def test_the_rows_are_sqlalchemys(engine: Engine, tmp_path: Path) -> None:
    """Every statement of the ingest run on the driver's cursor reads what ``Session.execute`` reads: times as aware
    UTC datetimes, JSON decoded, bytes as bytes, NULLs as None; the constant ``IN`` lists expanded."""
    device_ids = _court(engine, tmp_path)
    factory = make_session_factory(engine)
    with factory() as session:
        event_ids = sorted(session.scalars(select(Event.event_id)))
        nodes = session.execute(select(LogNode.level, LogNode.node_index)).all()
        statements: list[tuple[DriverSelect, dict[str, Any]]] = [
            (seal_cache._SEAL_ROWS, {"device_ids": device_ids}),
            (chain._CHAIN_ROWS, {"device_ids": device_ids}),
            (rows.SAME_ID, {"event_ids": event_ids}),
            (book._HAVING_LIVE, {"device_ids": device_ids}),
            (
                log._newest_with_nodes(len(nodes)),
                {f"{n}{i}": v for i, node in enumerate(nodes) for n, v in zip("ln", node, strict=True)},
            ),
        ]
        for statement, params in statements:
            expected = [tuple(row) for row in session.execute(statement.statement, params)]
            assert expected, statement.statement  # something to compare
            assert statement.rows(session, params) == expected
        seal_a = seal_cache.read_seals(session, ["seal-a"])["seal-a"]
        assert seal_a.status_changed_at == datetime(2026, 12, 5, 0, 0, 0, 5, tzinfo=UTC)


def test_errors_are_sqlalchemys(engine: Engine) -> None:
    """A refusal of the database is raised as SQLAlchemy raises it (the ingest decides on its class whose fault it
    is: :func:`server.core.db.storage_fault`), and the transaction goes on as usual."""
    factory = make_session_factory(engine)
    register(factory, SimulatedSeal("seal-a", CASE_A))
    with factory() as session, pytest.raises((OperationalError, ProgrammingError)):
        DriverSelect(text("SELECT nothing FROM nowhere")).rows(session)
    if engine.dialect.name != "sqlite":
        return  # executemany is SQLite's
    with factory() as session:
        session.execute(text("CREATE TEMP TABLE keys (k TEXT PRIMARY KEY)"))
        sql = "INSERT INTO keys (k) VALUES (?)"
        executemany(session.connection(), sql, [("a",), ("b",)])
        with pytest.raises(IntegrityError):
            executemany(session.connection(), sql, [("c",), ("a",)])  # the second is there
        assert session.execute(text("SELECT k FROM keys ORDER BY k")).scalars().all() == ["a", "b", "c"]


def test_cursor_events_and_echo_see_them(engine: Engine) -> None:
    """Whoever listens to the engine's cursor events (``bench/ingest_batch.py --statements``) sees these statements
    too."""
    factory = make_session_factory(engine)
    register(factory, SimulatedSeal("seal-a", CASE_A))
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    with factory() as session:
        assert seal_cache.read_seals(session, ["seal-a"])["seal-a"].case_no == CASE_A
        if engine.dialect.name == "sqlite":
            executemany(session.connection(), "UPDATE seals SET location = ? WHERE device_id = ?", [("x", "seal-a")])
    assert any("FROM seals" in statement for statement in seen)
    assert engine.dialect.name != "sqlite" or any(s.startswith("UPDATE seals SET location") for s in seen)


def test_only_core_statements_with_fixed_text() -> None:
    with pytest.raises(TypeError, match="Core"):
        DriverSelect(select(Event))
    select_in = select(Event.__table__.c.id).where(Event.__table__.c.seq.in_([1]))  # a constant list: fine
    DriverSelect(select_in)
    given = DriverSelect(
        select(Event.__table__.c.id).where(Event.__table__.c.seq.in_(bindparam("seqs", expanding=True)))
    )
    with pytest.raises(TypeError, match="expanding"):
        given._compile(sqlite.dialect())


def test_bound_values_are_sqlalchemys(engine: Engine) -> None:
    """``bound_rows`` binds what SQLAlchemy binds, None included: JSON's None is the text ``null``, a time's None
    stays None."""
    dialect = engine.dialect
    if dialect.name != "sqlite":
        pytest.skip(
            "the bulk statements bind values with bound_rows on SQLite only (psycopg's wrappers compare unequal)"
        )
    json_type, time_type = JSON(), cast(Table, Event.__table__).c.ts.type
    processors = [
        ("doc", json_type._cached_bind_processor(dialect)),
        ("at", time_type._cached_bind_processor(dialect)),
        ("n", None),
    ]
    at = datetime(2026, 12, 5, 8, 0, 0, 5, tzinfo=EAST8)
    given = [{"doc": None, "at": None, "n": 1}, {"doc": {"封": [1, None]}, "at": at, "n": None}]
    expected = [tuple(row[name] if p is None else p(row[name]) for name, p in processors) for row in given]
    assert bound_rows(given, processors) == expected
    assert expected[0][0] == "null" and expected[0][1] is None
