"""Database engines and sessions. Nothing is connected at import time: call :func:`make_engine`.

SQLite is the embedded default for one machine, PostgreSQL (psycopg 3, ``postgresql+psycopg://…``) the choice when
a court outgrows it. On SQLite every connection gets:

- ``journal_mode=WAL``: the API reads while the ingest writes;
- ``synchronous=FULL``: the ingest acknowledges a message to the broker right after its commit, and the broker then
  forgets it. With ``NORMAL``, a power cut can undo the last commits *after* their acknowledgement — the event would
  be lost on both sides. FULL costs little because the ingest commits in batches (RECIPES.md: ~155,000 rows/s);
- ``foreign_keys=ON`` (off by default in SQLite) and a busy timeout so the CLI can write while the server runs.

and its transactions start with ``BEGIN IMMEDIATE`` (pysqlite's own implicit ``BEGIN`` is turned off). The ingest,
the liveness check, the notification worker, the command dispatcher and the API read, then write in one transaction.
A deferred transaction that upgrades to a writer after another connection committed fails at once with
``SQLITE_BUSY_SNAPSHOT`` — the busy timeout cannot help, its snapshot is stale. ``IMMEDIATE`` takes the write lock
at ``BEGIN``, where the busy timeout does apply, so writers queue instead of failing. A session that only reads
(the API's GET requests) opts out with :data:`READ_ONLY` and keeps WAL's concurrent readers. PostgreSQL ignores the
option.

On PostgreSQL every transaction is ``READ COMMITTED``, set by the engine whatever the server's
``default_transaction_isolation`` (a DBA may make it ``repeatable read`` or ``serializable``). The writers rely on
it: each statement reads what was committed before it began, so a writer that reads after taking a lock sees what
the lock's previous holder committed. The Merkle log's writers read the log's size after its advisory lock is
granted (:func:`server.evidence.log.append_leaves`); under ``REPEATABLE READ`` that size would come from a snapshot
taken at the transaction's first statement, before the lock, and two writers would insert the same leaf index (one
failing with a unique violation, or under ``SERIALIZABLE`` a serialization failure). Likewise the ingest reads a
seal's chain state, the liveness check its seal row, the notification worker a notification, locked, and decides on
what they hold then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from server.core.driver_sql import execute
from server.errors import ConfigError

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000

#: A pooled connection (PostgreSQL) idle longer than this is pinged before use (:func:`_ping_when_idle`).
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "seal_idle_since"

#: The execution option naming how a SQLite transaction begins: ``IMMEDIATE`` (the default) or ``DEFERRED``.
SQLITE_BEGIN = "sqlite_begin"
#: Execution options of a session that never writes: ``factory(bind=engine.execution_options(**READ_ONLY))``.
READ_ONLY = {SQLITE_BEGIN: "DEFERRED"}

#: ``with_for_update`` of a row lock that changes no key (``FOR NO KEY UPDATE`` on PostgreSQL; SQLite ignores it):
#: a row inserted meanwhile may still refer to the locked one. ``FOR UPDATE`` waits for the key-share locks that the
#: foreign keys of such inserts take — an ingest inserting an event of the case, or of the seal — and so would wait
#: in a circle with the ingest (server/ingest/rows.py lists the order of the shared locks). No row of the court
#: changes its key, and none is deleted while others may refer to it.
NO_KEY_UPDATE = {"key_share": True}

#: The isolation of every transaction on PostgreSQL, set by the engine whatever the server's default.
POSTGRESQL_ISOLATION = "READ COMMITTED"

SessionFactory = sessionmaker[Session]
T = TypeVar("T")

#: SQLSTATEs of a transaction that lost a race with another one: deadlock_detected, serialization_failure.
RACE_SQLSTATES = frozenset({"40P01", "40001"})


def lost_a_race(exc: BaseException) -> bool:
    """Did ``exc`` end a transaction that lost a race with another (a deadlock, a serialization failure)? Nothing
    it did was kept: the same work may simply be tried again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RACE_SQLSTATES


#: SQLite's primary result codes that blame the storage, not the statement's data: SQLITE_BUSY, SQLITE_LOCKED,
#: SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (an extended code's low byte is its primary code:
#: SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED, ...). Not SQLITE_NOMEM: Python's sqlite3 raises it as a MemoryError,
#: no database error (the batch is then tried message by message, as for any other exception).
STORAGE_SQLITE_CODES = frozenset({5, 6, 8, 10, 13, 14})
#: PostgreSQL's SQLSTATE classes that blame the storage: 53 insufficient resources (disk full, out of memory, too
#: many connections), 08 connection exception, 58 system error (I/O); and the states 57P* (the server shuts down,
#: or cannot take connections yet) and 25006 (a read-only transaction: a standby, or writes turned off).
STORAGE_SQLSTATE_PREFIXES = ("53", "08", "58", "57P", "25006")


def storage_fault(exc: BaseException) -> str | None:
    """The name of the error if ``exc`` says the storage, not the data written, is at fault — a full disk, an I/O
    error, a database that is read-only, locked, out of resources or shutting down, or whose schema lacks what the
    statement names (:func:`schema_fault`) — else None. The same statement may succeed once the storage recovers
    (or the schema is this code's again): it is to be tried again later, not blamed on what it wrote."""
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in STORAGE_SQLITE_CODES:
        return str(getattr(exc.orig, "sqlite_errorname", None) or f"SQLite error {code}")
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str) and state.startswith(STORAGE_SQLSTATE_PREFIXES):
        return f"SQLSTATE {state}"
    return schema_fault(exc)


#: PostgreSQL's SQLSTATEs (class 42) of a statement naming what the schema lacks: undefined_table, undefined_column,
#: undefined_function, undefined_object (a type, a constraint). Not the rest of the class (a syntax error, a missing
#: privilege): no migration mends those.
SCHEMA_SQLSTATES = frozenset({"42P01", "42703", "42883", "42704"})
#: SQLite's words for the same (its result code is the generic SQLITE_ERROR, 1): a table, a column — in a query, or
#: in an INSERT's list of columns — or a function it does not have.
SCHEMA_SQLITE_WORDS = ("no such table:", "no such column:", "has no column named", "no such function:")


def schema_fault(exc: BaseException) -> str | None:
    """The name of the error if ``exc`` says the database's schema is not the one the code was written for — a
    table, column or function a statement names is not there: ``init-db`` not run after an upgrade, or a migration run
    under a process of an older version — else None. The statement is the code's, never a message's data, so no
    message is to blame: the schema is to be set right (``seal-server init-db``, or the process upgraded)."""
    if not isinstance(exc, DBAPIError):
        return None
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str) and state in SCHEMA_SQLSTATES:
        return f"schema not this code's, SQLSTATE {state}"
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == 1 and any(words in str(exc.orig) for words in SCHEMA_SQLITE_WORDS):
        return "schema not this code's, SQLITE_ERROR"
    return None


#: SQLite's primary result codes of a database another connection holds: SQLITE_BUSY, SQLITE_LOCKED.
BUSY_SQLITE_CODES = frozenset({5, 6})
#: PostgreSQL's SQLSTATEs of a server not taking connections now: 08 connection exception, 57P* shutting down or
#: starting up (57P03 cannot_connect_now), 53300 too_many_connections.
PASSING_SQLSTATE_PREFIXES = ("08", "57P", "53300")
#: At start, how long a command waits for a database that is locked or not answering yet (:func:`passing_fault`).
START_WAIT_S = 120.0
#: The pauses between its tries: doubling from the first to the longest.
START_PAUSE_S, START_PAUSE_MAX_S = 1.0, 10.0


#: A PostgreSQL server's refusals as it connects (its FATAL words, in English, the default ``lc_messages``) that
#: waiting does not mend: psycopg gives them no SQLSTATE, as it gives none to a server not listening yet. A server
#: that says them in another language is waited for as before (each try logs its words).
REFUSED_AT_CONNECT = (
    "does not exist",  # role "…" / database "…" does not exist (28000, 3D000)
    "password authentication failed",  # 28P01
    "authentication failed",  # peer, ident, … (28000)
    "no pg_hba.conf entry",  # 28000
    "no password supplied",
    "permission denied",  # for database "…" (42501)
)


def passing_fault(exc: BaseException) -> str | None:
    """The name of the error if ``exc`` says the database cannot be used *now* but may be in a moment, else None:
    SQLite busy or locked (another process holds its write lock); on PostgreSQL a connection exception, a server
    starting up or shutting down, too many connections — or a connection that failed with no SQLSTATE at all
    (refused, timed out, a host not resolved: libpq's own failures), unless the server refused it in words no wait
    mends (:data:`REFUSED_AT_CONNECT`: an unknown role or database, a wrong password; psycopg gives these no SQLSTATE
    either).
    Not a full disk, a read-only file, an I/O error (:func:`storage_fault`, tried again by a running ingest), nor
    any error of what was asked."""
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return storage_fault(exc) if code & 0xFF in BUSY_SQLITE_CODES else None
    state = getattr(exc.orig, "sqlstate", "")
    if isinstance(state, str) and state.startswith(PASSING_SQLSTATE_PREFIXES):
        return f"SQLSTATE {state}"
    if state is None and isinstance(exc, OperationalError):  # (psycopg's errors have the attribute, empty)
        if any(words in str(exc.orig) for words in REFUSED_AT_CONNECT):
            return None  # the server answered, and no wait mends it: a wrong role, database or password
        return "no connection"
    return None


def when_database_answers(work: Callable[[], T], *, what: str, wait_s: float = START_WAIT_S) -> T:
    """``work()`` (the start of a command: its migrations, say), tried again with growing pauses while it fails
    with a :func:`passing_fault` — each wait logged with its reason — for ``wait_s`` at most; then, or at once for
    any other error, its error is raised."""
    deadline = time.monotonic() + wait_s
    pause = START_PAUSE_S
    while True:
        try:
            return work()
        except DBAPIError as exc:
            fault, left = passing_fault(exc), deadline - time.monotonic()
            if fault is None or left <= 0:
                raise
            logger.warning(
                "%s: 数据库暂不可用，等待中 / the database is not available yet (%s: %s); trying again in %.0f s, "
                "giving up in %.0f s",
                what,
                fault,
                str(exc.orig).strip(),
                min(pause, left),
                left,
            )
            time.sleep(min(pause, left))
            pause = min(pause * 2, START_PAUSE_MAX_S)


def make_engine(url: str, *, ping_after_idle: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url``; on SQLite the pragmas above are set on every new connection. A pooled connection is
    pinged before each use (``pool_pre_ping``), or with ``ping_after_idle`` only after it lay idle
    (:func:`_ping_when_idle`: the ingest's own engine)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database_url: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ConfigError("database_url: use a SQLite file, not an in-memory database (WAL needs a file)")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        keep_sqlite_private(Path(database))
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", not ping_after_idle)
    if parsed.get_backend_name() == "postgresql":
        # READ COMMITTED whatever the server's default_transaction_isolation (see the module's docstring). psycopg 3
        # then begins each transaction with ``BEGIN ISOLATION LEVEL READ COMMITTED``.
        level = kwargs.setdefault("isolation_level", POSTGRESQL_ISOLATION)
        if level != POSTGRESQL_ISOLATION:
            raise ValueError(f"the court's transactions need {POSTGRESQL_ISOLATION} on PostgreSQL, not {level!r}")
        # Every moment is stored and read in UTC: a server whose default time zone is another one could otherwise
        # not even read back an event stamped near year 1 or 9999 (psycopg: "timestamp too large").
        # Every execution planned for its parameters and the table as it is then (plan_cache_mode): psycopg prepares
        # a statement on the server at its 6th execution, and PostgreSQL may then keep one generic plan for it —
        # planned while a table was empty (a new court's first batches), a sequential scan kept as the table grows
        # (the ingest's look-up of stored event ids: 9.7 → 16.7 ms a batch over the first 20,000 events).
        # ``options`` given in the URL (e.g. ``?options=-csearch_path=…``) are kept: connect_args would replace them.
        connect_args = dict(kwargs.pop("connect_args", {}))
        given = connect_args.get("options", parsed.query.get("options", ""))
        given = " ".join(given) if isinstance(given, tuple) else given
        connect_args["options"] = f"{given} -c timezone=UTC -c plan_cache_mode=force_custom_plan".strip()
        kwargs["connect_args"] = connect_args
    engine = create_engine(parsed, **kwargs)
    if ping_after_idle:
        _ping_when_idle(engine)
    return engine


def keep_sqlite_private(database: Path) -> None:
    """The SQLite file and its sidecars hold the users' password hashes and every piece of evidence: mode 0600,
    whatever the umask and whatever directory ``database_url`` names. The file is created 0600 before SQLite opens
    it; SQLite gives its ``-wal``, ``-shm`` and ``-journal`` files the main file's mode, and any of them already
    there with a wider one (made by an older version under umask 022) is narrowed."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    for path in (database, *(database.with_name(database.name + suffix) for suffix in SQLITE_SIDECARS)):
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            logger.warning("%s is readable by others and not ours to narrow: %s", path, exc)


#: The files SQLite keeps beside a database.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before it is handed out only if it lay idle in the pool for more than
    :data:`PING_AFTER_IDLE_S` (``pool_pre_ping`` pings at every checkout: a round trip more for each of the ingest's
    transactions, which follow each other without a pause). A connection that fails the ping is replaced before
    anyone uses it; one that died less than that after its last use fails the next transaction. Only for a writer
    that tries a failed transaction again, as the ingest does its batch (:class:`~server.errors.StorageUnavailable`);
    the web's, the workers' and the command line's engines ping at every checkout."""

    @event.listens_for(engine, "checkin")
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)  # None: a new connection, which just answered
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the connection is not to be used
            logger.info("a pooled database connection failed its ping, replaced: %s", exc)
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the pooled connection did not answer its ping")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN from pysqlite: _sqlite_begin emits ours
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
    if mode not in ("IMMEDIATE", "DEFERRED"):
        raise ValueError(f"{SQLITE_BEGIN} must be IMMEDIATE or DEFERRED, got {mode!r}")
    execute(connection, f"BEGIN {mode}")  # at every transaction: on the cursor, as SQLAlchemy's own statements go


def make_session_factory(engine: Engine) -> SessionFactory:
    # expire_on_commit=False: rows returned by a committed unit of work stay readable (API responses, CLI output).
    return sessionmaker(engine, expire_on_commit=False)


def check_db(engine: Engine) -> None:
    """Raise ``sqlalchemy.exc.SQLAlchemyError`` unless the database answers a query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back when it raises."""
    with factory() as session:
        with session.begin():
            yield session


def in_session(database_url: str, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one committed transaction on a short-lived engine (for a command of the CLI)."""
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return work(session)
    finally:
        engine.dispose()


_STATEMENT_TIME = text("SELECT statement_timestamp()")


def database_now(session: Session) -> datetime:
    """The database's clock, one for every process writing to it (PostgreSQL: the current statement's start, not the
    transaction's, which may have waited for a lock). SQLite is on this machine, its one writer at a time: this
    machine's clock."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(_STATEMENT_TIME).scalar_one().astimezone(UTC)
    return datetime.now(UTC)
