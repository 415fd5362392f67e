"""A picture is evidence of the case whose signed events from its seal name it, whichever case the seal is bound to
when the picture arrives (:mod:`server.ingest.snapshot_filing`): a seal moved from case A to case B still drains
case A's pictures from its outbox. Both orders, through the real ingest, the export and the API, on SQLite and
PostgreSQL (and two workers storing the picture and its naming event at once); and migration 0014's backfill,
which files again the pictures stored before it. A moved seal's picture that comes first waits for its event (held
back: test_moved_seal_pictures.py) unless the move is more than ``HOLD_BACK_LIMIT`` old."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, event, insert, select, update

from seal_protocol import EventType, snapshot_topic
from server.app import create_app
from server.auth.access import Role
from server.core.base import utc_now
from server.core.db import SessionFactory, make_engine, make_session_factory, session_scope
from server.core.metrics import IngestMetrics
from server.evidence.models import Snapshot, SnapshotName
from server.ingest.ingestor import Ingestor
from server.ingest.results import Outcome
from server.migrations.run import current_revision, downgrade, upgrade
from server.seals.registry import bind_seal, unbind_seal
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A, CASE_B, message, moved_long_ago
from tests.server.pg_locks import Side, wait_for_lock_waits
from tests.verify.world import CourtWorld, build_world

#: How :meth:`~server.ingest.snapshot_filing.SnapshotFiling.write` reads the pictures' names, once the seals' rows are
#: locked.
NAMES_READ = "SELECT snapshot_names.sha256, snapshot_names.device_id, snapshot_names.case_no"
#: 0013_evidence_exports: the revision before the pictures' names.
BEFORE_NAMES = "3c7e1a9f5d20"


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    built = build_world(session_factory, database_url, tmp_path)
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    add_user(session_factory, "judge-b", Role.JUDGE, (CASE_B,))
    return built


@pytest.fixture
def client(world: CourtWorld) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings, with_ingest=False)) as instance:
        yield instance


def move_to_case_b(world: CourtWorld, seal: str = "a1", *, long_ago: bool = False) -> None:
    """``long_ago``: bound to case B more than ``HOLD_BACK_LIMIT`` ago, so that the seal's pictures no event names
    are filed under case B meanwhile, not held back (test_moved_seal_pictures.py)."""
    device_id = world.seals[seal].device_id
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id=device_id)
    with session_scope(world.session_factory) as session:
        bind_seal(session, actor=None, device_id=device_id, case_no=CASE_B)
    if long_ago:
        moved_long_ago(world.session_factory, device_id)


def deliver(world: CourtWorld, seal: str, sha: str) -> Outcome:
    topic = snapshot_topic(world.seals[seal].device_id, sha)
    [result] = world.ingestor.ingest([message(topic, world.pictures[sha])])
    return result.outcome


def bundle(world: CourtWorld, case_no: str, target: Path) -> tuple[dict[str, dict], list[str]]:
    """The bundle's snapshot records by hash, and its members."""
    with zipfile.ZipFile(world.export(case_no, target).path) as z:
        records = [json.loads(line) for line in z.read("snapshots.jsonl").splitlines()]
        return {r["sha256"]: r for r in records}, z.namelist()


def filed(world: CourtWorld, sha: str) -> list[tuple[str, str]]:
    with world.session_factory() as session:
        rows = session.execute(select(Snapshot.case_no, Snapshot.device_id).where(Snapshot.sha256 == sha))
        return sorted((case_no, device_id) for case_no, device_id in rows)


def assert_case_a_only(world: CourtWorld, client: TestClient, sha: str, tmp_path: Path) -> None:
    records, members = bundle(world, CASE_A, tmp_path / "a.zip")
    assert records[sha]["present"] is True and records[sha]["received_at"] is not None
    assert f"snapshots/{sha}.jpg" in members
    _, members_b = bundle(world, CASE_B, tmp_path / "b.zip")
    assert f"snapshots/{sha}.jpg" not in members_b
    judge_b = bearer(world.session_factory, "judge-b")
    listed = client.get(f"/api/cases/{quote(CASE_B, safe='')}/snapshots", headers=judge_b)
    assert listed.status_code == 200 and sha not in {s["sha256"] for s in listed.json()}
    assert client.get(f"/api/snapshots/{sha}", headers=judge_b).status_code == 404
    judge_a = bearer(world.session_factory, "judge-a")
    picture = client.get(f"/api/snapshots/{sha}", headers=judge_a)
    assert (picture.status_code, picture.content) == (200, world.pictures[sha])


def test_a_picture_named_before_the_seal_moved_is_filed_under_the_naming_case(
    world: CourtWorld, client: TestClient, tmp_path: Path
) -> None:
    sha = world.picture("a1", deliver=False)
    world.send("a1", EventType.INTRUSION, {"armed": True, "warning": "played", "snapshots": [sha]})
    move_to_case_b(world)
    assert deliver(world, "a1", sha) is Outcome.SNAPSHOT  # stored: receipted
    assert filed(world, sha) == [(CASE_A, "seal-a1")]
    assert_case_a_only(world, client, sha, tmp_path)
    assert deliver(world, "a1", sha) is Outcome.DUPLICATE  # a redelivery adds nothing (and is receipted)


def test_a_moved_seal_s_picture_delivered_before_the_event_that_names_it_waits_for_that_event(
    world: CourtWorld, client: TestClient, tmp_path: Path
) -> None:
    """No event names it yet and the seal was moved less than a day ago: it may be case A's, so it is held back
    (quarantined, unreceipted: the seal sends it again), never shown to case B meanwhile."""
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    signed = seal.event(EventType.SNAPSHOT_TAKEN, {"snapshot": sha, "trigger": "command"})  # while in case A
    move_to_case_b(world)
    assert deliver(world, "a1", sha) is Outcome.QUARANTINED
    assert filed(world, sha) == []
    judge_b = bearer(world.session_factory, "judge-b")
    listed = client.get(f"/api/cases/{quote(CASE_B, safe='')}/snapshots", headers=judge_b)
    assert listed.status_code == 200 and sha not in {s["sha256"] for s in listed.json()}
    assert client.get(f"/api/snapshots/{sha}", headers=judge_b).status_code == 404
    [result] = world.ingestor.ingest([message(seal.event_topic, signed)])
    assert (result.outcome, result.case_no) == (Outcome.STORED, CASE_A)
    assert deliver(world, "a1", sha) is Outcome.SNAPSHOT  # sent again: filed under its event's case
    assert filed(world, sha) == [(CASE_A, "seal-a1")]
    assert_case_a_only(world, client, sha, tmp_path)


def test_a_picture_delivered_a_day_after_the_move_before_its_event_moves_to_the_event_s_case(
    world: CourtWorld, client: TestClient, tmp_path: Path
) -> None:
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    signed = seal.event(EventType.SNAPSHOT_TAKEN, {"snapshot": sha, "trigger": "command"})  # while in case A
    move_to_case_b(world, long_ago=True)
    assert deliver(world, "a1", sha) is Outcome.SNAPSHOT
    assert filed(world, sha) == [(CASE_B, "seal-a1")]  # no event names it yet: the seal's case, meanwhile
    [result] = world.ingestor.ingest([message(seal.event_topic, signed)])
    assert result.outcome is Outcome.STORED
    assert filed(world, sha) == [(CASE_A, "seal-a1")]
    assert_case_a_only(world, client, sha, tmp_path)


def test_the_same_bytes_named_by_two_cases_stay_in_both(world: CourtWorld, client: TestClient, tmp_path: Path) -> None:
    """Two covered lenses give the same black frame: case B's own seal names it too. The copy seal a1 delivered to
    case B (provisionally) goes to case A with a1's late event; case B holds the bytes once its own seal's copy is
    delivered (each seal's delivery its own row: neither can take the other's from a case)."""
    sha = world.picture("a1", deliver=False)
    late = world.seals["a1"].event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]})  # in case A
    move_to_case_b(world, long_ago=True)
    assert deliver(world, "a1", sha) is Outcome.SNAPSHOT  # in case B, meanwhile
    world.send("b1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [sha]})
    world.ingestor.ingest([message(world.seals["a1"].event_topic, late)])
    assert filed(world, sha) == [(CASE_A, "seal-a1")]
    assert deliver(world, "b1", sha) is Outcome.SNAPSHOT  # b1's own copy, filed under b1's naming case
    assert filed(world, sha) == [(CASE_A, "seal-a1"), (CASE_B, "seal-b1")]
    assert deliver(world, "b1", sha) is Outcome.DUPLICATE
    for case_no, judge in ((CASE_A, "judge-a"), (CASE_B, "judge-b")):
        records, _ = bundle(world, case_no, tmp_path / f"{judge}.zip")
        assert records[sha]["present"] is True
        listed = client.get(
            f"/api/cases/{quote(case_no, safe='')}/snapshots", headers=bearer(world.session_factory, judge)
        )
        assert sha in {s["sha256"] for s in listed.json()}


@pytest.mark.parametrize("first", ["event", "picture"])
def test_two_workers_storing_a_picture_and_its_naming_event_at_once_file_it_under_the_naming_case(
    world: CourtWorld, pg_engine: Engine, tmp_path: Path, first: str
) -> None:
    """The first worker stops right after it read the pictures' names, its seal's row locked; the second must wait
    for that lock (else it reads before the first commits, and the picture stays in case B either way)."""
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    signed = seal.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]})  # while in case A
    move_to_case_b(world, long_ago=True)  # the picture alone is filed in case B, not held back
    messages = {
        "event": message(seal.event_topic, signed),
        "picture": message(snapshot_topic(seal.device_id, sha), world.pictures[sha]),
    }
    factory = make_session_factory(pg_engine)
    workers = {
        kind: Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots") for kind in messages
    }
    reached, go, paused = threading.Event(), threading.Event(), threading.local()

    def pause(conn: object, cursor: object, statement: str, *args: object) -> None:
        # the filing's read of the names (not the budget's, made before the transaction: server.ingest.unnamed_budget)
        if getattr(paused, "here", False) and statement.startswith(NAMES_READ):
            paused.here = False
            reached.set()
            assert go.wait(30)

    def ingest(kind: str, *, stop: bool) -> list[Outcome]:
        paused.here = stop
        return [r.outcome for r in workers[kind].ingest([messages[kind]])]

    second = "picture" if first == "event" else "event"
    event.listen(pg_engine, "after_cursor_execute", pause)
    try:
        one = Side(lambda: ingest(first, stop=True))
        assert reached.wait(30)
        other = Side(lambda: ingest(second, stop=False))
        wait_for_lock_waits(pg_engine, 1)  # the second waits for the seal's row
        go.set()
        assert one.join() + other.join() in ([Outcome.STORED, Outcome.SNAPSHOT], [Outcome.SNAPSHOT, Outcome.STORED])
    finally:
        go.set()
        event.remove(pg_engine, "after_cursor_execute", pause)
    assert filed(world, sha) == [(CASE_A, "seal-a1")]


def test_the_migration_names_the_stored_pictures_and_files_the_misfiled_ones_again(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        head = current_revision(engine)
        factory = make_session_factory(engine)
        world = build_world(factory, database_url, tmp_path)
        sha = world.picture("a1", deliver=False)
        world.send("a1", EventType.INTRUSION, {"armed": True, "warning": "played", "snapshots": [sha]})
        move_to_case_b(world, long_ago=True)
        deliver(world, "a1", sha)
        unnamed = world.picture("a1")  # no event names it: it stays in the seal's case
        with session_scope(factory) as session:  # as the ingest filed it before the names existed
            session.execute(update(Snapshot).where(Snapshot.sha256 == sha).values(case_no=CASE_B))
            before = set(session.execute(select(SnapshotName.sha256, SnapshotName.device_id, SnapshotName.case_no)))
            session.execute(delete(SnapshotName))
        assert (sha, "seal-a1", CASE_A) in before
        downgrade(engine, BEFORE_NAMES)
        upgrade(engine)
        assert current_revision(engine) == head
        with factory() as session:
            after = set(session.execute(select(SnapshotName.sha256, SnapshotName.device_id, SnapshotName.case_no)))
        assert after == before
        assert filed(world, sha) == [(CASE_A, "seal-a1")]
        assert filed(world, unnamed) == [(CASE_B, "seal-a1")]
        records, _ = bundle(world, CASE_A, tmp_path / "a.zip")
        assert records[sha]["present"] is True
    finally:
        engine.dispose()


def test_the_case_s_snapshots_are_listed_in_pages(world: CourtWorld, client: TestClient) -> None:
    """A case with thousands of pictures is listed a page at a time, newest first, each page ``before`` the last
    one's id; a page larger than the maximum is refused (422), not answered whole."""
    row = {"device_id": "seal-a1", "case_no": CASE_A, "size": 1, "received_at": utc_now()}
    with session_scope(world.session_factory) as session:
        session.execute(insert(Snapshot), [{**row, "sha256": f"{n:064x}"} for n in range(7)])
    headers = bearer(world.session_factory, "judge-a")
    url = f"/api/cases/{quote(CASE_A, safe='')}/snapshots"
    whole = client.get(url, headers=headers).json()  # the world's pictures and these: under the default page
    assert [s["sha256"] for s in whole[:7]] == [f"{n:064x}" for n in reversed(range(7))]
    seen: list[dict[str, object]] = []
    query = "?limit=3"
    while True:
        page = client.get(url + query, headers=headers).json()
        assert len(page) <= 3
        seen += page
        if len(page) < 3:
            break
        query = f"?limit=3&before={page[-1]['id']}"
    assert seen == whole
    assert client.get(url + "?limit=501", headers=headers).status_code == 422
