"""``one_of``: a column matched against a list bound as one parameter, on SQLite (json_each) and PostgreSQL (ANY):
the rows it finds, whatever the list's length and the values' characters, one SQL text for every length, and on
SQLite a plan that uses the column's index (a Boolean clause would be rendered ``… = 1`` and scan the table)."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy import Column, Engine, Enum, ForeignKey, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import StatementError

from server.core.base import UTCDateTime
from server.core.db import make_engine
from server.core.value_lists import one_of, unnest_of
from server.seals.models import Seal
from tests.server.helpers import CASE_A, SimulatedSeal, register

SEALS = cast(Table, Seal.__table__)
QUERY = select(SEALS.c.device_id).where(one_of(SEALS.c.device_id, "ids")).order_by(SEALS.c.device_id)
NAMES = ["seal-1", "seal-2", "seal-3", "a", "seal-10", "z-9"]
#: Values no device id can have, looked for all the same: they must find nothing and break nothing.
ODD = ["seal-'quote'", 'seal-"double"', "seal-中文", "seal-[1,2]", "seal-\\back", "", "seal-%", "seal-_"]


@pytest.fixture
def registered(engine: Engine) -> Engine:
    from server.core.db import make_session_factory

    register(make_session_factory(engine), *(SimulatedSeal(name, CASE_A) for name in NAMES))
    return engine


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ([], []),
        (["seal-1"], ["seal-1"]),
        (["seal-1", "seal-unknown"], ["seal-1"]),
        (NAMES, sorted(NAMES)),
        ([*NAMES, *NAMES], sorted(NAMES)),
        (ODD, []),  # no pattern, no quoting trouble: values are values
        ([*ODD, "seal-3"], ["seal-3"]),
    ],
)
def test_one_of_finds_exactly_the_listed_values(registered: Engine, wanted: list[str], found: list[str]) -> None:
    with registered.connect() as conn:
        assert list(conn.scalars(QUERY, {"ids": wanted})) == found


def test_a_nul_in_a_value_is_refused(registered: Engine) -> None:
    """SQLite's json_each would cut "seal-1\\0" to "seal-1" and find that seal: refused on both databases alike."""
    with registered.connect() as conn, pytest.raises(StatementError, match="U\\+0000"):
        conn.scalars(QUERY, {"ids": ["seal-2", "seal-1\x00"]})


def test_one_sql_text_for_every_length(registered: Engine) -> None:
    texts = set()
    for length in (1, 2, 5):
        compiled = QUERY.compile(dialect=registered.dialect)
        texts.add(str(compiled))
        with registered.connect() as conn:
            assert len(list(conn.scalars(QUERY, {"ids": NAMES[:length]}))) == length
    assert len(texts) == 1


def test_sqlite_searches_the_index(registered: Engine) -> None:
    if registered.dialect.name != "sqlite":
        pytest.skip("the plan is SQLite's")
    sql = str(QUERY.compile(dialect=registered.dialect))
    with registered.connect() as conn:
        plan = " / ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("[]",)))
    assert "SEARCH seals USING" in plan and "SCAN seals" not in plan, plan


def test_a_value_longer_than_the_column_finds_nothing(engine: Engine) -> None:
    """PostgreSQL's cast to VARCHAR(64)[] would cut a 65-character value to 64 and find the seal it starts with."""
    from server.core.db import make_session_factory

    longest = "seal-" + "x" * 59  # 64 characters: the column's length
    register(make_session_factory(engine), SimulatedSeal(longest, CASE_A))
    with engine.connect() as conn:
        assert list(conn.scalars(QUERY, {"ids": [longest + "y"]})) == []
        assert list(conn.scalars(QUERY, {"ids": [longest]})) == [longest]


def test_a_list_of_5000_values_is_one_parameter(registered: Engine) -> None:
    wanted = [f"seal-x{i}" for i in range(5000)] + ["seal-2"]
    with registered.connect() as conn:
        assert list(conn.scalars(QUERY, {"ids": wanted})) == ["seal-2"]


def test_the_arrays_are_of_the_types_postgresql_stores_the_columns_in() -> None:
    """Text unbounded (a cast to VARCHAR(36)[] would cut a longer value); a native enum, a variant for PostgreSQL and
    a decorated type as PostgreSQL stores them."""
    columns = {
        "text": String(36),
        "mood": Enum("calm", "alert", name="mood"),
        "ref": String(36).with_variant(postgresql.UUID(), "postgresql"),
        "at": UTCDateTime(),
    }
    sql = str(select(unnest_of(columns)).compile(dialect=postgresql.psycopg.dialect()))
    for cast_to in ("VARCHAR[]", "mood[]", "UUID[]", "TIMESTAMP WITH TIME ZONE[]"):
        assert f"AS {cast_to})" in sql, sql


def test_a_foreign_keys_list_takes_the_type_its_target_gives_it_later(database_url: str) -> None:
    """A foreign key's column has no type of its own until its target table is known: a statement built before (at a
    module's import, say) still binds the column's list as the type the target gives it."""
    metadata = MetaData()
    child = Table(
        "vl_child", metadata, Column("id", Integer, primary_key=True), Column("ref", ForeignKey("vl_ref.key"))
    )
    statement = select(child.c.id).where(one_of(child.c.ref, "refs")).order_by(child.c.id)
    Table("vl_ref", metadata, Column("key", String(20), primary_key=True))  # the target, defined afterwards
    instance = make_engine(database_url)
    try:
        metadata.create_all(instance)
        with instance.begin() as conn:
            conn.execute(metadata.tables["vl_ref"].insert(), [{"key": "a"}, {"key": "b"}])
            conn.execute(child.insert(), [{"id": 1, "ref": "a"}, {"id": 2, "ref": "b"}])
            assert list(conn.scalars(statement, {"refs": ["b", "c"]})) == [2]
    finally:
        instance.dispose()
