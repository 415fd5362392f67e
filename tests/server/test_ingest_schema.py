"""A schema that is not the code's is no message's fault.

At start, ``seal-server ingest`` (which does not migrate) refuses a database one migration behind — ``init-db`` not
run yet after an upgrade — or one newer than its code, in one line and with exit status 2, before any worker takes
a message from the stream. Before, each worker subscribed, failed every message it took with an undefined column,
and quarantined it as ``storage_error`` and acknowledged it. While running, a statement that names a table or column
the schema lacks (a migration run under a running ingest of an older version) makes the batch wait and be tried
again, as a full disk does, and nothing is quarantined; once the schema is back every event is stored, once. A
message the database refuses for what it holds is still quarantined alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from seal_dev.broker import PrivateBroker
from server.cli import main
from server.core.db import SessionFactory, schema_fault, storage_fault
from server.migrations.run import current_revision, downgrade
from tests.server.helpers import CASE_A, SimulatedSeal, refuse_seq_in_the_database, register
from tests.server.ingest_processes import end_group, ingest_config, start_ingest
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings, wait_for_log
from tests.server.test_ingest_storage_full import quarantined, stored_seqs
from tests.server.test_mqtt_ingest import WAIT_S
from tests.server.test_mqtt_ingest import start_ingest as start_ingest_here

BEHIND = "the database's schema is behind this code"
NEWER = "the database is newer than this code"


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:  # (SQL of its own: the models may name columns a schema behind lacks)
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def refused_start(config: Path, workers: int, publish: SimulatedSeal, broker: PrivateBroker) -> tuple[int, str]:
    """``seal-server ingest``'s exit status and output, while ``publish`` sends it events; the process must end by
    itself within a minute (a worker that ran on is ended, and fails the test)."""
    process = start_ingest(config, workers)
    try:
        with seal_connection(broker, publish.device_id) as conn:
            for _ in range(3):
                conn.publish(publish.event_topic, publish.event())
            output = process.communicate(timeout=2 * WAIT_S)[0].decode(errors="replace")
    finally:
        end_group(process)
    return process.returncode, output


def test_workers_against_a_database_one_migration_behind_refuse_to_start(
    broker: PrivateBroker, database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    head = current_revision(engine)
    downgrade(engine, "-1")  # the new release's code, its migration not run yet
    behind = current_revision(engine)
    config = ingest_config(tmp_path / "server.toml", database_url, broker, group="court-ingest")

    code, output = refused_start(config, 2, seal, broker)

    assert code == 2, output
    said = (
        f"数据库结构落后于本版本（{behind}，本版本需要 {head}）：请先运行 seal-server init-db / {BEHIND} (at {behind}, "
        f"this code needs {head}): run `seal-server init-db` first"
    )
    assert said in output, output
    assert "Traceback" not in output and "connected to the broker" not in output, output  # nothing subscribed
    assert "running" not in output, output
    assert (count(engine, "events"), count(engine, "quarantine")) == (0, 0)
    assert current_revision(engine) == behind  # the ingest migrates nothing: init-db does, once for every machine


def test_a_database_newer_than_the_code_is_refused_by_the_ingest_and_by_init_db(
    broker: PrivateBroker, database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    head = current_revision(engine)
    with engine.begin() as conn:  # migrated by a newer release, which another machine runs already
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    config = ingest_config(tmp_path / "server.toml", database_url, broker, group="court-ingest")

    code, output = refused_start(config, 1, seal, broker)

    assert code == 2, output
    newer = f"数据库结构比本版本新（ffffffffffff，本版本只到 {head}），请升级本机的法院服务器 / {NEWER}"
    assert newer in output, output
    assert "Traceback" not in output and "connected to the broker" not in output, output
    assert (count(engine, "events"), count(engine, "quarantine")) == (0, 0)
    assert main(["init-db", "--config", str(config)]) == 2  # the same words, and a configuration's exit status


RENAMES = {
    "column": ("ALTER TABLE events RENAME COLUMN sig TO sig_away", "ALTER TABLE events RENAME COLUMN sig_away TO sig"),
    "table": ("ALTER TABLE events RENAME TO events_away", "ALTER TABLE events_away RENAME TO events"),
}


@pytest.mark.parametrize("renamed", sorted(RENAMES))
def test_a_schema_changed_under_a_running_ingest_makes_it_wait_not_quarantine(
    renamed: str,
    broker: PrivateBroker,
    database_url: str,
    engine: Engine,
    session_factory: SessionFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    caplog.set_level(logging.INFO, logger="server")
    away, back = RENAMES[renamed]
    running = start_ingest_here(server_mqtt_settings(broker, tmp_path), session_factory, tmp_path)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            conn.publish(seal.event_topic, seal.event())
            running.wait(lambda m: m.stored >= 1, "the first event")
            with engine.begin() as ddl:
                ddl.execute(text(away))
            for _ in range(4):
                conn.publish(seal.event_topic, seal.event())
            running.wait(lambda m: m.storage_retries >= 2 or m.rejected_total > 0, "the batch tried again")
            assert running.metrics.snapshot().rejected == {}
            assert quarantined(session_factory) == 0
            progress = running.ingest.progress()
            assert progress.state == "retrying" and progress.unstored >= 1
            assert wait_for_log(caplog, lambda r: "schema not this code's" in r.getMessage(), WAIT_S)

            with engine.begin() as ddl:  # the schema is the code's again
                ddl.execute(text(back))
            running.wait(lambda m: m.stored >= 5, "every event, once the schema is back")
            assert running.ingest.progress().state == "ok"

            refuse_seq_in_the_database(session_factory, database_url, seq=6)  # a refusal of what a message holds
            conn.publish(seal.event_topic, seal.event())
            conn.publish(seal.event_topic, seal.event())
            running.wait(lambda m: m.rejected_total >= 1 and m.stored >= 6, "the refused event quarantined alone")
    finally:
        running.ingest.stop()
    assert stored_seqs(session_factory) == [("seal-a", seq) for seq in (1, 2, 3, 4, 5, 7)]
    assert running.metrics.snapshot().rejected == {"storage_error": 1}
    assert running.metrics.snapshot().duplicates == 0


def test_only_errors_naming_what_the_schema_lacks_are_schema_faults(engine: Engine) -> None:
    """Real errors of the database: a table, a column (read or written), a function it lacks are the schema's; a
    syntax error, a unique violation, a value of the wrong type are not (they are no migration's to mend)."""
    lacking = [
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM events",
        "INSERT INTO cases (case_no, no_such_column) VALUES ('x', 1)",
        "SELECT no_such_function(1)",
    ]
    other = [
        "SELEC 1",
        "INSERT INTO alembic_version (version_num) SELECT version_num FROM alembic_version",
    ]
    for statement in lacking + other:
        with engine.connect() as conn, pytest.raises(DBAPIError) as raised:
            conn.execute(text(statement))
        fault = schema_fault(raised.value)
        if statement in lacking:
            assert fault is not None and fault.startswith("schema not this code's"), (statement, raised.value)
            assert storage_fault(raised.value) == fault  # the ingest waits for it, as for a full disk
        else:
            assert fault is None and storage_fault(raised.value) is None, (statement, raised.value)
