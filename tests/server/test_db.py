"""Engines: SQLite pragmas on every connection, aware UTC timestamps on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from server.db import SessionFactory, make_engine, session_scope
from server.errors import ConfigError
from server.models import Case


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'court.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (tmp_path / "sub" / "court.db").exists()
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "not a url"])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        make_engine(url)


def test_timestamps_come_back_aware_utc(session_factory: SessionFactory) -> None:
    shanghai = timezone(timedelta(hours=8))
    moment = datetime(2026, 11, 26, 13, 3, 23, 123000, tzinfo=shanghai)
    with session_scope(session_factory) as session:
        session.add(Case(case_no="(2021)苏0214执1234号", created_at=moment))
    with session_factory() as session:
        case = session.scalar(select(Case))
        assert case is not None
        assert case.created_at == moment and case.created_at.tzinfo is not None
        assert case.created_at.utcoffset() == timedelta(0) and case.created_at.hour == 5


def test_naive_timestamps_are_refused(session_factory: SessionFactory) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(session_factory) as session:
            session.add(Case(case_no="x", created_at=datetime(2026, 1, 1)))
    with session_factory() as session:
        assert session.scalar(select(Case)) is None
