"""Engines: SQLite pragmas on every connection, aware UTC timestamps on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.sqlite import DATETIME
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session

from server.core.db import (
    PING_AFTER_IDLE_S,
    READ_ONLY,
    SQLITE_BUSY_TIMEOUT_MS,
    SessionFactory,
    make_engine,
    make_session_factory,
    session_scope,
)
from server.errors import ConfigError
from server.migrations.run import init_db
from server.seals.models import Case


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


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 26, 13, 3, 23, 123000, tzinfo=timezone(timedelta(hours=8))),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=UTC),  # a year of three digits: still four
        datetime(2026, 3, 4, 5, 6, 7, 8, tzinfo=ZoneInfo("UTC")),  # UTC, but not datetime's own UTC object
        datetime(2026, 3, 4, 23, 6, 7, 8, tzinfo=timezone(-timedelta(hours=3, seconds=7))),  # the next day in UTC
    ],
)
def test_sqlite_stores_a_time_as_sqlalchemys_datetime_text(tmp_path: Path, moment: datetime) -> None:
    """``UTCDateTime``'s own SQLite bind processor writes the text SQLAlchemy's ``DATETIME`` writes for the same
    moment in naive UTC (rows written before it, and SQLAlchemy's comparisons, sort and match the same way)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'court.db'}")
    try:
        init_db(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            session.add(Case(case_no="x", created_at=moment))
        naive = moment.astimezone(UTC).replace(tzinfo=None)
        expected = DATETIME().bind_processor(engine.dialect)(naive)  # type: ignore[misc]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT created_at FROM cases").scalar() == expected
        with factory() as session:
            assert session.scalar(select(Case.created_at)) == moment
            assert session.scalar(select(func.count()).where(Case.created_at == moment)) == 1
    finally:
        engine.dispose()


def test_naive_timestamps_are_refused(session_factory: SessionFactory) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(session_factory) as session:
            session.add(Case(case_no="x", created_at=datetime(2026, 1, 1)))
    with session_factory() as session:
        assert session.scalar(select(Case)) is None


def test_sqlite_writers_that_read_first_queue_instead_of_failing(tmp_path: Path) -> None:
    """Two transactions each read, then write. In WAL a deferred transaction that upgrades to a writer after another
    one committed fails at once (SQLITE_BUSY_SNAPSHOT); BEGIN IMMEDIATE makes the second wait for the first."""
    engine = make_engine(f"sqlite:///{tmp_path / 'court.db'}")
    init_db(engine)
    factory = make_session_factory(engine)
    second_read, first_committed = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def add_next_case(session: Session) -> None:
        count = session.scalar(select(func.count(Case.id)))
        session.add(Case(case_no=f"case-{count}"))

    def second() -> None:
        try:
            with session_scope(factory) as session:
                count = session.scalar(select(func.count(Case.id)))
                second_read.set()
                assert first_committed.wait(30)
                session.add(Case(case_no=f"case-{count}"))
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            second_read.set()

    try:
        with session_scope(factory) as session:
            add_next_case(session)  # reads, then writes: this transaction holds the write lock now
            thread = threading.Thread(target=second)
            thread.start()
            # With BEGIN IMMEDIATE the second transaction cannot even begin (it waits): its read never comes.
            second_read.wait(1.0)
        first_committed.set()
        thread.join(15)
        assert not thread.is_alive()
        assert errors == []
        with factory() as session:
            assert sorted(session.scalars(select(Case.case_no))) == ["case-0", "case-1"]
    finally:
        engine.dispose()


def test_sqlite_read_only_sessions_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'court.db'}")
    init_db(engine)
    factory = make_session_factory(engine)
    try:
        with session_scope(factory) as writer:
            writer.add(Case(case_no="case-0"))
            writer.flush()
            with factory(bind=engine.execution_options(**READ_ONLY)) as reader:
                started = time.monotonic()
                assert reader.scalar(select(func.count(Case.id))) == 0  # the snapshot before the writer's commit
                assert time.monotonic() - started < SQLITE_BUSY_TIMEOUT_MS / 1000 / 2
    finally:
        engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@contextmanager
def _ended_after_use(database_url: str, admin: Engine, *, ping_after_idle: bool) -> Iterator[tuple[Engine, int]]:
    """An engine whose one pooled connection was used, then ended by the server (``pg_terminate_backend``: a
    restart, a failover, an idle timeout); and that connection's backend pid."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to end a connection")
    pooled = make_engine(database_url, ping_after_idle=ping_after_idle)
    try:
        first = _backend_pid(pooled)
        with admin.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({first}, 30000)").scalar_one()
        yield pooled, first
    finally:
        pooled.dispose()


def test_a_pooled_connection_that_died_while_idle_is_replaced_unseen(database_url: str, engine: Engine) -> None:
    """A connection that lay idle in the pool is pinged before use: one the server ended meanwhile is replaced
    before anyone uses it."""
    with _ended_after_use(database_url, engine, ping_after_idle=True) as (pooled, first):
        time.sleep(PING_AFTER_IDLE_S + 0.2)
        assert _backend_pid(pooled) != first  # no error: the dead connection was replaced at its checkout


def test_a_connection_used_just_before_is_not_pinged(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the ingest's engine, transactions that follow each other (its batches) take their connection without a
    ping, a round trip each: a connection ended just after its last use fails the next transaction (which the ingest
    tries again), and the one after gets a new connection."""
    # "Just before": within the idle time that calls for a ping, which a loaded machine's terminate and reconnect
    # may take longer than the second it is.
    monkeypatch.setattr("server.core.db.PING_AFTER_IDLE_S", 60.0)
    with _ended_after_use(database_url, engine, ping_after_idle=True) as (pooled, first):
        with pytest.raises(DBAPIError) as failed:
            _backend_pid(pooled)
        assert failed.value.connection_invalidated
        assert _backend_pid(pooled) != first


def test_other_engines_ping_at_every_checkout(database_url: str, engine: Engine) -> None:
    """The web's and the workers' engines (which do not try a failed transaction again) ping each connection before
    use: one ended just after its last use is replaced unseen."""
    with _ended_after_use(database_url, engine, ping_after_idle=False) as (pooled, first):
        assert _backend_pid(pooled) != first
