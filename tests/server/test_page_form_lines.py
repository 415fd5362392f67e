"""The pages' fields that are one line and looked up in the database — the sign-in's username, the portal sign-in's
case number and access code, the portal's and the live stream's case number and device id — refuse a NUL or any
other control character as the API does: the error page (422) in the reader's language, naming the field. A NUL
reached PostgreSQL and was a 500 there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory
from server.web.i18n import LANG_COOKIE
from tests.server.auth_helpers import PASSWORD, add_user, make_settings
from tests.server.ingest_world import Court, make_court

CONTROLS = ["\x00", "\x01", "\n", "\x1f", "\x7f"]


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    court = make_court(session_factory, tmp_path)
    add_user(session_factory, "clerk", Role.CLERK)
    return court


@pytest.fixture
def client(database_url: str, court: Court, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app, raise_server_exceptions=False) as instance:
        yield instance


def _token(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def _refused(answer: object, field: str, language: str) -> None:
    assert getattr(answer, "status_code", None) == 422, (getattr(answer, "status_code", None), field)
    text = getattr(answer, "text", "")
    said = f"“{field}”的值无效" if language == "zh-CN" else f"the value of “{field}” is not valid"
    assert said in text, text[:500]


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_a_control_character_in_a_sign_in_field_is_refused_as_a_page(
    client: TestClient, court: Court, language: str
) -> None:
    client.cookies.set(LANG_COOKIE, language)
    login, portal = _token(client, "/login"), _token(client, "/portal")
    case_no = court.a.case_no
    for control in CONTROLS:
        _refused(
            client.post("/login", data={"username": f"clerk{control}", "password": "x", "csrf_token": login}),
            "username",
            language,
        )
        for field, form in (
            ("case_no", {"case_no": f"{case_no}{control}", "code": "ABCD-EFGH"}),
            ("code", {"case_no": case_no, "code": f"AB{control}CD"}),
        ):
            _refused(client.post("/portal/login", data={**form, "csrf_token": portal}), field, language)
        _refused(client.get(f"/portal?case_no={quote(case_no + control)}"), "case_no", language)
        for field in ("case_no", "device_id"):
            _refused(client.get(f"/live?view=overview&{field}={quote('x' + control)}"), field, language)


def test_the_sign_in_still_takes_what_is_one_line(client: TestClient, court: Court) -> None:
    token = _token(client, "/login")
    signed_in = client.post(
        "/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert signed_in.status_code == 303, signed_in.text[:300]
    client.cookies.clear()
    token = _token(client, "/portal")
    wrong = client.post("/portal/login", data={"case_no": court.a.case_no, "code": "ABCD-EFGH", "csrf_token": token})
    assert wrong.status_code == 401  # a wrong code, told beside its field
