"""Many rows into one table at once, at the driver's speed, in one fixed statement.

SQLAlchemy's executemany builds each row's parameters in Python (its compiled parameter dict, each column's bind
processor), which costs more than SQLite's own insert of the row; on PostgreSQL it sends one multi-row ``INSERT …
VALUES`` whose text differs with the number of rows, so psycopg parses that text again for every batch and the
server plans it again. :class:`BulkInsert` instead, each value passed through the column type's own bind processor
(so that a row is stored exactly as SQLAlchemy would store it):

- on SQLite, hands the driver's ``executemany`` one fixed ``INSERT … VALUES (?, …)`` and a tuple per row (SQLite runs
  in this process: a row costs a call into its library, no round trip);
- on PostgreSQL, sends one statement whatever the number of rows, each column bound as one array:
  ``INSERT … SELECT … FROM unnest(CAST(:a AS type[]), …)``. An executemany there, even pipelined, is a Bind and an
  Execute per row for the server, and the client waits for all of them; one statement is one round trip, planned
  once (psycopg prepares it after a few executions). The arrays are of the unbounded types (``VARCHAR[]``, not
  ``VARCHAR(36)[]``, whose cast would cut a longer value instead of refusing it as the column does), sent in the
  binary format (:func:`~server.core.value_lists.array_statement`).

``ids_by``: the name of a unique column by which the inserted rows' generated ``id`` is returned, in the rows' order:
PostgreSQL's ``RETURNING``; on SQLite (which returns the ids of a multi-row insert in no promised order) a read by that
column after the insert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from server.core.driver_sql import DriverSelect, bound_rows, executemany
from server.core.value_lists import array_statement, one_of, unnest_of


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (…)`` for many rows given as mappings of those columns."""

    def __init__(self, table: Table, columns: Sequence[str], *, ids_by: str | None = None) -> None:
        self._table = table
        self._columns = tuple(columns)
        if ids_by is not None and ids_by not in self._columns:
            raise ValueError(f"ids_by names a column the rows do not give: {ids_by!r}")
        self._ids_by = ids_by
        self._compiled: dict[str, _Compiled] = {}  # dialect name -> its statement

    def execute(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert ``rows``; with ``ids_by``, return their ids in the rows' order (else an empty list)."""
        if not rows:
            return []
        connection = session.connection()
        compiled = self._compiled.get(connection.dialect.name) or self._compile(connection.dialect)
        processors = compiled.processors
        if compiled.arrays:  # PostgreSQL: one array per column
            arrays = {c: [row[c] for row in rows] if p is None else [p(row[c]) for row in rows] for c, p in processors}
            inserted = connection.exec_driver_sql(compiled.sql, arrays)
        else:  # SQLite: a tuple per row
            executemany(connection, compiled.sql, bound_rows(rows, processors))
        if self._ids_by is None:
            return []
        keys = [row[self._ids_by] for row in rows]
        ids: dict[Any, int]
        if compiled.read_ids is None:  # PostgreSQL: returned by the insert
            ids = dict(inserted.all())
        else:  # SQLite: read back by the unique column
            ids = dict(compiled.read_ids.rows(session, {"keys": keys}))
        return [ids[key] for key in keys]

    def _compile(self, dialect: Dialect) -> _Compiled:
        table, columns = self._table, list(self._columns)
        key = table.c[self._ids_by] if self._ids_by is not None else None
        processors = [(c, table.c[c].type._cached_bind_processor(dialect)) for c in columns]
        if dialect.name == "postgresql":
            # in the arrays' order, so that the ids are given in the rows' order, as an executemany gives them
            source = unnest_of({c: table.c[c].type for c in columns}, ordinality="n")
            rows_in_order = select(*(source.c[c] for c in columns)).order_by(source.c.n)
            statement = insert(table).from_select(columns, rows_in_order)
            if key is not None:
                statement = statement.returning(key, table.c.id)
            made = _Compiled(array_statement(statement, columns, dialect), True, processors, None)
        else:
            sql = insert(table).inline().values(dict.fromkeys(columns)).compile(dialect=dialect)
            if not sql.positional or sql.positiontup != columns:  # the parameters, in the columns' order
                raise RuntimeError(f"unexpected parameters of {sql.string!r}: {sql.positiontup}")
            read_ids = None if key is None else DriverSelect(select(key, table.c.id).where(one_of(key, "keys")))
            made = _Compiled(sql.string, False, processors, read_ids)
        self._compiled[dialect.name] = made
        return made


class _Compiled(NamedTuple):
    sql: str
    arrays: bool  # parameters as one array per column (PostgreSQL), else as a tuple per row in the columns' order
    processors: Sequence[tuple[str, Callable[[Any], Any] | None]]
    read_ids: DriverSelect | None  # SQLite, with ids_by: the read of the ids by the unique column
