"""Many rows of one table updated at once, each by its key, in one fixed statement.

The statement is written once, over named values: ``values`` gives the columns to set and ``where`` the condition
besides the key, both from the values' column expressions. It is then run:

- on SQLite as the driver's executemany of ``UPDATE … WHERE key = :key AND …`` with named parameters, each value
  passed through its type's bind processor once (SQLite runs in this process: a row costs a call into its library, no
  round trip; SQLAlchemy's own executemany would build each row's positional parameters, a value once for every place
  the statement names it);
- on PostgreSQL as one ``UPDATE … FROM unnest(CAST(:key AS type[]), …) AS v(key, …) WHERE table.key = v.key AND …``,
  one array bound per name (:func:`server.core.value_lists.unnest_of`, in the binary format): one round trip and one
  plan for any number of rows, where an executemany is a Bind and an Execute per row.

The rows must name distinct keys (PostgreSQL would update a row once, from any one of the values naming it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, update
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.type_api import TypeEngine, _BindProcessorType

from server.core.driver_sql import bound_rows, executemany
from server.core.value_lists import array_statement, unnest_of

_Processor = _BindProcessorType[Any]  # a type's bind processor for a dialect

#: The values' column expressions by name -> what the statement makes of them.
Values = Mapping[str, ColumnElement[Any]]


class BulkUpdate:
    """``UPDATE table SET values(v) WHERE table.key = v.key AND where(v)`` for every row ``v`` given.

    ``params``: the names of the values and their types (the key's included, under the key column's name); a row given
    to :meth:`execute` is a mapping of those names."""

    def __init__(
        self,
        table: Table,
        key: str,
        params: Mapping[str, TypeEngine[Any]],
        *,
        values: Callable[[Values], Mapping[str, ColumnElement[Any]]],
        where: Callable[[Values], ColumnElement[bool]] | None = None,
    ) -> None:
        if key not in params:
            raise ValueError(f"the key {key!r} must be one of the params")
        self._key = key
        self._params = dict(params)
        #: dialect name -> the arrays' statement and each value's bind processor
        self._compiled: dict[str, tuple[str, list[tuple[str, _Processor | None]]]] = {}
        binds = {name: bindparam(f"b_{name}", type_=item) for name, item in params.items()}
        self._per_row = self._statement(table, key, binds, values, where)
        arrays = unnest_of(params, prefix="a_")  # not the columns' own names: update() keeps those for its SET
        self._arrays = self._statement(table, key, {name: arrays.c[name] for name in params}, values, where)

    @staticmethod
    def _statement(
        table: Table,
        key: str,
        v: Values,
        values: Callable[[Values], Mapping[str, ColumnElement[Any]]],
        where: Callable[[Values], ColumnElement[bool]] | None,
    ) -> Any:
        conditions = [table.c[key] == v[key]] + ([] if where is None else [where(v)])
        return update(table).where(*conditions).values(values(v))

    def execute(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if len({row[self._key] for row in rows}) != len(rows):  # SQLite would apply each, PostgreSQL any one of them
            raise ValueError(f"rows naming the same {self._key} twice")
        connection = session.connection()
        dialect = connection.dialect
        sql, processors = self._compiled.get(dialect.name) or self._compile(dialect)
        if dialect.name != "postgresql":  # a mapping of named values per row
            names = [f"b_{n}" for n, _ in processors]
            executemany(
                connection, sql, [dict(zip(names, values, strict=True)) for values in bound_rows(rows, processors)]
            )
            return
        arrays = {
            f"a_{n}": [row[n] for row in rows] if p is None else [p(row[n]) for row in rows] for n, p in processors
        }
        connection.exec_driver_sql(sql, arrays)

    def _compile(self, dialect: Dialect) -> tuple[str, list[tuple[str, _Processor | None]]]:
        """The statement's text and each value's bind processor, so that a value is bound as its type would bind it
        (a time in UTC, JSON's text): on PostgreSQL the arrays' statement in the binary format; elsewhere the per-row
        statement with named parameters (``:b_name``, however often the statement names it)."""
        if dialect.name == "postgresql":
            sql = array_statement(self._arrays, [f"a_{name}" for name in self._params], dialect)
        else:
            named = cast(type[DefaultDialect], type(dialect))(paramstyle="named")  # the same dialect, but ``:name``
            compiled = self._per_row.compile(dialect=named)
            if compiled.positional or set(compiled.params) != {f"b_{name}" for name in self._params}:
                raise RuntimeError(f"unexpected parameters of {compiled.string!r}: {sorted(compiled.params)}")
            sql = compiled.string
        processors = [(name, item._cached_bind_processor(dialect)) for name, item in self._params.items()]
        self._compiled[dialect.name] = made = (sql, processors)
        return made
