"""Input bounds: a value no column can hold (an id past 64 bits, a huge or NUL-bearing string, a time with no UTC
form) is a 422 that names the parameter, on SQLite and PostgreSQL, never a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import make_court

HUGE = str(2**64)
CASE = quote("(2021)苏0214执1234号", safe="")


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    make_court(session_factory, tmp_path)
    add_user(session_factory, "clerk", Role.CLERK)
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app, raise_server_exceptions=False) as instance:
        instance.headers.update(bearer(session_factory, "clerk"))
        yield instance


CALLS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", f"/api/alarms/{HUGE}", None, "alarm_id"),
    ("POST", f"/api/alarms/{HUGE}/ack", {}, "alarm_id"),
    ("POST", f"/api/alarms/{HUGE}/close", {}, "alarm_id"),
    ("GET", f"/api/alarms?before={HUGE}", None, "before"),
    ("GET", "/api/alarms?limit=" + HUGE, None, "limit"),
    ("GET", f"/api/audit?before={HUGE}", None, "before"),
    ("GET", f"/api/commands/{HUGE}", None, "command_id"),
    ("GET", f"/api/seals/seal-a/commands?before={HUGE}", None, "before"),
    ("GET", f"/api/cases/{CASE}/events?before={HUGE}", None, "before"),
    ("GET", f"/api/seals/seal-a/events?before=-{HUGE}", None, "before"),
    ("DELETE", f"/api/notification-targets/{HUGE}", None, "target_id"),
    ("GET", "/api/cases/" + "x" * 10_000, None, "case_no"),
    ("GET", "/api/seals/" + "x" * 10_000, None, "device_id"),
    ("GET", "/api/seals/" + quote("seal\x00a"), None, "device_id"),
    ("GET", "/api/users/" + quote("clerk\x00"), None, "username"),
    ("GET", "/api/seals?case_no=" + quote("a\x00b"), None, "case_no"),
    ("GET", "/api/audit?actor=" + quote("clerk\x00"), None, "actor"),
    ("GET", "/api/audit?target=" + "t" * 10_000, None, "target"),
    ("GET", f"/api/cases/{CASE}/events?type=" + "t" * 10_000, None, "type"),
    ("GET", "/api/notices/verify?token=" + "t" * 10_000, None, "token"),
    ("GET", f"/api/cases/{CASE}/events?since=" + quote("0001-01-01T00:00:00+01:00"), None, "since"),
    ("GET", f"/api/cases/{CASE}/events?until=" + quote("9999-12-31T23:59:59-01:00"), None, "until"),
    ("POST", "/api/cases", {"case_no": "(2024)\x00号"}, "case_no"),
    ("POST", "/api/cases", {"case_no": "(2024)1号", "address": "a" * 100_000}, "address"),
    ("PATCH", f"/api/cases/{CASE}", {"court": "法院\x00"}, "court"),
    ("POST", f"/api/cases/{CASE}/assignments", {"username": "x\x00"}, "username"),
    ("POST", "/api/alarms/1/ack", {"note": "seen\x00"}, "note"),
    ("POST", "/api/seals", {"device_id": "seal-new", "public_key": "k\x00"}, "public_key"),
    ("POST", "/api/seals/seal-a/commands", {"action": "ping", "args": {"k": "\x00"}}, "args"),
    ("POST", "/api/auth/login", {"username": "judge\x00", "password": "x"}, "username"),
    ("POST", "/api/auth/access-code", {"case_no": "x" * 65, "code": "c"}, "case_no"),
    ("POST", "/api/auth/access-code", {"case_no": "(2021)1号", "code": "c\x00"}, "code"),
    ("GET", f"/api/removal-requests/{HUGE}", None, "request_id"),
    ("GET", f"/api/removal-requests/1/proofs/{'A' * 64}", None, "sha256"),
    ("GET", f"/api/cases/{CASE}/removal-requests?before={HUGE}", None, "before"),
    ("POST", f"/api/removal-requests/{HUGE}/approve", {"reasons": "x"}, "request_id"),
    ("POST", "/api/removal-requests/1/approve", {"reasons": ""}, "reasons"),
    ("POST", "/api/removal-requests/1/reject", {"reasons": "r" * 5000}, "reasons"),
    ("POST", "/api/removal-requests/1/views", {"text": "v\x00"}, "text"),
    ("POST", "/api/removal-requests/1/cancel", {"note": "n" * 3000}, "note"),
    ("POST", "/api/removal-requests/1/resend-disarm", {"device_id": "a b"}, "device_id"),
    ("POST", "/api/removal-requests/1/lift-without-ack", {"device_ids": [], "reasons": "x"}, "device_ids"),
    ("POST", "/api/removal-requests/1/lift-without-ack", {"device_ids": ["s"] * 65, "reasons": "x"}, "device_ids"),
    ("POST", "/api/removal-requests/1/lift-without-ack", {"device_ids": ["a b"], "reasons": "x"}, "device_ids"),
    ("POST", "/api/removal-requests/1/lift-without-ack", {"device_ids": ["s"], "reasons": "\x00"}, "reasons"),
    ("POST", f"/api/removal-requests/{HUGE}/abort", {"reasons": "x"}, "request_id"),
    ("POST", "/api/removal-requests/1/abort", {"reasons": "r" * 5000}, "reasons"),
    ("POST", "/api/removal-requests/1/lifted", {"found": {"seal-a": "gone"}}, "found"),
    ("POST", "/api/removal-requests/1/lifted", {"found": {"a b": "missing"}}, "found"),
    ("POST", f"/api/notices/{HUGE}/revoke", {"note": "x"}, "notice_id"),
    ("POST", "/api/notices/1/revoke", {"note": ""}, "note"),
    ("POST", "/api/notices/1/revoke", {"note": "n\x00"}, "note"),
    ("POST", f"/api/me/inbox/{HUGE}/read", None, "message_id"),
    ("GET", "/api/me/inbox?limit=0", None, "limit"),
    (
        "POST",
        "/api/users",
        {"username": "new-user", "password": "p" * 12, "role": "judge", "full_name": "\x00"},
        "full_name",
    ),
    (
        "POST",
        "/api/users",
        {"username": "new-user", "password": "p" * 12, "role": "judge", "case_nos": ["x" * 65]},
        "case_nos",
    ),
]


def test_out_of_bounds_is_422_naming_the_field(client: TestClient) -> None:
    mismatches = []
    for method, url, body, field in CALLS:
        response = client.request(method, url, json=body)
        detail = response.json().get("detail") if response.status_code == 422 else None
        locations = [error["loc"] for error in detail] if isinstance(detail, list) else []
        if not any(field in location for location in locations):
            mismatches.append(f"{method} {url[:80]} {field}: {response.status_code} {response.text[:200]}")
    assert mismatches == []


def test_the_largest_id_is_not_found_rather_than_refused(client: TestClient) -> None:
    largest = str(2**63 - 1)
    assert client.get(f"/api/alarms/{largest}").status_code == 404
    assert client.get(f"/api/alarms?before={largest}").status_code == 200
    assert client.get(f"/api/cases/{CASE}/events?since=" + quote("0001-01-01T00:00:00Z")).status_code == 200


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/cases", '{"case_no": "x\\ud800"}', "case_no"),
        ("/api/auth/login", '{"username": "\\udc00", "password": "x"}', "username"),
        ("/api/alarms/1/ack", '{"note": "seen \\ud800"}', "note"),
        ("/api/seals/seal-a/commands", '{"action": "ping", "args": {"\\ud800": 1}}', "args"),
    ],
)
def test_a_lone_surrogate_is_a_422_too(client: TestClient, url: str, body: str, field: str) -> None:
    """JSON text may escape half of a UTF-16 pair; no UTF-8 text holds it — not the database, not the 422 that
    echoes it (which FastAPI's own handler fails to encode): the answer is still a 422 naming the field."""
    response = client.post(url, content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["detail"])


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"ground": "paid_in_full", "statement": "s\x00"}, "statement"),
        ({"ground": "paid_in_full", "statement": "s" * 5000}, "statement"),
        ({"ground": "paid_in_full", "statement": ""}, "statement"),
        ({"ground": "bribe", "statement": "s"}, "ground"),
    ],
)
def test_the_removal_request_form_is_bounded_too(
    client: TestClient, session_factory: SessionFactory, form: dict[str, str], field: str
) -> None:
    """The filing is a multipart form (it carries proof files): its fields are bounded like a JSON body's."""
    add_user(session_factory, "debtor", Role.DEBTOR, ["(2021)苏0214执1234号"])
    url = f"/api/cases/{CASE}/removal-requests"
    response = client.post(url, data=form, headers=bearer(session_factory, "debtor"))
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["detail"])
