"""``NaN``, ``Infinity``, ``-Infinity`` and numbers beyond the float range (``1e400``) are not JSON; Python's parser
takes them, and FastAPI's 422 that echoed one could not be written (a 500, before any login). Every route answers
such a body with a 422 that says why, signed in or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api.routing import AsciiJSONResponse, non_finite_number
from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import Court, make_court

NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1E+999"]


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    court = make_court(session_factory, tmp_path)
    add_user(session_factory, "clerk", Role.CLERK)
    add_user(session_factory, "judge", Role.JUDGE, [court.a.case_no])
    return court


@pytest.fixture
def client(database_url: str, court: Court, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app, raise_server_exceptions=False) as instance:
        yield instance


def _routes(court: Court) -> list[tuple[str, str, str, str | None]]:
    """(method, url, body with ``{}`` where the number goes, who sends it)."""
    device = court.a.device_id
    return [
        ("POST", "/api/auth/login", '{"username":"clerk","password":{}}', None),
        ("POST", "/api/auth/login", '{"username":{},"password":"x"}', None),
        ("POST", "/api/auth/access-code", '{"case_no":{},"code":"x"}', None),
        ("POST", "/api/alarms/1/ack", '{"note":{}}', "clerk"),
        ("PATCH", "/api/users/judge", '{"disabled":{}}', "clerk"),
        ("PATCH", "/api/users/judge", '{"full_name":"x","extra":[1,{"deep":{}}]}', "clerk"),
        ("POST", f"/api/seals/{device}/commands", '{"action":"ping","args":{"x":{}}}', "judge"),
        ("POST", f"/api/seals/{device}/commands", '{"action":{},"args":{}}', "judge"),
        ("POST", "/api/seals", '{"device_id":"seal-x","public_key":{}}', "clerk"),
    ]


@pytest.mark.parametrize("number", NUMBERS)
def test_a_non_finite_number_is_a_422_on_every_route(
    client: TestClient, court: Court, session_factory: SessionFactory, number: str
) -> None:
    for method, url, body, who in _routes(court):
        headers = {"Content-Type": "application/json", **(bearer(session_factory, who) if who else {})}
        answer = client.request(method, url, content=body.replace("{}", number, 1).encode(), headers=headers)
        assert answer.status_code == 422, (method, url, number, answer.status_code, answer.text[:200])
        (error,) = answer.json()["detail"]
        assert "finite" in error["msg"] and error["input"] == number, error


def test_a_json_content_type_with_parameters_or_suffix_is_checked_too(client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        body = b'{"username":"clerk","password":NaN}'
        answer = client.post("/api/auth/login", content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 422, (content_type, answer.text)


def test_finite_numbers_and_broken_json_are_answered_as_before(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    wrong = client.post("/api/auth/login", content=b'{"username":"clerk","password":1.5e300}', headers=headers)
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["type"] == "string_type"
    broken = client.post("/api/auth/login", content=b'{"username":', headers=headers)
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"


def test_the_error_answer_writes_a_non_finite_number_it_holds() -> None:
    content = {"detail": [{"input": float("nan"), "more": [float("inf"), (float("-inf"),)], "ok": 1.5}]}
    rendered = json.loads(AsciiJSONResponse(content).body)
    assert rendered == {"detail": [{"input": "NaN", "more": ["Infinity", ["-Infinity"]], "ok": 1.5}]}
    assert non_finite_number(b'{"a": [1, 2.5, "NaN"]}') is None
    assert non_finite_number(b'{"a": [1, 2.5, 1e999]}') == "1e999"


@pytest.mark.parametrize("depth", [200_000, 900], ids=["past-the-parser", "near-the-parser"])
def test_a_body_nested_deeply_is_a_4xx_on_every_route(
    client: TestClient, court: Court, session_factory: SessionFactory, depth: int
) -> None:
    """The non-finite check parsed the body itself and let the parser's RecursionError out (a 500 with a traceback
    for ``[`` × 200,000, before sign-in); a body just within the parser's depth is echoed by a 422 that must still
    be written."""
    nested = "[" * depth + "]" * depth
    for method, url, body, who in _routes(court):
        headers = {"Content-Type": "application/json", **(bearer(session_factory, who) if who else {})}
        answer = client.request(method, url, content=body.replace("{}", nested), headers=headers)
        assert 400 <= answer.status_code < 500, (url, answer.status_code, answer.text[:300])
