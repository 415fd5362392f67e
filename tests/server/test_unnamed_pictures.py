"""A seal's budget of pictures no stored event of it names (:mod:`server.ingest.unnamed_budget`), through the real
ingest and the API, on SQLite and PostgreSQL: whoever holds a seal's MQTT password can publish valid JPEGs on its
snapshot topic; past the budget such a picture is refused (``unnamed_snapshots``, unreceipted, not written to the
store), while a genuine picture still gets in — before its event while under the budget, or sent again once its event
is stored — and a named one is never refused. The case's listing says which pictures an event of the case names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType, snapshot_topic
from server.app import create_app
from server.auth.access import Role
from server.config_sections import IngestSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.receipts import committed_hashes
from server.ingest.results import IngestResult, Outcome, Reason
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A, message
from tests.verify.world import CourtWorld, build_world

#: How many of the test's pictures (all about the same size) the budget takes.
BUDGET_PICTURES = 3


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    built = build_world(session_factory, database_url, tmp_path)
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    return built


@pytest.fixture
def client(world: CourtWorld) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings, with_ingest=False)) as instance:
        yield instance


def budgeted(world: CourtWorld, budget: int) -> None:
    """The world's ingest with a budget of ``budget`` bytes of unnamed pictures per seal."""
    settings = IngestSettings(unnamed_snapshot_seal_bytes=budget)
    world.ingestor = Ingestor(
        world.session_factory, metrics=IngestMetrics(), snapshot_dir=world.settings.snapshot_dir, ingest=settings
    )


def send(world: CourtWorld, seal: str, sha: str) -> IngestResult:
    topic = snapshot_topic(world.seals[seal].device_id, sha)
    messages = [message(topic, world.pictures[sha])]
    [result] = world.ingestor.ingest(messages)
    if result.outcome is Outcome.QUARANTINED:  # the seal keeps it and sends it again
        assert committed_hashes(messages, [result]) == {}, result
    return result


def in_store(world: CourtWorld) -> set[str]:
    return {path.stem for path in world.settings.snapshot_dir.rglob("*.jpg")}


def listing(world: CourtWorld, client: TestClient, query: str = "") -> dict[str, bool]:
    """The case A snapshots of seal a1 the API lists: sha256 -> named."""
    headers = bearer(world.session_factory, "judge-a")
    response = client.get(f"/api/cases/{quote(CASE_A, safe='')}/snapshots{query}", headers=headers)
    assert response.status_code == 200, response.text
    return {s["sha256"]: s["named"] for s in response.json() if s["device_id"] == "seal-a1"}


def fill(world: CourtWorld) -> list[str]:
    """Pictures no event names, injected on seal a1's topic under a budget of BUDGET_PICTURES of them: those stored."""
    shas = [world.picture("a1", deliver=False) for _ in range(BUDGET_PICTURES)]
    budgeted(world, sum(len(world.pictures[sha]) for sha in shas))
    for sha in shas:
        assert send(world, "a1", sha).outcome is Outcome.SNAPSHOT
    return shas


def test_past_the_budget_pictures_no_event_names_are_refused_unreceipted_and_not_stored(
    world: CourtWorld, client: TestClient
) -> None:
    before = in_store(world)
    stored = fill(world)
    for _ in range(10):
        sha = world.picture("a1", deliver=False)
        result = send(world, "a1", sha)
        assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.UNNAMED_SNAPSHOTS), result
        assert "named by no stored event" in result.detail
    assert in_store(world) - before == set(stored)  # the store grows by the budget, not by what is sent
    metrics = world.ingestor.metrics.registry
    assert metrics.get_sample_value("seal_messages_rejected_total", {"reason": "unnamed_snapshots"}) == 10
    listed = listing(world, client)
    assert {sha for sha, named in listed.items() if not named} == set(stored)
    assert set(listing(world, client, "?named=false")) == set(stored)
    assert not set(listing(world, client, "?named=true")) & set(stored)
    # A redelivery of a stored picture is a duplicate (receipted), not refused; another seal has its own budget.
    assert send(world, "a1", stored[0]).outcome is Outcome.DUPLICATE
    assert send(world, "a2", world.picture("a2", deliver=False)).outcome is Outcome.SNAPSHOT


def test_bytes_another_seal_delivered_count_against_the_seal_that_sends_them(world: CourtWorld) -> None:
    """Already in the store (another seal's delivery), they are not written again before the transaction: the
    budget inside it refuses them."""
    shared = world.picture("a2")
    fill(world)
    result = send(world, "a1", shared)
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.UNNAMED_SNAPSHOTS), result


def test_a_genuine_picture_gets_in_before_its_event_under_the_budget_and_after_it_past_the_budget(
    world: CourtWorld, client: TestClient
) -> None:
    budgeted(world, 1024 * 1024)
    first = world.picture("a1", deliver=False)
    assert send(world, "a1", first).outcome is Outcome.SNAPSHOT  # before its event: filed provisionally
    assert listing(world, client)[first] is False
    world.send("a1", EventType.SNAPSHOT_TAKEN, {"snapshots": [first], "trigger": "command"})
    assert listing(world, client)[first] is True
    assert first in listing(world, client, "?named=true")

    fill(world)
    early = world.picture("a1", deliver=False)
    result = send(world, "a1", early)  # before its event, past the budget: the seal keeps it
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.UNNAMED_SNAPSHOTS), result
    assert early not in in_store(world)
    world.send("a1", EventType.SNAPSHOT_TAKEN, {"snapshots": [early], "trigger": "command"})
    assert send(world, "a1", early).outcome is Outcome.SNAPSHOT  # sent again: named, never refused by the budget
    assert listing(world, client)[early] is True

    # An event naming a picture and the picture in one batch: named, never refused by the budget.
    late = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    event = seal.event(EventType.SNAPSHOT_TAKEN, {"snapshots": [late], "trigger": "command"})
    both = [message(seal.event_topic, event), message(snapshot_topic(seal.device_id, late), world.pictures[late])]
    assert [r.outcome for r in world.ingestor.ingest(both)] == [Outcome.STORED, Outcome.SNAPSHOT]
    assert listing(world, client)[late] is True
