"""A moved seal's picture that no stored event of it names is held back — quarantined ``wrong_case``, unreceipted,
so the seal keeps it and sends it again — until its naming event is stored, or until ``HOLD_BACK_LIMIT`` after the
seal's binding began (:func:`server.ingest.late_chain.recently_moved`, docs/protocol.md "Late events and the
chain"). Before, it was filed under the seal's new case meanwhile: case B's judge saw and downloaded case A's premises
photo, and for ever if A's event never came. A seal bound from stock, or bound again to its one case, files such a
picture at once, as before. Through the real ingest and the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select

from seal_protocol import EventType, snapshot_topic
from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory, session_scope
from server.ingest.models import QuarantinedMessage
from server.ingest.receipts import committed_hashes
from server.ingest.results import Outcome, Reason
from server.seals.registry import bind_seal, unbind_seal
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A, CASE_B, message, moved_long_ago
from tests.server.test_snapshot_case import assert_case_a_only, filed, move_to_case_b
from tests.verify.world import CourtWorld, build_world

HELD = (Outcome.QUARANTINED, Reason.WRONG_CASE, {})


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


def send(world: CourtWorld, seal: str, sha: str) -> tuple[Outcome, Reason | None, dict[str, list[str]]]:
    """The picture ``sha`` sent by ``seal`` in a batch of its own: its outcome and the hashes receipted."""
    batch = [message(snapshot_topic(world.seals[seal].device_id, sha), world.pictures[sha])]
    [result] = world.ingestor.ingest(batch)
    return result.outcome, result.reason, committed_hashes(batch, [result])


def not_in_case_b(world: CourtWorld, client: TestClient, sha: str) -> None:
    judge_b = bearer(world.session_factory, "judge-b")
    listed = client.get(f"/api/cases/{quote(CASE_B, safe='')}/snapshots", headers=judge_b)
    assert listed.status_code == 200 and sha not in {s["sha256"] for s in listed.json()}
    assert client.get(f"/api/snapshots/{sha}", headers=judge_b).status_code == 404


def test_a_moved_seal_s_unnamed_picture_is_held_back_until_its_event_of_the_old_case_is_stored(
    world: CourtWorld, client: TestClient, tmp_path: Path
) -> None:
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    naming = seal.event(EventType.INTRUSION, {"armed": True, "warning": "played", "snapshots": [sha]})  # in case A
    move_to_case_b(world)

    for _ in range(2):  # every time the seal sends it, until its event comes
        assert send(world, "a1", sha) == HELD
        assert filed(world, sha) == []
        not_in_case_b(world, client, sha)
    with world.session_factory() as session:
        query = select(QuarantinedMessage.reason, QuarantinedMessage.detail)
        [(reason, detail)] = session.execute(query.where(QuarantinedMessage.topic == snapshot_topic("seal-a1", sha)))
    assert reason == Reason.WRONG_CASE.value and "moved from another case" in detail

    [stored] = world.ingestor.ingest([message(seal.event_topic, naming)])  # late, signed in case A
    assert (stored.outcome, stored.case_no) == (Outcome.STORED, CASE_A)
    assert send(world, "a1", sha) == (Outcome.SNAPSHOT, None, {"seal-a1": [sha]})
    assert filed(world, sha) == [(CASE_A, "seal-a1")]
    assert_case_a_only(world, client, sha, tmp_path)


def test_a_seal_unbound_after_its_move_holds_back_its_unnamed_picture_too(
    world: CourtWorld, client: TestClient
) -> None:
    """Unbound, a seal's unnamed picture goes to its last case (B): held back alike while that binding is young."""
    sha = world.picture("a1", deliver=False)
    move_to_case_b(world)
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-a1")
    assert send(world, "a1", sha) == HELD
    not_in_case_b(world, client, sha)

    moved_long_ago(world.session_factory, "seal-a1")  # B's binding began more than a day ago: filed as before
    assert send(world, "a1", sha) == (Outcome.SNAPSHOT, None, {"seal-a1": [sha]})
    assert filed(world, sha) == [(CASE_B, "seal-a1")]


def test_a_seal_bound_from_stock_or_again_to_its_case_files_its_unnamed_picture_at_once(world: CourtWorld) -> None:
    """Seal b1 was bound to case B from stock a moment ago (build_world); seal a1 is unbound and bound to case A
    again: neither has another case whose pictures it could show."""
    fresh = world.picture("b1", deliver=False)
    assert send(world, "b1", fresh) == (Outcome.SNAPSHOT, None, {"seal-b1": [fresh]})
    assert filed(world, fresh) == [(CASE_B, "seal-b1")]

    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-a1")
    with session_scope(world.session_factory) as session:
        bind_seal(session, actor=None, device_id="seal-a1", case_no=CASE_A)
    again = world.picture("a1", deliver=False)
    assert send(world, "a1", again) == (Outcome.SNAPSHOT, None, {"seal-a1": [again]})
    assert filed(world, again) == [(CASE_A, "seal-a1")]


def test_after_the_limit_a_moved_seal_s_unnamed_picture_is_filed_in_its_case_and_follows_its_event(
    world: CourtWorld,
) -> None:
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    naming = seal.event(EventType.SNAPSHOT_TAKEN, {"snapshot": sha, "trigger": "command"})  # in case A
    move_to_case_b(world)
    assert send(world, "a1", sha) == HELD
    moved_long_ago(world.session_factory, "seal-a1")
    assert send(world, "a1", sha) == (Outcome.SNAPSHOT, None, {"seal-a1": [sha]})
    assert filed(world, sha) == [(CASE_B, "seal-a1")]
    world.ingestor.ingest([message(seal.event_topic, naming)])
    assert filed(world, sha) == [(CASE_A, "seal-a1")]


def test_a_moved_seal_s_picture_named_by_a_stored_event_costs_no_look_at_its_bindings(
    world: CourtWorld, engine: Engine
) -> None:
    """The usual order, the event first: the batch of its picture reads neither the seal's bindings nor the
    quarantine (what the hold-back reads only for a picture no stored event names)."""
    sha = world.picture("a1", deliver=False)
    move_to_case_b(world)
    world.send("a1", EventType.SNAPSHOT_TAKEN, {"snapshot": sha, "trigger": "command"})  # signed in case A
    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert send(world, "a1", sha) == (Outcome.SNAPSHOT, None, {"seal-a1": [sha]})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen and not [sql for sql in seen if "seal_bindings" in sql or "quarantine" in sql]
    assert filed(world, sha) == [(CASE_A, "seal-a1")]
