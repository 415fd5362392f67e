"""The README's deployment behind a reverse proxy, shape by shape: an anonymous client must not lock the court out of
sign-in, nor read ``/metrics``, whatever the proxy does.

The attack (a hostile review's repro): 20 wrong passwords for made-up usernames from one stranger; then the clerk
signs in with the right password. Through a proxy whose clients all share its address, the stranger's failures would
fill the address's throttle and lock out everybody behind it. Each shape is the real app as ``create_app`` builds it,
its requests coming from the socket address a proxy (or a client) would have.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.config import HttpSettings
from server.core.db import SessionFactory
from tests.server.auth_helpers import PASSWORD, add_user, make_settings

#: Where a local reverse proxy connects from (nginx: ``proxy_bind 127.0.0.2``), apart from the machine's own tools.
PROXY = "127.0.0.2"
STRANGER, CLERK, PUBLIC = "203.0.113.66", "198.51.100.7", "203.0.113.80"
LIMITS = {
    "login_max_failures": 3,
    "login_address_max_failures": 5,
    "login_network_max_failures": 6,
    "login_user_max_failures": 8,
}
WARNING = "REVERSE PROXY NOT CONFIGURED"


@pytest.fixture
def court(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    """The app, with the clerk chen, and ``127.0.0.2`` (only) a trusted proxy."""
    add_user(session_factory, "chen", Role.CLERK)
    settings = make_settings(database_url, tmp_path, **LIMITS)
    settings = settings.model_copy(update={"http": HttpSettings(trusted_proxies=[PROXY])})  # type: ignore[list-item]
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield client


def peer(court: TestClient, address: str) -> TestClient:
    return TestClient(court.app, client=(address, 40000))


def stranger_guesses(client: TestClient, headers: dict[str, str]) -> list[int]:
    """The stranger's 20 wrong passwords for made-up usernames."""
    body = [{"username": f"x{n:04x}", "password": "nope nope nope"} for n in range(20)]
    return [client.post("/api/auth/login", json=one, headers=headers).status_code for one in body]


def clerk_signs_in(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    response = client.post("/api/auth/login", json={"username": "chen", "password": PASSWORD}, headers=headers)
    return response.status_code, response.text


def audited_addresses(session_factory: SessionFactory, action: str) -> list[str]:
    with session_factory() as session:
        query = select(AuditEntry.details).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return [details["ip"] for details in session.scalars(query)]


def test_no_proxy_each_client_is_its_socket(court: TestClient, session_factory: SessionFactory) -> None:
    assert stranger_guesses(peer(court, STRANGER), {})[-1] == 429
    assert clerk_signs_in(peer(court, CLERK), {})[0] == 200
    assert peer(court, PUBLIC).get("/metrics").status_code == 404
    assert peer(court, "127.0.0.1").get("/metrics").status_code == 200  # Prometheus on this machine
    assert audited_addresses(session_factory, "login") == [CLERK]


def test_a_trusted_proxy_that_appends_x_forwarded_for(court: TestClient, session_factory: SessionFactory) -> None:
    proxy = peer(court, PROXY)
    assert stranger_guesses(proxy, {"X-Forwarded-For": STRANGER})[-1] == 429  # the stranger's own throttle
    assert clerk_signs_in(proxy, {"X-Forwarded-For": CLERK})[0] == 200
    assert proxy.get("/metrics", headers={"X-Forwarded-For": PUBLIC}).status_code == 404
    assert proxy.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200  # a local client
    assert peer(court, "127.0.0.1").get("/metrics").status_code == 200  # Prometheus, not through the proxy
    assert audited_addresses(session_factory, "login") == [CLERK]  # the client, not the proxy


def test_a_spoofed_hop_through_a_trusted_proxy_changes_nothing(
    court: TestClient, session_factory: SessionFactory
) -> None:
    """The right-most hop that is not a trusted proxy is the client: what the stranger wrote to its left is not."""
    proxy = peer(court, PROXY)
    assert stranger_guesses(proxy, {"X-Forwarded-For": f"{CLERK}, {STRANGER}"})[-1] == 429
    assert clerk_signs_in(proxy, {"X-Forwarded-For": CLERK})[0] == 200
    assert proxy.get("/metrics", headers={"X-Forwarded-For": f"127.0.0.1, {PUBLIC}"}).status_code == 404


def test_a_trusted_proxy_that_does_not_append_refuses_sign_in_not_the_court(
    court: TestClient, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """nginx's default: no X-Forwarded-For. Every client would be the proxy; instead each is unknown: its sign-in
    refused (403, bilingual, nothing counted or audited) and the log says once what to configure. The same for a
    header naming only trusted proxies."""
    proxy = peer(court, PROXY)
    with caplog.at_level(logging.WARNING, logger="server.auth.client_address"):
        assert set(stranger_guesses(proxy, {})) == {403}
        status, text = clerk_signs_in(proxy, {})
        assert status == 403, text  # refused, not locked out (429) by the stranger
        assert "反向代理" in text and "reverse proxy is not configured" in text
        assert clerk_signs_in(proxy, {"X-Forwarded-For": PROXY})[0] == 403  # every hop trusted: no client named
        assert proxy.get("/metrics").status_code == 404
        assert clerk_signs_in(proxy, {"X-Forwarded-For": CLERK})[0] == 200  # once it appends: in
    warnings = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 2, warnings  # once per peer and problem (no header; only trusted hops)
    assert all(f"from {PROXY}" in warning for warning in warnings)
    assert audited_addresses(session_factory, "login.failed") == []
    assert audited_addresses(session_factory, "login") == [CLERK]


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_forwarding_headers_from_a_peer_not_trusted_are_ignored_and_said(
    court: TestClient, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    """A proxy on this machine left out of trusted_proxies (or a client pretending to be one): its headers are
    ignored — the peer is the client, for the throttle and the audit log — but its requests are not this machine's
    for /metrics, and the log says, once, that the proxy is not configured (its clients share one throttle)."""
    unlisted = peer(court, "127.0.0.1")
    value = f"for={STRANGER}" if header == "Forwarded" else STRANGER
    with caplog.at_level(logging.WARNING, logger="server.auth.client_address"):
        assert unlisted.get("/metrics", headers={header: value}).status_code == 404
        assert clerk_signs_in(unlisted, {header: CLERK if header != "Forwarded" else f"for={CLERK}"})[0] == 200
        assert unlisted.get("/metrics").status_code == 200  # this machine's own client, without the headers
    warnings = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert len(warnings) == 1 and "trusted_proxies" in warnings[0] and "/metrics is refused" in warnings[0], warnings
    assert audited_addresses(session_factory, "login") == ["127.0.0.1"]  # the socket's, not the header's


def test_the_sign_in_pages_say_why_in_the_reader_s_language(court: TestClient) -> None:
    """The pages (the court's and the debtors' portal) refuse an unknown client with a sentence, not an error page."""
    proxy = peer(court, PROXY)
    htmx = {"X-Requested-With": "htmx"}
    form = {"username": "chen", "password": PASSWORD}
    page = proxy.post("/login", data=form, headers=htmx, follow_redirects=False)
    assert page.status_code == 403 and "法院的反向代理未按要求配置" in page.text
    english = TestClient(court.app, client=(PROXY, 40000), cookies={"seal_lang": "en"})
    answer = english.post("/login", data=form, headers=htmx, follow_redirects=False)
    assert answer.status_code == 403 and "reverse proxy is not configured as it must be" in answer.text
    portal = proxy.post("/portal/login", data={"case_no": "(2021)苏0214执1号", "code": "AAAA"}, headers=htmx)
    assert portal.status_code == 403 and "法院的反向代理未按要求配置" in portal.text
