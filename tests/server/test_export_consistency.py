"""An export is consistent while the ingest writes: its bundle holds every event and audit entry of the case that is
in the log below its checkpoint, and none beyond it.

On PostgreSQL each statement of the export sees the rows committed before it (on SQLite the export's transaction
holds the write lock while it reads). The concurrent writer is put at the worst moment through the database's event
hook: right after the export has read the case's records, a seal's event of the case is stored and the checkpointer
signs a checkpoint that covers it (through the real ingest and checkpoint code, in sessions of their own)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from server.core.db import SessionFactory, session_scope
from server.evidence import log
from server.evidence.models import Event, LogLeaf
from tests.server.helpers import CASE_A
from tests.verify.world import build_world


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_an_event_stored_and_checkpointed_while_the_export_reads_is_in_the_bundle_or_beyond_its_checkpoint(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    with session_factory() as session:
        engine = session.get_bind()
    fired: list[bytes] = []

    def writer(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fired or "log_leaves.audit_id = audit_log.id" not in statement:
            return
        fired.append(world.send("a1"))
        with session_scope(session_factory) as other:
            assert log.make_checkpoint(other, world.log_key) is not None

    event.listen(engine, "after_cursor_execute", writer)
    try:
        world.export(CASE_A, tmp_path / "case.zip")
    finally:
        event.remove(engine, "after_cursor_execute", writer)
    assert fired

    with zipfile.ZipFile(tmp_path / "case.zip") as bundle:
        size = json.loads(bundle.read("manifest.json"))["checkpoint_size"]
        events = [json.loads(line) for line in bundle.read("events-meta.jsonl").splitlines()]
        audit = [json.loads(line) for line in bundle.read("audit-meta.jsonl").splitlines()]
    with session_factory() as session:
        logged = session.execute(
            select(Event.event_id, LogLeaf.leaf_index)
            .join(LogLeaf, LogLeaf.event_id == Event.id)
            .where(Event.case_no == CASE_A, LogLeaf.leaf_index < size)
        ).all()
        entries = [leaf.leaf_index for _, leaf in log.audit_leaves_of_case(session, CASE_A) if leaf.leaf_index < size]
    assert sorted(e["leaf_index"] for e in events) == sorted(index for _, index in logged)
    assert all(e["leaf_index"] < size for e in events + audit)
    assert sorted(e["leaf_index"] for e in audit) == sorted(entries)
