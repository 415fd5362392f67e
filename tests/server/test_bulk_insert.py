"""``BulkInsert``: rows handed to the driver's executemany (tuples on SQLite) or as one array per column (PostgreSQL)
are stored exactly as SQLAlchemy's own insert stores them — the same text of a time, the same JSON, the same bytes,
the same NULLs — so that what the ingest writes reads back like any other row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, insert, select, text
from sqlalchemy.exc import DataError

from server.core.bulk_insert import BulkInsert
from server.core.db import make_session_factory
from server.evidence.models import Event
from tests.server.helpers import CASE_A, SimulatedSeal, register

EVENTS = cast(Table, Event.__table__)
COLUMNS = [c.name for c in EVENTS.c if c.name != "id"]


def _rows(device_id: str, first: int) -> list[dict[str, Any]]:
    east8 = timezone(timedelta(hours=8))
    return [
        {
            "device_id": device_id,
            "case_no": CASE_A,
            "seq": first + n,
            "event_id": f"00000000-0000-4000-8000-{first + n:012d}",
            "type": "heartbeat",
            "ts": datetime(2026, 12, 4, 23, 59, 59, 123000, tzinfo=UTC) + timedelta(days=n),
            "received_at": datetime(2026, 12, 5, 8, 0, 0, 5, tzinfo=east8),  # stored as UTC, like every time
            "prev_hash": None if n == 0 else "ab" * 32,
            "sig": "cd" * 64,
            "payload": {"note": "门口有人\n", "n": [n, None, True], "nested": {"a": "b"}},
            "raw": bytes([0, 255, n]) + "封条".encode(),
        }
        for n in range(3)
    ]


def _stored(engine: Engine, device_id: str) -> list[tuple[Any, ...]]:
    """The rows as the database holds them (no type processing on the way out)."""
    columns = ", ".join(c for c in COLUMNS if c not in {"device_id", "event_id", "seq"})
    with engine.connect() as connection:
        query = text(f"SELECT {columns} FROM events WHERE device_id = :d ORDER BY seq")
        return [tuple(row) for row in connection.execute(query, {"d": device_id})]


def test_rows_are_stored_as_sqlalchemy_stores_them(engine: Engine) -> None:
    factory = make_session_factory(engine)
    register(factory, SimulatedSeal("seal-bulk", CASE_A), SimulatedSeal("seal-orm", CASE_A))
    bulk = BulkInsert(EVENTS, COLUMNS)
    with factory() as session:
        bulk.execute(session, _rows("seal-bulk", 1))
        bulk.execute(session, [])  # nothing to insert: nothing happens
        session.execute(insert(EVENTS), _rows("seal-orm", 101))
        session.commit()
    stored, reference = _stored(engine, "seal-bulk"), _stored(engine, "seal-orm")
    assert len(stored) == 3
    assert stored == reference
    with factory() as session:  # and they read back through the mapped class as they went in
        events = session.scalars(select(Event).where(Event.device_id == "seal-bulk").order_by(Event.seq)).all()
        assert [(e.ts, e.received_at, e.payload, e.raw, e.prev_hash) for e in events] == [
            (r["ts"], r["received_at"], r["payload"], r["raw"], r["prev_hash"]) for r in _rows("seal-bulk", 1)
        ]


def test_the_ids_come_back_in_the_rows_order(engine: Engine) -> None:
    factory = make_session_factory(engine)
    register(factory, SimulatedSeal("seal-bulk", CASE_A))
    rows = list(reversed(_rows("seal-bulk", 1)))  # not the order of their keys
    with factory() as session:
        ids = BulkInsert(EVENTS, COLUMNS, ids_by="event_id").execute(session, rows)
        session.commit()
    with factory() as session:
        stored = dict(session.execute(select(Event.event_id, Event.id)).all())
    assert ids == [stored[row["event_id"]] for row in rows]
    assert ids == sorted(set(ids))  # made in the rows' order, as an executemany makes them


def test_a_value_longer_than_its_column_is_refused_not_cut(engine: Engine) -> None:
    """On PostgreSQL the rows go as arrays: an array of ``VARCHAR(36)`` would cut a 37-character event id to 36
    characters without a word (SQLite keeps no lengths: nothing to check there)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no lengths")
    factory = make_session_factory(engine)
    register(factory, SimulatedSeal("seal-bulk", CASE_A))
    [row] = _rows("seal-bulk", 1)[:1]
    with factory() as session, pytest.raises(DataError, match="too long"):
        BulkInsert(EVENTS, COLUMNS).execute(session, [{**row, "event_id": row["event_id"] + "0"}])
