"""The ingest's small statements run on SQLite's own cursor, compiled once, as SQLAlchemy would run them.

Through ``Session.execute`` a Core select costs far more CPU than SQLite's own work for the ingest's small
statements: reading 17 seals' rows took about 130 µs, 50 of them SQLite's (a statement's cache key computed at each
execution, an execution context, a result object; docs/benchmarks.md, nineteenth round). On SQLite,
:class:`DriverSelect` compiles its statement once (the SQL with its constant ``IN`` lists expanded, each parameter's
bind processor, each column's result processor — what SQLAlchemy itself does with them) and runs it through
``Connection._cursor_execute``, SQLAlchemy's own lean path: in the session's transaction (begun as any statement
would begin it), its cursor events and echo honoured, a driver's error raised as SQLAlchemy's (``DBAPIError``, the
connection invalidated if it is gone). The values bound and the rows returned are SQLAlchemy's
(``tests/server/test_driver_sql.py`` compares them). Core statements only: the ORM's (autoflush, ORM rows) are refused.
:func:`executemany` is the same for the driver's executemany of a fixed SQL text (:mod:`server.core.bulk_insert`).

On PostgreSQL nothing changes: the statement goes through ``Session.execute`` (psycopg converts values in C, and a
statement there is a round trip that dwarfs SQLAlchemy's work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select, TextClause

Processor = Callable[[Any], Any]


class DriverSelect:
    """A Core ``SELECT`` (or a :func:`~sqlalchemy.text` one) whose rows are read as tuples; on SQLite on the driver's
    cursor (see the module's docstring). Parameters given at execution must not be expanding ``IN`` lists (their
    number of placeholders would change the SQL): :mod:`server.core.value_lists` binds a list as one parameter."""

    def __init__(self, statement: Select[Any] | TextClause) -> None:
        if statement._propagate_attrs.get("compile_state_plugin") == "orm":
            raise TypeError("a DriverSelect runs Core statements only (the ORM's autoflush and rows are not run)")
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}  # dialect name -> the statement compiled for it

    def rows(self, session: Session, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        connection = session.connection()
        dialect = connection.dialect
        if dialect.name != "sqlite":
            return [tuple(row) for row in session.execute(self.statement, params)]
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        given = params or {}
        args = tuple(value if p is None else p(value) for value, p in _values(compiled, given))
        rows = _run(connection, compiled.sql, args)
        if not rows or not any(compiled.results):
            return rows
        return list(zip(*_processed(zip(*rows, strict=True), compiled.results), strict=True))

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled: Any = self.statement.compile(dialect=dialect)
        given = {bind.key for bind in compiled.binds.values() if bind.required}
        if any(bind.expanding for bind in compiled.binds.values() if bind.key in given):
            raise TypeError(f"an expanding parameter given at execution: {sorted(given)}")
        # the constant IN lists expanded once; the values given at execution only take their places
        expanded = compiled.construct_expanded_state(dict.fromkeys(given))
        processors = {**compiled._bind_processors, **expanded.processors}
        places = []
        for name in expanded.positiontup:
            processor = processors.get(name)
            if name in given:
                places.append((name, None, processor))
            else:  # a constant: processed once
                value = expanded.parameters[name]
                places.append((None, value if processor is None else processor(value), None))
        columns = self.statement.selected_columns if isinstance(self.statement, Select) else ()
        results = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
        made = _Compiled(expanded.statement, tuple(places), results)
        self._compiled[dialect.name] = made
        return made


class _Compiled(NamedTuple):
    sql: str
    #: each placeholder's (name given at execution, None) or (None, its constant processed), and its processor
    places: tuple[tuple[str | None, Any, Processor | None], ...]
    results: tuple[Processor | None, ...]  # each column's result processor


def _values(compiled: _Compiled, given: Mapping[str, Any]) -> list[tuple[Any, Processor | None]]:
    """Each placeholder's value and the processor still to apply to it (a constant's is already applied)."""
    return [(constant if name is None else given[name], p) for name, constant, p in compiled.places]


def _run(connection: Connection, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, sql, args)  # errors raised as SQLAlchemy raises them
        try:
            return cast(list[tuple[Any, ...]], cursor.fetchall())  # sqlite3's rows are tuples
        except Exception as exc:  # noqa: BLE001 - raised as SQLAlchemy's, as a fetch of its result would
            connection._handle_dbapi_exception(exc, sql, args, cursor, None)
    finally:
        cursor.close()


def execute(connection: Connection, sql: str, args: Sequence[Any] = ()) -> None:
    """Run ``sql``, which returns no rows, on the connection's cursor (a transaction's ``BEGIN``), as
    :meth:`DriverSelect.rows` runs its statement."""
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, sql, args)
    finally:
        cursor.close()


def executemany(connection: Connection, sql: str, rows: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]]) -> None:
    """The driver's executemany of ``sql`` (its parameters already processed) over ``rows``; with SQLAlchemy's
    ``exec_driver_sql`` where anyone listens to its cursor events or echo is on (they see it), else straight on the
    cursor, a driver's error raised as SQLAlchemy's."""
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute or connection._echo:
        connection.exec_driver_sql(sql, rows)
        return
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, rows)
    except Exception as exc:  # noqa: BLE001 - raised as SQLAlchemy's
        connection._handle_dbapi_exception(exc, sql, rows, cursor, None)
    finally:
        cursor.close()


def _processed(columns: Iterable[Sequence[Any]], processors: Iterable[Processor | None]) -> list[Sequence[Any]]:
    """Each column's values through its processor, column by column (one comprehension per column, not a generator
    per row); a processor that gives None for None (:func:`keeps_none`) is not called for None."""
    done = []
    for column, processor in zip(columns, processors, strict=True):
        if processor is None:
            done.append(column)
        elif keeps_none(processor):
            done.append([None if value is None else processor(value) for value in column])
        else:
            done.append([processor(value) for value in column])
    return done


def bound_rows(rows: Sequence[Mapping[str, Any]], processors: Sequence[tuple[str, Processor | None]]) -> list[Any]:
    """Each row's values named by ``processors``, in their order, each through its bind processor: what SQLAlchemy
    binds (the ingest binds some hundreds of values a batch: :func:`_processed`)."""
    columns = [[row[name] for row in rows] for name, _ in processors]
    return list(zip(*_processed(columns, (processor for _, processor in processors)), strict=True))


_KEEPS_NONE: dict[Processor, bool] = {}


def keeps_none(processor: Processor) -> bool:
    """Does ``processor`` give None for None? (Most do; JSON's gives ``'null'``, a value list's raises.)"""
    known = _KEEPS_NONE.get(processor)
    if known is None:
        try:
            known = processor(None) is None
        except Exception:  # noqa: BLE001 - it refuses None: called for None as SQLAlchemy would, to refuse it then
            known = False
        _KEEPS_NONE[processor] = known
    return known
