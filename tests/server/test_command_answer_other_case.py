"""An answer belongs to the case its event is stored in. Case A's judge sends seal-a1 a ping; the seal is then moved
to case B (``seal-server seal add seal-a1 --case B``: A's pending command expires), and answers the copy the broker
held for it while it guards B — a signed ``wrong_case`` refusal naming both numbers, or an ack of a command it had
carried out in A. That event is case B's evidence. Before, the ingest attached it to A's command all the same: A's
creditor, officer and judge read when the seal spoke in B, its seq there and B's number (the refusal's ``detail``)
in the command API, on A's case page and in A's evidence bundle (docs/removal.md: once the seal is bound to another
case, what it says there is that case's, and no party of this one learns it)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from server.app import create_app
from server.auth.sessions import issue_session
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.evidence.models import Event
from server.ingest.results import IngestResult, Outcome
from server.removal.release import take_off_moved
from server.seals.enrolment import enrol_seal
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.removal_world import RemovalWorld, c, make_world

PARTIES = ("creditor", "officer", "judge")


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def answered_in_b(world: RemovalWorld, how: str) -> tuple[int, IngestResult]:
    """A's ping to seal-a1, the seal moved to B, then its answer to that ping, signed while it guards B."""
    sent = world.client.post(
        "/api/seals/seal-a1/commands", json={"action": "ping", "args": {}}, headers=world.as_("judge")
    )
    assert sent.status_code == 202, sent.text
    command_id: int = sent.json()["command_id"]
    seal = world.seals["seal-a1"]
    with session_scope(world.session_factory) as session:
        enrol_seal(
            session,
            actor=None,
            device_id="seal-a1",
            public_key=seal.public_key,
            case_no=CASE_B,
            on_moved=take_off_moved,
        )
    seal.case_no = CASE_B  # and configured for case B
    if how == "refused":
        detail = f"issued for case {CASE_A}, this seal guards {CASE_B}"
        payload: dict[str, Any] = {"command_id": command_id, "reason": "wrong_case", "detail": detail}
        data = seal.event(EventType.COMMAND_REJECTED, payload)
    else:  # carried out in A, its ack lost: acknowledged when the copy comes again (docs/protocol.md)
        payload = {"command_id": command_id, "action": "ping", "result": "pong", "armed": True, "camera": "ok"}
        data = seal.event(EventType.COMMAND_ACK, payload)
    [result] = world.ingestor.ingest([message(seal.event_topic, data)])
    assert (result.outcome, result.case_no) == (Outcome.STORED, CASE_B)
    return command_id, result


def page_of(world: RemovalWorld, who: str, case_no: str) -> str:
    with session_scope(world.session_factory) as session:
        cookie = issue_session(session, user=get_user(session, username=who), now=utc_now(), ttl_s=3600).cookie
    world.client.cookies.clear()
    world.client.cookies.set("seal_session", cookie)
    try:
        page = world.client.get(f"/cases/{quote(case_no, safe='')}")
    finally:
        world.client.cookies.clear()
    assert page.status_code == 200, page.text
    return page.text


def bundle_of(world: RemovalWorld, who: str, case_no: str) -> dict[str, bytes]:
    answer = world.client.get(f"/api/cases/{c(case_no)}/export.zip", headers=world.as_(who))
    assert answer.status_code == 200, answer.text
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def unanswered(command: dict[str, Any], command_id: int) -> None:
    assert command["state"] == "expired", command  # as the move made it
    assert (command["answered_at"], command["answer_seq"], command["result"], command["reason"]) == (None,) * 4


@pytest.mark.parametrize("how", ["refused", "acknowledged"])
def test_a_moved_seal_s_answer_in_its_new_case_tells_the_old_case_nothing(world: RemovalWorld, how: str) -> None:
    command_id, stored = answered_in_b(world, how)

    for who in PARTIES:
        single = world.client.get(f"/api/commands/{command_id}", headers=world.as_(who))
        assert single.status_code == 200, (who, single.text)
        assert CASE_B not in single.text, who
        unanswered(single.json(), command_id)
        listed = world.client.get("/api/seals/seal-a1/commands", headers=world.as_(who))
        if listed.status_code == 200:  # the seal's commands in the cases the user may see: A's only
            assert CASE_B not in listed.text, who
            for command in listed.json():
                unanswered(command, command_id)
        else:
            assert listed.status_code == 404, (who, listed.text)

        page = page_of(world, who, CASE_A)
        assert CASE_B not in page, who
        if '<section id="case-commands"' in page:
            panel = page.split('<section id="case-commands"')[1].split("</section>")[0]
            assert f'data-command-id="{command_id}" data-action="ping" data-state="expired"' in panel, who

    members = bundle_of(world, "judge", CASE_A)
    assert [name for name, data in members.items() if CASE_B.encode() in data] == []
    [line] = [json.loads(raw) for raw in members["commands.jsonl"].splitlines() if raw.strip()]
    assert line["id"] == command_id
    unanswered(line, command_id)

    assert stored.command_answer == "other_case"  # logged and counted: no command changed

    # Case B keeps the seal's answer: its event, on its record and in its bundle.
    answer_type = "command_rejected" if how == "refused" else "command_ack"
    with world.session_factory() as session:
        event = session.scalars(select(Event).where(Event.type == answer_type)).one()
        assert (event.case_no, event.payload["command_id"]) == (CASE_B, command_id)
        row = session.get(CourtCommand, command_id)
        assert row is not None and (row.case_no, row.state, row.answered_at) == (CASE_A, "expired", None)
    shown = world.client.get(f"/api/cases/{c(CASE_B)}/events", headers=world.as_("judge-b"))
    assert shown.status_code == 200 and answer_type in [e["type"] for e in shown.json()["events"]]
    assert answer_type.encode() in bundle_of(world, "judge-b", CASE_B)["events.jsonl"]
