"""Every form of the pages refuses a request without the CSRF proof, whatever it is, and a value out of bounds as a
422 page; and the workers whose changes the case page shows tell the live bus: the command dispatcher (a command
expired, or taken by the broker) and the removal settler (a request every seal has acknowledged)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

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
from server.seals.registry import bind_seal, unbind_seal
from server.web import web_router
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld, csrf_of


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


def ping_issued(world: PagesWorld, *, ttl: timedelta) -> None:
    """A ping to :data:`SEAL` in its case, issued by the judge, pending."""
    with session_scope(world.session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == SEAL)).one()
        issue_command_as(
            session,
            actor=get_user(session, username="judge"),
            seal=seal,
            action=CommandAction.PING,
            args={},
            key=generate_signing_key(),
            ttl=ttl,
            now=utc_now(),
        )


def idle_dispatcher(
    world: PagesWorld, tmp_path: Path, told: list[list[tuple[str, str]]], *, ahead: timedelta = timedelta(0)
) -> CommandDispatcher:
    """A dispatcher never started (not connected: a round only expires), its clock ``ahead``, telling ``told``."""
    (tmp_path / "password").write_text("unused\n")
    return CommandDispatcher(
        MqttSettings(port=1, password_file=tmp_path / "password"),
        CommandSettings(),
        world.session_factory,
        clock=lambda: utc_now() + ahead,
        on_changed=told.append,
    )


def test_the_dispatcher_tells_which_seals_commands_expired(world: PagesWorld, tmp_path: Path) -> None:
    ping_issued(world, ttl=timedelta(seconds=30))
    told: list[list[tuple[str, str]]] = []
    dispatcher = idle_dispatcher(world, tmp_path, told, ahead=timedelta(minutes=5))
    assert dispatcher.run_round().expired and told == [[(SEAL, CASE)]]
    assert dispatcher.run_round().expired == [] and told == [[(SEAL, CASE)]]  # nothing changed: nobody told
    with world.session_factory() as session:
        assert session.scalars(select(CourtCommand.state)).one() == "expired"


def test_the_dispatcher_names_the_case_a_seal_left_when_it_expires_its_command(
    world: PagesWorld, tmp_path: Path
) -> None:
    """A command of a case the seal has left (its binding ended, not released: the command still pending) is
    expired by the dispatcher, which names the command's case: the old case's page shows the commands table, the
    seal's new case has none of them."""
    ping_issued(world, ttl=timedelta(minutes=30))
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id=SEAL)
    with session_scope(world.session_factory) as session:
        bind_seal(session, actor=None, device_id=SEAL, case_no=OTHER_CASE)
    told: list[list[tuple[str, str]]] = []
    assert idle_dispatcher(world, tmp_path, told).run_round().expired and told == [[(SEAL, CASE)]]


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


HUGE = 2**64


def test_page_inputs_out_of_bounds_are_422_pages_never_server_errors(world: PagesWorld) -> None:
    case = f"/cases/{quote(CASE, safe='')}"
    sha = "0" * 64
    gets = [
        f"{case}/timeline?before={HUGE}",
        f"{case}/events/{HUGE}/snapshots/{sha}",
        f"{case}/events/1/snapshots/{'Z' * 64}",
        f"/cases/{'x' * 65}",
        f"/seals/{'x' * 65}",
        "/seals/bad%20id",
        f"/audit?before={HUGE}",
        "/audit?action=a%01b",
        f"/audit?actor={'a' * 65}",
    ]
    posts: list[tuple[str, dict[str, str]]] = [
        (f"{case}/alarms/{HUGE}/ack", {}),
        (f"{case}/alarms/{world.alarm_id}/ack", {"note": "a\x00b"}),
        (f"{case}/alarms/{world.alarm_id}/close", {"note": "注" * 2001}),
        (f"{case}/commands", {"device_id": "../x", "action": "ping"}),
        (f"{case}/commands", {"device_id": SEAL, "action": "disarm"}),  # a decision: not from this form
        (f"{case}/removal/{HUGE}/approve", {"reasons": "x"}),
        (f"{case}/removal/1/approve", {"reasons": "理" * 4001}),
        (f"{case}/removal/1/reject", {"reasons": "a\x00"}),
        (f"{case}/removal/1/resend", {"device_id": "no such/seal"}),
        ("/admin/users", {"username": "A", "role": "officer", "password": "p" * 12}),
        ("/admin/users", {"username": "ok-name", "role": "emperor", "password": "p" * 12}),
        ("/admin/users", {"username": "ok-name", "role": "officer", "password": "short"}),
        ("/admin/users", {"username": "ok-name", "role": "officer", "password": "p" * 12, "full_name": "a\nb"}),
        ("/admin/users/judge/disabled", {"disabled": "2"}),
        ("/admin/cases", {"case_no": "执" * 65}),
        ("/admin/cases", {"case_no": "(2024)苏0214执9号", "seizure_expires_on": "someday"}),
        ("/admin/cases", {"case_no": "(2024)苏0214执9号", "judge": "a\x01"}),
        ("/admin/courts", {"code": "苏" * 17, "name": "某法院"}),
    ]
    with world.client("clerk") as clerk, world.client("judge") as judge:
        for client in (clerk, judge):
            for url in gets:
                assert client.get(url).status_code == 422, url
            token = csrf_of(client.get("/").text)
            for url, data in posts:
                if url.startswith("/admin") and client is judge:
                    continue
                answer = client.post(url, data={**data, "csrf_token": token})
                assert answer.status_code == 422 and "输入有误" in answer.text, (url, answer.status_code)
