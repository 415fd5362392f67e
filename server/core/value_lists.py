"""``column IN (a list given at execution)`` as one fixed SQL text, whatever the list's length.

SQLAlchemy's expanding ``IN`` renders one placeholder per value at every execution, so a statement whose list length
varies is rendered anew each time, and SQLite prepares it anew (its statement cache is keyed by the text). The hot
path of the ingest runs such a statement several times per batch. :func:`one_of` instead binds the whole list as one
parameter: ``column = ANY(:list)`` (a PostgreSQL array) or ``column IN (SELECT value FROM json_each(:list))`` on
SQLite (JSON1, built into SQLite since 3.38 and into every Python 3.11 we support). Values are strings or integers.

:func:`unnest_of` is the same idea for many rows at once on PostgreSQL: one array bound per column
(:mod:`server.core.bulk_insert`, :mod:`server.core.bulk_update`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from typing import cast as typed

from sqlalchemy import Enum, String, cast, column, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, ColumnElement, TableValuedAlias, bindparam
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.sqltypes import NULLTYPE
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator


class ValueList(TypeDecorator[Sequence[Any]]):
    """A list bound as one parameter: a PostgreSQL array of the items of ``column``, or a JSON array elsewhere.

    The column's type is read when a dialect first needs it, not when the statement is built: a foreign key's
    column has no type of its own (``NullType``) until its table's target is known, which may be after a module's
    statements are built."""

    impl = String
    cache_ok = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__()
        self.column = column  # the cache key names the column: one list type per column

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            item = self.column.type
            if item._isnull:
                raise TypeError(f"a value list of {self.column!r}, whose type is not known yet")
            # not VARCHAR(n)[]: that cast cuts a longer value to n characters, which then finds another row
            item = String() if isinstance(item, String) else item
            return dialect.type_descriptor(ARRAY(item))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            raise ValueError("a value list is a list, not None")
        if any(isinstance(item, str) and "\x00" in item for item in value):
            # SQLite's json_each would cut the text at the NUL (and match another value); PostgreSQL refuses it
            raise ValueError("a value list's strings cannot hold U+0000")
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value), ensure_ascii=False)


class OneOf(ColumnElement[Any]):
    """``column`` is one of the values bound to ``name`` (see the module's docstring)."""

    # not Boolean: on SQLite a Boolean clause is rendered "… = 1", which no index serves
    type: TypeEngine[Any] = NULLTYPE
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.values = bindparam(name, type_=ValueList(column))


def one_of(column: ColumnElement[Any], name: str) -> OneOf:
    return OneOf(column, name)


@compiles(OneOf, "postgresql")
def _any(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.values, **kw)})"


@compiles(OneOf)
def _json_each(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    values = compiler.process(element.values, **kw)
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({values}))"


def unnest_of(
    columns: Mapping[str, TypeEngine[Any]], *, prefix: str = "", ordinality: str | None = None
) -> TableValuedAlias:
    """PostgreSQL's ``unnest(CAST(:name AS type[]), …) AS anon(name, …)``: rows made of one array bound per name (the
    arrays of equal length, each bound as ``prefix`` + its name), to insert or update many rows in one statement;
    ``ordinality``: the name of one more column, each row's place in the arrays (1, 2, …). Each array is of the
    unbounded kind of its type (``VARCHAR[]``, not ``VARCHAR(36)[]``: that cast would cut a longer value instead of
    refusing it)."""
    arrays = [cast(bindparam(prefix + name), ARRAY(_array_item(item))) for name, item in columns.items()]
    typed = [column(name, item) for name, item in columns.items()]
    return func.unnest(*arrays).table_valued(*typed, with_ordinality=ordinality).render_derived()


def array_statement(statement: ClauseElement, names: Sequence[str], dialect: Dialect) -> str:
    """``statement`` (over :func:`unnest_of`'s arrays) compiled for psycopg, its parameters exactly ``names``, each
    sent in PostgreSQL's binary format (``%(name)b``): an array of values then goes as each value's bytes with its
    length, where the text format quotes and escapes every item (psycopg does it in Python, item by item, and the
    server parses it back); a JSON text or a picture's bytes are most of a row."""
    compiled = typed(SQLCompiler, statement.compile(dialect=dialect))
    if sorted(compiled.bind_names.values()) != sorted(names):  # one array parameter per name, and no other
        raise RuntimeError(f"unexpected parameters of {compiled.string!r}: {compiled.bind_names.values()}")
    sql = compiled.string
    for name in names:
        sql = sql.replace(f"%({name})s", f"%({name})b")
    return sql


def _array_item(item: TypeEngine[Any]) -> TypeEngine[Any]:
    """The type of an array's items for a column of type ``item``, as PostgreSQL stores the column (a variant, or a
    decorator's type there): plain text unbounded, anything else itself (a native enum, a UUID)."""
    stored = item.dialect_impl(_POSTGRESQL)
    if isinstance(stored, TypeDecorator):
        stored = stored.impl_instance.dialect_impl(_POSTGRESQL)
    return String() if isinstance(stored, String) and not isinstance(stored, Enum) else stored


_POSTGRESQL = postgresql.dialect()
