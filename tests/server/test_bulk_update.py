"""``BulkUpdate``: one statement (arrays on PostgreSQL, an executemany on SQLite) updates each row by its key, only
where its condition holds, and stores the values as SQLAlchemy's own update stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, or_, text, update

from server.core.bulk_update import BulkUpdate
from server.core.db import make_session_factory
from server.ingest.models import ChainState
from tests.server.helpers import CASE_A, SimulatedSeal, register

CHAIN = cast(Table, ChainState.__table__)
#: max_seq only forward, as the ingest's updates of the seals' rows are
FORWARD = BulkUpdate(
    CHAIN,
    "device_id",
    {name: CHAIN.c[name].type for name in ("device_id", "max_seq", "missing", "updated_at")},
    values=lambda v: {"max_seq": v["max_seq"], "missing": v["missing"], "updated_at": v["updated_at"]},
    where=lambda v: or_(CHAIN.c.max_seq.is_(None), CHAIN.c.max_seq < v["max_seq"]),
)
EAST8 = timezone(timedelta(hours=8))
AT = datetime(2026, 12, 5, 8, 0, 0, 5, tzinfo=EAST8)  # stored as UTC, like every time


def _stored(engine: Engine) -> dict[str, tuple[Any, ...]]:
    """The rows as the database holds them (no type processing on the way out)."""
    with engine.connect() as connection:
        query = text("SELECT device_id, max_seq, missing, updated_at FROM chain_state ORDER BY device_id")
        return {row[0]: tuple(row[1:]) for row in connection.execute(query)}


def test_rows_are_updated_by_key_where_the_condition_holds_as_sqlalchemy_updates_them(engine: Engine) -> None:
    factory = make_session_factory(engine)
    seals = [SimulatedSeal(f"seal-{n}", CASE_A) for n in range(4)]
    register(factory, *seals)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with factory() as session:
        for seal in seals:
            session.add(ChainState(device_id=seal.device_id, max_seq=10, missing=[], updated_at=start))
        session.commit()
    missing = [[2, 3], [7, 7]]
    with factory() as session:
        FORWARD.execute(
            session,
            [
                {"device_id": "seal-0", "max_seq": 12, "missing": missing, "updated_at": AT},  # forward: applied
                {"device_id": "seal-1", "max_seq": 9, "missing": [[1, 9]], "updated_at": AT},  # backward: not
                {"device_id": "seal-9", "max_seq": 99, "missing": [], "updated_at": AT},  # no such row: nothing
            ],
        )
        FORWARD.execute(session, [])  # nothing to update: nothing happens
        values = {"max_seq": 12, "missing": missing, "updated_at": AT}
        session.execute(update(CHAIN).where(CHAIN.c.device_id == "seal-2").values(values))  # the reference
        session.commit()
    stored = _stored(engine)
    assert stored["seal-0"] == stored["seal-2"]
    assert stored["seal-1"] == stored["seal-3"]  # untouched
    assert set(stored) == {seal.device_id for seal in seals}
    with factory() as session:  # and they read back through the mapped class as they went in
        state = session.get(ChainState, "seal-0")
        assert state is not None
        assert (state.max_seq, state.missing, state.updated_at) == (12, missing, AT)


def test_rows_naming_one_key_twice_are_refused(engine: Engine) -> None:
    """SQLite would apply both, PostgreSQL either one: neither is what the caller meant."""
    factory = make_session_factory(engine)
    row = {"device_id": "seal-0", "max_seq": 12, "missing": [], "updated_at": AT}
    with factory() as session, pytest.raises(ValueError, match="twice"):
        FORWARD.execute(session, [row, {**row, "max_seq": 13}])
