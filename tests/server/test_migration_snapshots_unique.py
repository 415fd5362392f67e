"""Migration 0032: a database migrated by the first version of migration 0014 (which left the ``snapshots`` table's
unique rule on (sha256, case_no); the edited 0014 makes it (sha256, device_id, case_no)) gets today's rule when it is
upgraded, and the ingest then files one picture from two seals of one case, as on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Engine, inspect

from server.core.db import make_engine, make_session_factory
from server.migrations.run import current_revision, downgrade, init_db, pending_differences, upgrade
from tests.server.test_snapshot_two_seals import identical_bytes_from_two_seals
from tests.verify.world import build_world

#: 0014_snapshot_names.
AT_0014 = "8d41b6f0c2e7"
#: 0031_seal_storage_report: the revision before 0032.
BEFORE_0032 = "3e7b9c1d5f20"


def _unique_rules(engine: Engine) -> set[tuple[str | None, tuple[str, ...]]]:
    return {(rule["name"], tuple(rule["column_names"])) for rule in inspect(engine).get_unique_constraints("snapshots")}


def _at_first_0014(engine: Engine) -> None:
    """The schema the first version of 0014 left: today's 0014, its new unique rule on ``snapshots`` put back to the
    one 0003 made."""
    upgrade(engine, AT_0014)
    with engine.begin() as conn:
        with Operations(MigrationContext.configure(conn)).batch_alter_table("snapshots") as batch_op:
            batch_op.drop_constraint("uq_snapshots_sha256_device_id_case_no", type_="unique")
            batch_op.create_unique_constraint("uq_snapshots_sha256_case_no", ["sha256", "case_no"])
    assert ("uq_snapshots_sha256_case_no", ("sha256", "case_no")) in _unique_rules(engine)
    assert current_revision(engine) == AT_0014


@pytest.fixture
def first_0014_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    try:
        _at_first_0014(engine)
        yield engine
    finally:
        engine.dispose()


def test_upgrade_gives_the_rule_of_a_fresh_database(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        init_db(engine)
        fresh = _unique_rules(engine)
        assert fresh == {("uq_snapshots_sha256_device_id_case_no", ("sha256", "device_id", "case_no"))}
        downgrade(engine, "base")
        _at_first_0014(engine)

        init_db(engine)

        assert _unique_rules(engine) == fresh
        assert pending_differences(engine) == []
        init_db(engine)  # at the newest: nothing to do
        assert _unique_rules(engine) == fresh
    finally:
        engine.dispose()


def test_a_schema_already_right_is_left_as_it_is(database_url: str) -> None:
    """A court that ran 0014 as it stands: 0032 changes nothing (and its downgrade neither)."""
    engine = make_engine(database_url)
    try:
        init_db(engine)
        head = current_revision(engine)
        fresh = _unique_rules(engine)
        downgrade(engine, BEFORE_0032)
        assert _unique_rules(engine) == fresh
        upgrade(engine)
        assert current_revision(engine) == head and _unique_rules(engine) == fresh
    finally:
        engine.dispose()


def test_the_ingest_takes_identical_bytes_from_two_seals_after_the_upgrade(
    first_0014_engine: Engine, database_url: str, tmp_path: Path
) -> None:
    init_db(first_0014_engine)
    world = build_world(make_session_factory(first_0014_engine), database_url, tmp_path)
    identical_bytes_from_two_seals(world)
