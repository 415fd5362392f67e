"""An export is consistent while the ingest writes: its bundle holds every event and audit entry of the case that is
in the log below its checkpoint, and none beyond it.

On PostgreSQL each statement of the export sees the rows committed before it (on SQLite the export's transaction
holds the write lock while it reads). The concurrent writer is put at the worst moment through the database's event
hook: right after the export has read the case's records, a seal's event of the case is stored and the checkpointer
signs a checkpoint that covers it (through the real ingest and checkpoint code, in sessions of their own)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select

from seal_verify import verify_bundle
from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory, session_scope
from server.evidence import log
from server.evidence.models import Event, LogLeaf
from tests.server.auth_helpers import add_user, bearer
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_download_route_exports_while_the_ingest_stores_on_sqlite(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """The route is a GET, whose session reads without SQLite's write lock; the export writes (its record, its audit
    entry) after minutes of staging and rendering. A seal's event stored meanwhile must neither fail the export (a
    read snapshot cannot become a write once another writer committed: SQLITE_BUSY_SNAPSHOT) nor be held up by it
    for longer than the export's reads."""
    world = build_world(session_factory, database_url, tmp_path)
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    stored: list[float] = []

    def store() -> None:
        started = time.monotonic()
        world.send("a1")
        stored.append(time.monotonic() - started)

    ingest = threading.Thread(target=store)

    def writer(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not ingest.is_alive() and not stored and "log_leaves.audit_id = audit_log.id" in statement:
            ingest.start()  # while the export goes on: it reads, stages, verifies, renders, records

    url = f"/api/cases/{quote(CASE_A, safe='')}/export.zip"
    event.listen(Engine, "after_cursor_execute", writer)  # the app's engine is its own
    try:
        with TestClient(create_app(world.settings, with_ingest=False), raise_server_exceptions=False) as client:
            answer = client.get(url, headers=bearer(session_factory, "judge-a"))
    finally:
        event.remove(Engine, "after_cursor_execute", writer)
        if ingest.is_alive() or stored:
            ingest.join(30)
    assert answer.status_code == 200, answer.text
    assert len(stored) == 1 and stored[0] < 5
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.case_no == CASE_A)) == 10
    assert verify_bundle(io.BytesIO(answer.content), log_key=world.log_key.verifier()).ok
