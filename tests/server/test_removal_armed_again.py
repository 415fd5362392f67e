"""A ``disarmed`` request (every seal acknowledged; the officers told to go on site) whose seal then says in a signed
event that it is armed again goes back to ``disarm_pending`` — the server's ``armed_again`` step, recorded and
audited — and the judge and the officers are told, naming the seals; the debtor, told before that an officer would
come, is told in neutral words that this no longer holds, and reads the truthful state. The settler does
it (woken by the ingest when a seal's event says it is armed, or by another process's event on the live feed), and
so does any read of the request or act on it before."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol.signing import generate_signing_key
from server.app import create_app, wake_on_seals
from server.audit.models import AuditEntry
from server.auth.users import get_user
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.live import Change
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.removal.disarm import resend_disarm
from server.removal.models import RemovalRequest
from server.removal.settler import RemovalSettler, settle_waiting
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, make_world

PARTIES = ("judge", "officer", "debtor", "creditor")


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def inbox(world: RemovalWorld, who: str) -> list[dict[str, Any]]:
    response = world.client.get("/api/me/inbox", headers=world.as_(who))
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()
    return messages


def state_of(world: RemovalWorld, request_id: int) -> str:
    """As stored: no read that would settle it."""
    with world.session_factory() as session:
        request = session.get(RemovalRequest, request_id)
        assert request is not None
        return request.state


def disarmed(world: RemovalWorld) -> int:
    """A request both of whose seals acknowledged the disarm, settled ``disarmed``."""
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    assert world.read(request_id, "judge")["state"] == "disarmed"
    return request_id


def chinese_first(note: str) -> bool:
    return bool(re.search(r"[\u3400-\u9fff]", note.split(" / ")[0]))


def assert_debtor_told_it_went_back(told: dict[str, Any]) -> None:
    """The debtor's message on ``armed_again``: what happened and what comes next, Chinese first, naming no seal."""
    zh, en = told["text_zh"], told["text_en"]
    assert "签名消息" in zh and "等待封条解除布防" in zh and "暂不会到场拆除" in zh, zh
    assert "signed message" in en and "back to “Waiting for the seals to disarm”" in en and "for now" in en, en
    assert "seal-a" not in zh + en and "确认解除布防（或经法官决定" not in zh


def test_a_seal_armed_again_takes_the_request_back_and_the_judge_and_officers_are_told(world: RemovalWorld) -> None:
    request_id = disarmed(world)
    before = {who: len(inbox(world, who)) for who in PARTIES}
    world.heard("seal-a2", armed=True)  # its signed heartbeat, after its ack: armed

    judge = world.read(request_id, "judge")
    assert judge["state"] == "disarm_pending" and judge["disarmed_at"] is None
    assert [(s["device_id"], s["status"]) for s in judge["seals"]] == [("seal-a1", "disarmed"), ("seal-a2", "rearmed")]
    step = judge["history"][-1]
    assert (step["action"], step["actor"], step["from_state"], step["to_state"]) == (
        "armed_again",
        "-",
        "disarmed",
        "disarm_pending",
    )
    assert "seal-a2" in step["note"] and "seal-a1" not in step["note"] and chinese_first(step["note"])

    after = {who: inbox(world, who) for who in PARTIES}
    for who in ("judge", "officer"):
        [told] = after[who][: len(after[who]) - before[who]]
        assert told["kind"] == "removal.armed_again", who
        assert "seal-a2" in told["text_zh"] and "等待封条解除布防" in told["text_zh"]
        assert "seal-a2" in told["text_en"] and "do not remove the seals" in told["text_en"]
    # The debtor, told before that an officer would come, reads that it no longer holds: no seal named, no word
    # that a seal acknowledged (the same words whether the seal had, or was lifted without its ack).
    [told] = after["debtor"][: len(after["debtor"]) - before["debtor"]]
    assert told["kind"] == "removal.armed_again" and told["ref"] == f"removal-request:{request_id}"
    assert_debtor_told_it_went_back(told)
    assert len(after["creditor"]) == before["creditor"]

    debtor = world.read(request_id, "debtor")
    assert (debtor["state"], debtor["state_zh"]) == ("disarm_pending", "等待封条解除布防")
    assert debtor["history"][-1]["action"] == "court_processing" and "seal-a2" not in str(debtor["history"])

    with world.session_factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "removal.armed_again")).all()
    assert entry.actor_id is None and entry.case_no == CASE_A and entry.details is not None
    assert (entry.details["from"], entry.details["to"]) == ("disarmed", "disarm_pending")
    assert entry.details["armed_again"]["seal-a2"]["status"] == "rearmed"

    # The officer is refused, naming the seal; a new disarm, acknowledged, makes it disarmed again.
    refused = world.act("officer", request_id, "lifted", {})
    assert refused.status_code == 409 and "seal-a2" in refused.json()["detail"] and "armed again" in refused.text
    assert refused.json()["state"] == "disarm_pending"
    again = world.ok("judge", request_id, "resend-disarm", {"note": "封条又被布防"})
    assert again["state"] == "disarm_pending" and [s["commands"] for s in again["seals"]] == [1, 2]
    world.answer("seal-a2", again["seals"][1]["command_id"])
    assert world.read(request_id, "judge")["state"] == "disarmed"
    assert [m["kind"] for m in inbox(world, "officer")].count("removal.disarmed") == 2
    assert [m["kind"] for m in inbox(world, "debtor")].count("removal.disarmed") == 2  # told again, as at first
    assert world.ok("officer", request_id, "lifted", {})["state"] == "lifted"


def test_the_settler_takes_back_a_disarmed_request_whose_seal_says_it_is_armed(world: RemovalWorld) -> None:
    """No one reads the request: the settler's round moves it, once."""
    request_id = disarmed(world)
    world.heard("seal-a1", armed=False)  # disarmed by its own word: nothing moves
    assert settle_waiting(world.session_factory, now=utc_now()) == []
    world.heard("seal-a1", armed=True)
    assert state_of(world, request_id) == "disarmed"
    assert settle_waiting(world.session_factory, now=utc_now()) == [request_id]
    assert state_of(world, request_id) == "disarm_pending"
    assert settle_waiting(world.session_factory, now=utc_now()) == []  # it waits for a new disarm's ack


def test_a_seal_lifted_without_its_ack_heard_armed_takes_the_request_back(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.expire(commands["seal-a2"].id)
    body = {"device_ids": ["seal-a2"], "reasons": "封条失联"}
    assert world.ok("judge", request_id, "lift-without-ack", body)["state"] == "disarmed"
    world.heard("seal-a2", armed=True)  # back online, and armed: the decision no longer covers it
    assert settle_waiting(world.session_factory, now=utc_now()) == [request_id]
    judge = world.read(request_id, "judge")
    assert judge["state"] == "disarm_pending" and judge["seals"][1]["status"] == "waiting_for_seal"
    assert "removal.armed_again" in [m["kind"] for m in inbox(world, "officer")]
    # The debtor reads the same words as when a seal that had acknowledged is armed again (which seal was lifted
    # without its ack is not theirs to learn), and sees each seal pending (no seal's armed state while it is open).
    [told] = [m for m in inbox(world, "debtor") if m["kind"] == "removal.armed_again"]
    assert_debtor_told_it_went_back(told)
    assert [s["status"] for s in world.read(request_id, "debtor")["seals"]] == ["pending", "pending"]


def test_a_seal_armed_just_before_a_resend_is_taken_back_by_the_server_first(world: RemovalWorld) -> None:
    """The judge's re-send settles the request first (nothing to do: every seal stands disarmed); a seal's signed
    heartbeat saying it is armed is stored just after, before the re-send reads the seals. The re-send does not move
    the ``disarmed`` request back itself, unannounced: the server's ``armed_again`` does, telling the officers and
    the debtor (told to go on site / that an officer will come), then the disarm is re-sent."""
    request_id = disarmed(world)
    assert settle_waiting(world.session_factory, now=utc_now()) == []  # the route's settled_first: nothing
    world.heard("seal-a2", armed=True)  # stored by the ingest, which does not wait for the request's lock
    with session_scope(world.session_factory) as session:
        request = session.get(RemovalRequest, request_id, with_for_update=True)
        assert request is not None and request.state == "disarmed"
        judge = get_user(session, username="judge")
        key, ttl = generate_signing_key(), timedelta(minutes=1)
        resend_disarm(session, actor=judge, request=request, device_id=None, note="", key=key, ttl=ttl, now=utc_now())
    shown = world.read(request_id, "judge")
    moves = [(s["action"], s["actor"], s["from_state"], s["to_state"]) for s in shown["history"][-2:]]
    assert moves == [
        ("armed_again", "-", "disarmed", "disarm_pending"),
        ("resend_disarm", "judge", "disarm_pending", "disarm_pending"),
    ]
    assert [s["commands"] for s in shown["seals"]] == [1, 2]
    for who in ("judge", "officer", "debtor"):
        assert [m["kind"] for m in inbox(world, who)].count("removal.armed_again") == 1, who
    [told] = [m for m in inbox(world, "debtor") if m["kind"] == "removal.armed_again"]
    assert_debtor_told_it_went_back(told)


def test_the_ingest_wakes_the_settler_after_an_event_saying_armed(
    world: RemovalWorld, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The ingest knows nothing of removal requests: it calls back after committing an event saying the seal is
    armed (not one saying it is disarmed), and the settler finds the request to take back."""
    request_id = disarmed(world)
    rounds: list[list[int]] = []
    world.ingestor = Ingestor(
        session_factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path / "snapshots",
        on_armed=lambda: rounds.append(settle_waiting(session_factory, now=utc_now())),
    )
    world.heard("seal-a2", armed=False)
    assert rounds == []
    world.heard("seal-a2", armed=True)
    assert rounds == [[request_id]] and state_of(world, request_id) == "disarm_pending"


def test_another_process_s_event_on_the_live_feed_wakes_the_settler() -> None:
    """A ``seal-server ingest`` worker stores the event: its change on the feed wakes this process's settler."""
    woken: list[str] = []

    class Settler:
        def wake(self) -> None:
            woken.append("wake")

    received = wake_on_seals(cast(RemovalSettler, Settler()))
    received([Change("status", "seal-a2", CASE_A), Change("alarm", "seal-a2", CASE_A)])
    assert woken == []
    received([Change("event", "seal-a2", CASE_A)])
    assert woken == ["wake"]
