"""Many rows into one table at once, at the driver's speed on SQLite.

SQLAlchemy's executemany builds each row's parameters in Python (its compiled parameter dict, each column's bind
processor), which costs more than SQLite's own insert of the row. On SQLite :class:`BulkInsert` hands the driver the
statement and one tuple per row, each value passed through the column type's own bind processor (so a row is stored
exactly as SQLAlchemy would store it); elsewhere it is SQLAlchemy's executemany (on PostgreSQL its multi-row
``INSERT … VALUES``, which beats the driver's one statement per row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (…)`` for many rows given as mappings of those columns."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._statement = insert(table)
        self._sqlite: tuple[str, list[tuple[str, Callable[[Any], Any] | None]]] | None = None

    def execute(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        connection = session.connection()
        dialect = connection.dialect
        if dialect.name != "sqlite":
            session.execute(self._statement, list(rows))
            return
        sql, processors = self._sqlite or self._compile(dialect)
        values = [tuple(row[c] if p is None else p(row[c]) for c, p in processors) for row in rows]
        connection.exec_driver_sql(sql, values)

    def _compile(self, dialect: Dialect) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]:
        compiled = self._statement.values(dict.fromkeys(self._columns)).compile(dialect=dialect)
        if compiled.positiontup != list(self._columns):  # the statement's parameters, in the columns' order
            raise RuntimeError(f"unexpected parameters of {compiled.string!r}: {compiled.positiontup}")
        processors: list[tuple[str, Callable[[Any], Any] | None]] = [
            (c, self._table.c[c].type._cached_bind_processor(dialect)) for c in self._columns
        ]
        compiled_sqlite = (compiled.string, processors)
        self._sqlite = compiled_sqlite
        return compiled_sqlite
