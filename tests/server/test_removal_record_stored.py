"""A final request's record of its seals is the one its final step read and stored, exactly: an ack is stamped when
the ingest received it, not when it committed, so no cut-off by time can tell what the lifting or the abort counted.
And the steps are dated no earlier than the answers they counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from seal_protocol import EventType
from server.app import create_app
from server.auth.models import User
from server.commands.models import CourtCommand
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.ingest.results import Message, Outcome
from server.removal.disarm import settle
from server.removal.lifting import confirm_lifted
from server.removal.models import RemovalRequest, RemovalStep
from server.removal.settler import settle_waiting
from server.removal.steps import get_request
from tests.server.auth_helpers import make_settings
from tests.server.removal_world import RemovalWorld, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def seals_of(shown: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["device_id"], s["status"], s["command_state"]) for s in shown["seals"]]


def test_a_lifting_keeps_the_ack_received_after_the_officer_read_the_clock(world: RemovalWorld) -> None:
    """The officer's lifting reads the clock; seal-a2's last ack is then received and committed before the lifting
    settles and lifts the request (on PostgreSQL nothing keeps the ingest out meanwhile). The lifted request shows
    seal-a2 disarmed by that ack — not waiting for it, its command expired, beside the ``lifted`` it allowed — and
    its history is dated no earlier than the ack."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    read_the_clock = utc_now()
    time.sleep(0.002)
    assert world.answer("seal-a2", commands["seal-a2"].id).outcome == Outcome.STORED
    with world.session_factory() as session:
        officer = session.scalars(select(User).where(User.username == "officer")).one()
        request = get_request(session, request_id=request_id, for_update=True)
        assert settle(session, request_id=request_id, now=read_the_clock)
        confirm_lifted(session, actor=officer, request=request, note="现场拆除", now=read_the_clock)
        session.commit()

    shown = world.read(request_id, "judge")
    assert shown["state"] == "lifted"
    assert seals_of(shown) == [("seal-a1", "disarmed", "acknowledged"), ("seal-a2", "disarmed", "acknowledged")]
    with world.session_factory() as session:
        ack = session.get(CourtCommand, commands["seal-a2"].id)
        request = session.get(RemovalRequest, request_id)
        assert ack is not None and ack.answered_at is not None and request is not None
        assert ack.answered_at > read_the_clock
        assert request.disarmed_at is not None and request.lifted_at is not None
        assert ack.answered_at <= request.disarmed_at <= request.lifted_at == request.updated_at
        steps = [step.at for step in request.steps]
        assert steps == sorted(steps)


def test_an_aborted_request_keeps_its_record_when_an_ack_received_before_commits_after(world: RemovalWorld) -> None:
    """seal-a2's ack is received before the judge aborts, and committed after (a batch in flight, or held back by
    the ingest's wait for a gap): its receipt time is earlier than the abort's, yet the abort did not count it, and
    the aborted request's record stays as it was."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    seal = world.seals["seal-a2"]
    payload = {"command_id": commands["seal-a2"].id, "action": "disarm", "result": "disarmed"}
    data = seal.event(EventType.COMMAND_ACK, payload)
    received = utc_now()
    aborted = world.ok("judge", request_id, "abort", {"reasons": "撤回批准"})
    assert seals_of(aborted) == [("seal-a1", "disarmed", "acknowledged"), ("seal-a2", "withdrawn", "withdrawn")]
    [result] = world.ingestor.ingest([Message(seal.event_topic, data, received)])
    assert result.outcome == Outcome.STORED, result

    later = world.read(request_id, "judge")
    assert later["state"] == "aborted"
    assert seals_of(later) == seals_of(aborted)


def test_a_request_made_final_before_records_were_stored_is_rebuilt_as_of_its_last_step(world: RemovalWorld) -> None:
    """A request lifted before its final step stored the record (migration 0019) is shown as before: rebuilt from
    its seals' answers and events as of its last step."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    for device_id in ("seal-a1", "seal-a2"):
        world.answer(device_id, commands[device_id].id)
    assert world.read(request_id)["state"] == "disarmed"
    lifted = world.ok("officer", request_id, "lifted", {"note": "现场拆除"})
    with world.session_factory() as session:
        session.execute(update(RemovalStep).where(RemovalStep.request_id == request_id).values(seals=None))
        session.commit()
    assert world.read(request_id, "judge")["seals"] == lifted["seals"]


def test_the_settler_dates_disarmed_no_earlier_than_the_ack_it_counts(world: RemovalWorld) -> None:
    """The settler's round reads the clock once; an ack received after that is settled in the same round. The
    request is ``disarmed`` no earlier than that ack, and its history reads in order."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    round_began = utc_now()
    time.sleep(0.002)
    world.answer("seal-a2", commands["seal-a2"].id)
    assert settle_waiting(world.session_factory, now=round_began) == [request_id]
    with world.session_factory() as session:
        ack = session.get(CourtCommand, commands["seal-a2"].id)
        request = session.get(RemovalRequest, request_id)
        assert ack is not None and ack.answered_at is not None and request is not None
        assert request.disarmed_at is not None and round_began < ack.answered_at <= request.disarmed_at
        steps = [step.at for step in request.steps]
        assert steps == sorted(steps)
