"""Migration 0016 bounds the seals' stored status stamps by the court's clock (server.ingest.statuses does for those
it receives): a stamp later than now + the skew becomes that bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from server.core.db import make_engine, make_session_factory, session_scope
from server.migrations.run import current_revision, downgrade, pending_differences, upgrade
from server.seals.models import Seal
from tests.server.ingest_world import make_court

#: 0015_ingest_marks: the revision before the stamps were bounded.
BEFORE_BOUNDED_STAMPS = "5e2b8c4a1d70"


def test_a_stored_stamp_past_the_clock_becomes_the_bound(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        head = current_revision(engine)
        factory = make_session_factory(engine)
        court = make_court(factory, tmp_path)
        received = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        near = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)  # within the skew: kept
        stored = {court.a.device_id: datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), court.b.device_id: near}
        downgrade(engine, BEFORE_BOUNDED_STAMPS)
        with session_scope(factory) as session:  # as an ingest before the bound stored them
            for device_id, stamp in stored.items():
                changes = {"status": "online", "status_changed_at": received, "status_ts": stamp}
                session.execute(update(Seal).where(Seal.device_id == device_id).values(**changes))

        before = datetime.now(UTC)
        upgrade(engine)
        after = datetime.now(UTC)

        assert current_revision(engine) == head
        assert pending_differences(engine) == []
        with factory() as session:
            rows: dict[str, object] = dict(session.execute(select(Seal.device_id, Seal.status_ts)).all())
        assert rows[court.b.device_id] == near
        bounded = rows[court.a.device_id]
        assert isinstance(bounded, datetime)
        assert before + timedelta(minutes=5) - timedelta(seconds=1) <= bounded <= after + timedelta(minutes=5)
    finally:
        engine.dispose()
