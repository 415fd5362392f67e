"""The evidence is append-only in the database itself: events, the log's leaves, nodes and checkpoints, and the audit
log refuse UPDATE and DELETE (triggers, on SQLite and PostgreSQL); audit entries and the ingest append to the one log
concurrently without a deadlock; migration 0012 gives the entries stored before it their records and leaves."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from server.audit.models import AuditEntry
from server.audit.service import entry_record, record_audit
from server.core.db import SessionFactory, session_scope
from server.evidence import log
from server.evidence.checkpoints import LogKey
from server.migrations.run import downgrade, upgrade
from server.seals.cases import get_case
from tests.server.auth_helpers import LOG_ORIGIN
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.log_checks import assert_whole_tree
from tests.server.test_merkle_log import ingest

#: Each append-only table and a column to try to change.
TABLES = {
    "events": "type = 'x'",
    "log_leaves": "leaf_index = leaf_index + 1000",
    "log_nodes": "level = level + 10",
    "log_checkpoints": "note = 'forged'",
    "audit_log": "actor = 'someone else'",
}


def test_the_evidence_tables_refuse_update_and_delete(
    engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingest(session_factory, tmp_path, seal, 3)
    with session_scope(session_factory) as session:
        assert log.make_checkpoint(session, LogKey(tmp_path / "log.key", LOG_ORIGIN)) is not None
    for table, change in TABLES.items():
        with engine.connect() as conn:
            assert conn.scalar(text(f"SELECT count(*) FROM {table}")), table  # rows to refuse changing
        for statement in (f"UPDATE {table} SET {change}", f"DELETE FROM {table}"):
            with pytest.raises(DBAPIError, match=f"{table} is append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    assert assert_whole_tree(session_factory) == 3  # nothing changed
    with engine.begin() as conn:  # appending still works
        conn.execute(text("INSERT INTO log_nodes (level, node_index, hash) VALUES (60, 0, :h)"), {"h": b"\0" * 32})


def test_audit_entries_and_the_ingest_append_concurrently_without_deadlock(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Writers lock the case's row (as the services that change a case do) and record entries while ingest
    workers store events of the case's seals (whose inserts need that row's key share): one tree, no error."""
    seals = [SimulatedSeal(f"seal-{i}", CASE_A) for i in range(3)]
    register(session_factory, *seals)
    errors: list[BaseException] = []
    rounds = 12

    def ingesting(seal: SimulatedSeal) -> None:
        try:
            ingest(session_factory, tmp_path, seal, rounds)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def auditing(writer: int) -> None:
        try:
            for i in range(rounds):
                with session_scope(session_factory) as session:  # an entry, then the case's row, then another:
                    # had the first entry taken the log's lock at once, a worker holding the row's key share and
                    # waiting for the log would wait for this writer, and this writer for it
                    record_audit(session, actor=None, action="case.note", target=f"{writer}-{i}", case_no=CASE_A)
                    get_case(session, case_no=CASE_A, for_update=True)
                    record_audit(session, actor=None, action="case.note", target=f"{writer}-{i}b", case_no=CASE_A)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingesting, args=(seal,)) for seal in seals]
    threads += [threading.Thread(target=auditing, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not [t for t in threads if t.is_alive()] and errors == []
    assert assert_whole_tree(session_factory) == 3 * rounds
    with session_factory() as session:
        notes = [e for e, _ in log.audit_leaves_of_case(session, CASE_A) if e.action == "case.note"]
    assert len(notes) == 3 * rounds * 2


def test_migration_0012_gives_the_stored_entries_records_cases_and_leaves(
    engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingest(session_factory, tmp_path, seal, 4)
    downgrade(engine, "a3c7e1f5b920")
    with engine.begin() as conn:  # an entry written before 0012, of the case by its target
        conn.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, target, details) "
                "VALUES (CURRENT_TIMESTAMP, '-', 'case.update', :case, '{\"note\": \"旧\"}')"
            ),
            {"case": CASE_A},
        )
        conn.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, target, details) "
                "VALUES (CURRENT_TIMESTAMP, 'judge', 'alarm.ack', '7', :details)"
            ),
            {"details": f'{{"case_no": "{CASE_A}"}}'},
        )
    upgrade(engine)
    with session_factory() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert entries and all(entry.record == entry_record(entry) for entry in entries)
        old, ack = entries[-2:]
        assert (old.action, old.case_no, old.details) == ("case.update", CASE_A, {"note": "旧"})  # by its target
        assert (ack.action, ack.case_no) == ("alarm.ack", CASE_A)  # by its details
        assert json.loads(ack.record)["case_no"] == CASE_A
        assert all(log.leaf_of_audit(session, entry) is not None for entry in entries)
        assert {old.id, ack.id} <= {e.id for e, _ in log.audit_leaves_of_case(session, CASE_A)}
    assert assert_whole_tree(session_factory) == 4
    ingest(session_factory, tmp_path, seal, 1)  # and the log grows on
    with session_scope(session_factory) as session:
        record_audit(session, actor=None, action="case.note", target=CASE_A, case_no=CASE_A)
    assert assert_whole_tree(session_factory) == 5
