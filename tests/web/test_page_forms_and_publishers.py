"""Every form of the pages refuses a request without the CSRF proof, whatever it is; and the workers whose changes
the case page shows tell the live bus: the command dispatcher (a command expired, or taken by the broker) and the
removal settler (a request every seal has acknowledged)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.auth.users import get_user
from server.commands.dispatcher import CommandDispatcher
from server.commands.models import CourtCommand
from server.commands.service import issue_command_as
from server.config import CommandSettings, MqttSettings, RemovalSettings
from server.core.base import utc_now
from server.core.db import session_scope
from server.removal.disarm import approve_request
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore
from server.removal.service import file_request, review_request
from server.removal.settler import RemovalSettler
from server.seals.models import Seal
from server.web import web_router
from tests.web.conftest import CASE, SEAL, PagesWorld


def page_forms() -> list[str]:
    """Every POST route of the pages, its path parameters filled with some value."""
    paths = []
    for route in iter_route_contexts(web_router.routes):
        if "POST" in (getattr(route, "methods", None) or ()):
            paths.append(re.sub(r"\{[a-z_]+\}", "1", str(route.path)))
    return paths


def test_every_page_form_needs_the_csrf_proof(world: PagesWorld) -> None:
    forms = page_forms()
    assert len(forms) >= 20 and "/cases/1/removal/1/approve" in forms and "/admin/users" in forms
    with world.client("clerk") as clerk, world.client("judge") as judge:
        for client in (clerk, judge):
            for path in forms:
                for forged in ({}, {"csrf_token": "f" * 64}):
                    answer = client.post(path, data={"note": "x", **forged})
                    assert answer.status_code == 403, (path, answer.status_code)
                    assert "表单已过期或来源不明" in answer.text


def test_the_dispatcher_tells_which_seals_commands_expired(world: PagesWorld, tmp_path: Path) -> None:
    with session_scope(world.session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == SEAL)).one()
        issue_command_as(
            session,
            actor=get_user(session, username="judge"),
            seal=seal,
            action=CommandAction.PING,
            args={},
            key=generate_signing_key(),
            ttl=timedelta(seconds=30),
            now=utc_now(),
        )
    (tmp_path / "password").write_text("unused\n")
    told: list[list[str]] = []
    dispatcher = CommandDispatcher(  # never started: not connected, so a round only expires
        MqttSettings(port=1, password_file=tmp_path / "password"),
        CommandSettings(),
        world.session_factory,
        clock=lambda: utc_now() + timedelta(minutes=5),
        on_changed=told.append,
    )
    assert dispatcher.run_round().expired and told == [[SEAL]]
    assert dispatcher.run_round().expired == [] and told == [[SEAL]]  # nothing changed: nobody told
    with world.session_factory() as session:
        assert session.scalars(select(CourtCommand.state)).one() == "expired"


def test_the_settler_tells_which_cases_requests_it_settled(world: PagesWorld, tmp_path: Path) -> None:
    now = utc_now()
    with session_scope(world.session_factory) as session:
        request = file_request(
            session,
            actor=get_user(session, username="debtor"),
            case_no=CASE,
            ground=RemovalGround.PAID_IN_FULL,
            statement="已清偿",
            proofs=[],
            store=ProofStore(tmp_path / "proofs"),
            settings=RemovalSettings(),
            now=now,
        )
        judge = get_user(session, username="judge")
        review_request(session, actor=judge, request=request, note="", now=now)
        [command] = approve_request(
            session,
            actor=judge,
            request=request,
            reasons="准予",
            key=generate_signing_key(),
            ttl=timedelta(minutes=5),
            now=now,
        )
        command_id = command.id
    told: list[list[str]] = []
    settler = RemovalSettler(world.session_factory, interval_s=60, on_settled=told.append)
    assert settler.run_round() == [] and told == []
    ack = {"command_id": command_id, "action": "disarm", "result": "disarmed"}
    world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_ACK, ack)))
    assert settler.run_round() == [request.id] and told == [[CASE]]
