"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from server.core.db import make_engine
from server.migrations.run import current_revision, downgrade, pending_differences, upgrade


def test_upgrade_matches_the_models_and_downgrades_cleanly(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        head = current_revision(engine)
        assert head is not None
        assert pending_differences(engine) == []
        upgrade(engine)  # nothing left to do
        assert current_revision(engine) == head

        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, target, details, record) "
                    "VALUES (CURRENT_TIMESTAMP, '-', 'test', 'x', '{}', :record)"
                ),
                {"record": b'{"kind":"audit"}'},
            )
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))

        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert pending_differences(engine) == []
    finally:
        engine.dispose()
