"""The debtor's access code: issued by a clerk and shown once, stored as an argon2 hash; signing in with the case
number and the code gives a debtor session for that case only; rotating it ends the old code and its sessions;
failed attempts are throttled like logins."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.models import CaseAccessCode
from server.core.db import SessionFactory
from tests.server.auth_helpers import PASSWORD, make_settings
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.removal_world import RemovalWorld, c, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(
        database_url, tmp_path, login_max_failures=3, login_network_max_failures=10, login_user_max_failures=50
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def issue(world: RemovalWorld, case_no: str = CASE_A, who: str = "clerk") -> Any:
    return world.client.post(f"/api/cases/{c(case_no)}/access-code", headers=world.as_(who))


def rotate(world: RemovalWorld, case_no: str = CASE_A) -> Any:
    """Replace the case's code: the one issued at the time ``GET`` answers (an explicit rotation)."""
    url = f"/api/cases/{c(case_no)}/access-code"
    replacing = world.client.get(url, headers=world.as_("clerk")).json()["issued_at"]
    return world.client.post(url, json={"replacing": replacing}, headers=world.as_("clerk"))


def sign_in(world: RemovalWorld, code: str, case_no: str = CASE_A) -> Any:
    return world.client.post("/api/auth/access-code", json={"case_no": case_no, "code": code})


def test_the_code_signs_the_debtor_in_for_that_case_only(world: RemovalWorld) -> None:
    issued = issue(world)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    code = body["code"]
    assert len(code) == 19 and code.count("-") == 3 and body["rotated"] is False
    with world.session_factory() as session:
        row = session.scalars(select(CaseAccessCode)).one()
        assert row.code_hash.startswith("$argon2id$") and code not in row.code_hash

    signed_in = sign_in(world, code.lower().replace("-", " "))  # typed off paper, any case, any spacing
    assert signed_in.status_code == 200, signed_in.text
    me = signed_in.json()["user"]
    assert (me["role"], me["case_nos"], me["username"]) == ("debtor", [CASE_A], body["username"])
    token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    assert world.client.get(f"/api/cases/{c(CASE_A)}", headers=token).status_code == 200
    assert world.client.get(f"/api/cases/{c(CASE_B)}", headers=token).status_code == 404
    assert world.client.get("/api/seals/seal-b", headers=token).status_code == 404

    # The debtor files with it; the code is no password: the account cannot log in with one.
    filed = world.client.post(
        f"/api/cases/{c(CASE_A)}/removal-requests",
        data={"ground": "settlement", "statement": "已达成执行和解"},
        headers=token,
    )
    assert filed.status_code == 201, filed.text
    assert filed.json()["filed_by"] == body["username"]
    login = world.client.post("/api/auth/login", json={"username": body["username"], "password": code})
    assert login.status_code == 401
    assert sign_in(world, code, CASE_B).status_code == 401  # another case's number with this code
    full_width = CASE_A.replace("(", "（").replace(")", "）")  # as printed on a court's papers
    assert sign_in(world, code, full_width).status_code == 200
    shown = world.client.get(f"/api/cases/{c(CASE_A)}/access-code", headers=world.as_("clerk")).json()
    assert shown["issued"] is True and "code" not in shown


def test_rotation_ends_the_old_code_and_its_sessions(world: RemovalWorld) -> None:
    old = issue(world).json()["code"]
    session = sign_in(world, old).json()["access_token"]
    assert issue(world).status_code == 409  # a first issue again: the code is replaced only on purpose
    rotated = rotate(world).json()
    assert rotated["rotated"] is True and rotated["code"] != old
    assert world.client.get("/api/auth/me", headers={"Authorization": f"Bearer {session}"}).status_code == 401
    assert sign_in(world, old).status_code == 401
    assert sign_in(world, rotated["code"]).status_code == 200
    with world.session_factory() as session_:
        entries = session_.scalars(select(AuditEntry).where(AuditEntry.action == "case.access_code")).all()
        assert [(e.actor, e.target, e.details["rotated"]) for e in entries] == [
            ("clerk", CASE_A, False),
            ("clerk", CASE_A, True),
        ]


def test_only_a_clerk_issues_codes(world: RemovalWorld) -> None:
    assert issue(world, who="judge").status_code == 403
    assert issue(world, who="debtor").status_code == 403
    assert issue(world, CASE_B, who="judge").status_code == 404
    assert issue(world, "(1999)无此案号").status_code == 404


def test_failed_attempts_are_throttled(world: RemovalWorld) -> None:
    code = issue(world).json()["code"]
    assert [sign_in(world, "WRONG-CODE-0000-0000").status_code for _ in range(3)] == [401, 401, 401]
    throttled = sign_in(world, code)  # even the right code waits now, from this address
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert sign_in(world, "x", "(1999)无此案号").status_code == 401  # a case without a code answers alike
    with world.session_factory() as session:
        failed = session.scalars(select(AuditEntry).where(AuditEntry.action == "login.failed")).all()
        # A case number that names no case is the caller's text: not a leaf of the evidence log.
        assert {e.target for e in failed} == {f"case:{CASE_A}"}


def test_a_password_login_is_untouched(world: RemovalWorld) -> None:
    assert world.client.post("/api/auth/login", json={"username": "debtor", "password": PASSWORD}).status_code == 200


def test_every_spelling_of_the_case_number_counts_as_one(world: RemovalWorld) -> None:
    """The throttle counts the case, not the case number as typed: ASCII, full-width or 〔〕 brackets and blanks
    around it are one case (three failures are allowed per case and address here)."""
    issue(world)
    body = CASE_A[1:]  # "2021)苏0214执1234号" without the opening bracket
    spellings = [o + body.replace(")", cl, 1) for o in "(（〔" for cl in ")）〕"] + [" " + CASE_A, "\u3000" + CASE_A]
    answers = [sign_in(world, "2222-2222-2222-2222", spelling).status_code for spelling in spellings[:4]]
    assert answers == [401, 401, 401, 429]
    with world.session_factory() as session:
        failed = session.scalars(select(AuditEntry).where(AuditEntry.action == "login.failed")).all()
        assert {e.target for e in failed} == {f"case:{CASE_A}"}


def test_no_code_for_a_lifted_or_closed_case(world: RemovalWorld) -> None:
    """A seizure lifted (or a case closed) needs no debtor's code: none is issued, and the one issued no longer
    signs in."""
    code = issue(world).json()["code"]
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    world.ok("officer", request_id, "lifted", {"note": "拆除"})
    refused = sign_in(world, code)
    assert refused.status_code == 401 and "lifted or the case closed" in refused.json()["detail"]
    wrong = sign_in(world, "2222-2222-2222-2222").json()["detail"]
    assert wrong == "案号或查询码不正确。 / wrong case number or access code"
    assert issue(world).status_code == 409


def test_the_debtor_sees_whether_the_seals_are_armed_not_whether_they_are_online(world: RemovalWorld) -> None:
    """Whoever holds the paper code must not learn when the seal on the door is deaf (offline, last heard from)
    or whether jamming it worked (the commands and their fate): the debtor sees where each seal is and whether it
    says it is armed."""
    code = issue(world).json()["code"]
    token = {"Authorization": f"Bearer {sign_in(world, code).json()['access_token']}"}
    seal = world.client.get("/api/seals/seal-a1", headers=token)
    assert seal.status_code == 200
    assert set(seal.json()) == {"device_id", "case_no", "location", "armed", "installed_at", "armed_hidden"}
    listed = world.client.get("/api/seals", headers=token).json()
    assert [set(s) for s in listed] == [set(seal.json())] * 2
    assert world.client.get("/api/seals/seal-a1/commands", headers=token).status_code == 403
    for who in ("judge", "officer", "creditor", "clerk"):
        full = world.client.get("/api/seals/seal-a1", headers=world.as_(who)).json()
        assert {"online", "last_seen_at", "status"} <= set(full), who


def test_the_debtor_is_not_told_whether_the_seals_are_armed_while_the_case_is_lifted(world: RemovalWorld) -> None:
    """A removal approved, each seal disarmed and saying so, no officer come yet: the API tells whoever holds the
    paper code no armed state (as the portal and the notice's public page do not: CaseStatus.hides_armed_state);
    the judge still reads it."""
    code = issue(world).json()["code"]
    token = {"Authorization": f"Bearer {sign_in(world, code).json()['access_token']}"}
    for seal in world.seals.values():
        world.ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    assert world.client.get("/api/seals/seal-a1", headers=token).json()["armed"] is True
    disarms = world.commands(world.approved(world.filed()))
    for device_id, command in disarms.items():
        world.answer(device_id, command.id)
        seal = world.seals[device_id]
        world.ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": False}))])
    one = world.client.get("/api/seals/seal-a1", headers=token).json()
    listed = world.client.get("/api/seals", headers=token).json()
    assert [s["armed"] for s in [one, *listed]] == [None] * 3
    assert [s["armed_hidden"] for s in [one, *listed]] == [True] * 3
    full = world.client.get("/api/seals/seal-a1", headers=world.as_("judge")).json()
    assert full["armed"] is False


@pytest.fixture
def lenient_world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(
        database_url,
        tmp_path,
        login_max_failures=100,
        login_address_max_failures=1000,
        login_network_max_failures=999,
        login_user_max_failures=1000,
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def test_a_sign_in_racing_the_rotation_of_its_code_gets_no_live_session(lenient_world: RemovalWorld) -> None:
    """The code is checked with no transaction held (argon2 takes a while); the session is issued in a transaction
    that reads the code's hash again, locked: a rotation committed during the check stops the sign-in, and one
    that commits after it ends the session it issued. Rotations are started at offsets around the sign-in's."""
    world = lenient_world
    old = issue(world).json()["code"]
    started = time.monotonic()
    assert sign_in(world, "2222-2222-2222-2222").status_code == 401
    check_s = time.monotonic() - started
    survivors = []
    for attempt in range(10):
        offset = check_s * (-1.0 + 0.2 * attempt)  # < 0: the rotation starts first
        result: dict[str, Any] = {}

        def racing(result: dict[str, Any] = result, code: str = old, wait: float = max(0.0, -offset)) -> None:
            time.sleep(wait)
            result["answer"] = sign_in(world, code)

        thread = threading.Thread(target=racing)
        thread.start()
        time.sleep(max(0.0, offset))
        rotated = rotate(world)
        thread.join()
        answer = result["answer"]
        if answer.status_code == 200:
            token = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            if world.client.get("/api/auth/me", headers=token).status_code == 200:
                survivors.append(round(offset / check_s, 1))
        old = rotated.json()["code"]
    assert not survivors, f"the old code opened a live session after its rotation (offsets {survivors} x the check)"


def test_a_password_sign_in_racing_a_disabling_or_a_new_password_gets_no_live_session(
    lenient_world: RemovalWorld,
) -> None:
    """The same for passwords: disabling the account, or a clerk setting a new password, while its old password is
    being checked leaves the sign-in without a live session."""
    world = lenient_world
    clerk = world.as_("clerk")
    survivors = []
    for attempt, change in enumerate([{"disabled": True}, {"password": "a-new-password-1234"}] * 4):
        username = f"officer-{attempt}"
        created = world.client.post(
            "/api/users", json={"username": username, "password": PASSWORD, "role": "officer"}, headers=clerk
        )
        assert created.status_code == 201, created.text
        result: dict[str, Any] = {}

        def racing(result: dict[str, Any] = result, username: str = username) -> None:
            result["answer"] = world.client.post("/api/auth/login", json={"username": username, "password": PASSWORD})

        thread = threading.Thread(target=racing)
        thread.start()
        time.sleep(0.02 * attempt)
        assert world.client.patch(f"/api/users/{username}", json=change, headers=clerk).status_code == 200
        thread.join()
        answer = result["answer"]
        if answer.status_code == 200:
            token = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            if world.client.get("/api/auth/me", headers=token).status_code == 200:
                survivors.append((username, change))
    assert not survivors, f"a sign-in outlived the change it raced: {survivors}"


def test_closing_the_case_ends_the_sessions_its_code_opened(world: RemovalWorld) -> None:
    """After the lifting the debtor still reads the outcome in the session the code opened; once the clerk closes the
    case, that session ends at once (not when it expires)."""
    code = issue(world).json()["code"]
    signed_in = sign_in(world, code)
    token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    world.ok("officer", request_id, "lifted", {"note": "拆除"})
    assert world.client.get(f"/api/cases/{c(CASE_A)}", headers=token).status_code == 200
    # the case's other debtor account (a password login) is not touched by it
    assert world.client.get(f"/api/cases/{c(CASE_A)}", headers=world.as_("debtor")).status_code == 200

    closed = world.client.put(
        f"/api/cases/{c(CASE_A)}/status", json={"status": "closed", "note": "结案"}, headers=world.as_("clerk")
    )
    assert closed.status_code == 200, closed.text
    assert world.client.get(f"/api/cases/{c(CASE_A)}", headers=token).status_code == 401
    assert world.client.get("/api/auth/me", headers=token).status_code == 401
