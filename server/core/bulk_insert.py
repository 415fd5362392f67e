"""Many rows into one table at once, at the driver's speed.

SQLAlchemy's executemany builds each row's parameters in Python (its compiled parameter dict, each column's bind
processor), which costs more than SQLite's own insert of the row; on PostgreSQL it sends one multi-row ``INSERT …
VALUES`` whose text differs with the number of rows, so psycopg parses that text again for every batch and the
server plans it again. :class:`BulkInsert` hands the driver one fixed statement and the rows (a tuple each on SQLite,
a mapping each on PostgreSQL), each value passed through the column type's own bind processor, so that a row is
stored exactly as SQLAlchemy would store it. psycopg sends such an executemany in one pipeline and prepares the
statement once it has been used a few times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (…)`` for many rows given as mappings of those columns."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._statement = insert(table).inline()  # no RETURNING of generated keys
        self._compiled: dict[str, _Compiled] = {}  # dialect name -> its statement

    def execute(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        connection = session.connection()
        dialect = connection.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        processors = compiled.processors
        values: list[Any]
        if compiled.positional:
            values = [tuple(row[c] if p is None else p(row[c]) for c, p in processors) for row in rows]
        else:
            values = [{c: row[c] if p is None else p(row[c]) for c, p in processors} for row in rows]
        connection.exec_driver_sql(compiled.sql, values)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.values(dict.fromkeys(self._columns)).compile(dialect=dialect)
        columns = list(self._columns)
        if compiled.positional:
            if compiled.positiontup != columns:  # the statement's parameters, in the columns' order
                raise RuntimeError(f"unexpected parameters of {compiled.string!r}: {compiled.positiontup}")
        elif sorted(compiled.bind_names.values()) != sorted(columns):  # one named parameter per column, its name
            raise RuntimeError(f"unexpected parameters of {compiled.string!r}: {compiled.bind_names.values()}")
        processors = [(c, self._table.c[c].type._cached_bind_processor(dialect)) for c in self._columns]
        made = _Compiled(compiled.string, compiled.positional, processors)
        self._compiled[dialect.name] = made
        return made


class _Compiled(NamedTuple):
    sql: str
    positional: bool  # parameters as tuples in the columns' order (SQLite's ``?``), else as mappings by name
    processors: Sequence[tuple[str, Callable[[Any], Any] | None]]
