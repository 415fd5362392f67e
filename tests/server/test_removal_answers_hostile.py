"""A disarm's answers as a hostile network delivers them: out of order, twice, from another seal, naming another
command; the request must end saying what the seals signed, nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from seal_protocol import EventType
from server.app import create_app
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.config import CommandSettings, RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.removal.disarm import approve_request
from server.removal.steps import get_request
from tests.server.auth_helpers import add_user, make_settings
from tests.server.helpers import CASE_A, message
from tests.server.removal_world import RemovalWorld, c, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    settings = settings.model_copy(
        update={
            "commands": CommandSettings(signing_key_file=settings.commands.signing_key_file, ttl_s=60),
            "removal": RemovalSettings(proof_max_bytes=64 * 1024, proof_max_files=3),
        }
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def command(world: RemovalWorld, command_id: int) -> CourtCommand:
    with world.session_factory() as session:
        row = session.get(CourtCommand, command_id)
        assert row is not None
        return row


def test_a_replayed_refusal_stored_before_the_ack_it_follows_does_not_say_the_seal_refused(
    world: RemovalWorld,
) -> None:
    """The seal carried out the disarm (its ack, seq n) and answered a second delivery of it ``replayed`` (seq n+1);
    two ingest workers store n+1 first. ``replayed`` says the seal obeyed it already: it must not settle the
    command ``rejected`` (and the seal ``refused``) ahead of the ack that follows."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    seal, command_id = world.seals["seal-a2"], commands["seal-a2"].id
    ack = seal.event(EventType.COMMAND_ACK, {"command_id": command_id, "action": "disarm", "result": "disarmed"})
    replayed = seal.event(
        EventType.COMMAND_REJECTED,
        {"command_id": command_id, "reason": "replayed", "detail": f"id {command_id} is not above the last accepted"},
    )
    [first] = world.ingestor.ingest([message(seal.event_topic, replayed)])
    assert (first.command_answer, command(world, command_id).state) == ("replayed", "pending")
    assert [s["status"] for s in world.read(request_id, "judge")["seals"]] == ["disarmed", "sent"]
    [second] = world.ingestor.ingest([message(seal.event_topic, ack)])
    assert second.command_answer == "acknowledged"
    assert command(world, command_id).state == "acknowledged"
    shown = world.read(request_id, "judge")
    assert shown["state"] == "disarmed"
    assert [s["status"] for s in shown["seals"]] == ["disarmed", "disarmed"]


def _approval_in_progress(world: RemovalWorld, request_id: int) -> Session:
    """The judge's approval, done and not committed: the request's row locked (SQLite: the write lock held)."""
    session = world.session_factory()
    judge = get_user(session, username="judge")
    request = get_request(session, request_id=request_id, for_update=True)
    key = world.client.app.state.context.court_key.get()  # type: ignore[attr-defined]
    approve_request(
        session, actor=judge, request=request, reasons="准予", key=key, ttl=timedelta(seconds=60), now=utc_now()
    )
    return session


@pytest.mark.parametrize(("who", "action"), [("judge-2", "approve"), ("judge-2", "reject"), ("debtor", "cancel")])
def test_a_second_decision_while_the_approval_commits_waits_and_is_refused(
    world: RemovalWorld, who: str, action: str
) -> None:
    """Two judges at once (approve twice, approve and reject), or the debtor withdrawing as the judge approves: the
    second waits for the first and is a 409 naming ``disarm_pending`` — one decision, one disarm per seal."""
    add_user(world.session_factory, "judge-2", Role.JUDGE, (CASE_A,))
    request_id = world.filed()
    world.ok("judge", request_id, "review")
    body = {"note": "撤回"} if action == "cancel" else {"reasons": "另一法官的决定"}
    first = _approval_in_progress(world, request_id)
    try:
        answers: list[httpx.Response] = []
        second = threading.Thread(target=lambda: answers.append(world.act(who, request_id, action, body)))
        second.start()
        second.join(0.5)
        assert second.is_alive(), f"the second decision did not wait for the approval in progress: {answers[0].text}"
        first.commit()
    finally:
        first.close()
    second.join(15)
    [answer] = answers
    assert answer.status_code == 409 and answer.json()["state"] == "disarm_pending", answer.text
    shown = world.read(request_id, "judge")
    assert (shown["state"], [s["commands"] for s in shown["seals"]]) == ("disarm_pending", [1, 1])
    decisions = [s["action"] for s in shown["history"] if s["action"] in ("approve", "reject", "cancel")]
    assert decisions == ["approve"]


def test_acks_that_prove_nothing_for_the_request_change_nothing(world: RemovalWorld) -> None:
    """Another seal's ack naming this seal's disarm, an ack of another action, the same ack twice, and a late ack
    of a disarm the judge's withdrawal of the approval expired: none says a seal of the request is disarmed, none
    moves a request that is final."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    a1, a2 = commands["seal-a1"].id, commands["seal-a2"].id
    other, a1_seal = world.seals["seal-b"], world.seals["seal-a1"]
    foreign = other.event(EventType.COMMAND_ACK, {"command_id": a2, "action": "disarm", "result": "disarmed"})
    arm = a1_seal.event(EventType.COMMAND_ACK, {"command_id": a1, "action": "arm", "result": "armed"})
    answers = world.ingestor.ingest([message(other.event_topic, foreign), message(a1_seal.event_topic, arm)])
    assert [r.command_answer for r in answers] == ["unknown_command", "action_mismatch"]
    assert [s["status"] for s in world.read(request_id, "judge")["seals"]] == ["sent", "sent"]
    ack = a1_seal.event(EventType.COMMAND_ACK, {"command_id": a1, "action": "disarm", "result": "disarmed"})
    twice = world.ingestor.ingest([message(a1_seal.event_topic, ack), message(a1_seal.event_topic, ack)])
    assert [r.outcome.value for r in twice] == ["stored", "duplicate"]
    assert [s["status"] for s in world.read(request_id, "judge")["seals"]] == ["disarmed", "sent"]

    aborted = world.ok("judge", request_id, "abort", {"reasons": "债权人提出异议，撤销准予。"})
    assert aborted["state"] == "aborted" and command(world, a2).state == "expired"
    world.answer("seal-a2", a2)  # it had the disarm before the arm: it obeyed it, then the arm
    assert command(world, a2).state == "acknowledged"
    shown = world.read(request_id, "judge")
    assert shown["state"] == "aborted"
    status = world.client.get(f"/api/cases/{c(CASE_A)}", headers=world.as_("judge")).json()["status"]
    assert status == "sealed"


def test_a_seal_that_refused_one_copy_of_the_disarm_and_carried_out_another_counts_as_disarmed(
    world: RemovalWorld,
) -> None:
    """The dispatcher publishes a command again when the broker's PUBACK is lost, so a seal may get it twice. A seal
    booted with a clock behind (no RTC, before NTP) refuses the first copy ``not_yet_valid``; its clock set, it
    carries out the second and signs its ``command_ack``. The signed ack is what happened: the command is
    acknowledged and the seal disarmed, whichever answer the court stores first."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    seal, command_id = world.seals["seal-a2"], commands["seal-a2"].id
    refusal = {"command_id": command_id, "reason": "not_yet_valid", "detail": "issued in the future"}
    [refused] = world.ingestor.ingest([message(seal.event_topic, seal.event(EventType.COMMAND_REJECTED, refusal))])
    assert refused.command_answer == "rejected"
    assert [(s["status"], s["reason"]) for s in world.read(request_id, "judge")["seals"]][1] == (
        "refused",
        "not_yet_valid",
    )
    assert world.answer("seal-a2", command_id).command_answer == "acknowledged"
    row = command(world, command_id)
    assert (row.state, row.reason, row.result and row.result["result"]) == ("acknowledged", None, "disarmed")
    assert world.read(request_id)["state"] == "disarmed"
