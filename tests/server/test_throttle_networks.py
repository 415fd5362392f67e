"""One holder of many IPv6 /64s — a home line's /56, a /48 — is one network to the login throttle: its /64s, each
within its own limits, cannot add them up to a user's brake, so one home line cannot lock a judge (password) or a
debtor (access code) out. IPv4 addresses are not grouped.

The windows are an hour long, so that no failure leaves them while a test runs, however slow the machine: the
outcomes follow from the counts alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from server.app import create_app
from server.core.db import SessionFactory
from tests.server.auth_helpers import PASSWORD, make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, c, make_world

#: 3 failures per (username, /64), 5 per /64, 6 per IPv6 /48, 8 per username (the brake); all within an hour.
LIMITS = {
    "login_max_failures": 3,
    "login_address_max_failures": 5,
    "login_network_max_failures": 6,
    "login_user_max_failures": 8,
    "login_window_s": 3600,
    "login_user_window_s": 3600,
}
#: The 256 /64s of one home line's 2001:db8:0:ab00::/56 (of the /48 2001:db8::/48).
HOME = [f"2001:db8:0:ab{n:02x}::{n + 1:x}" for n in range(256)]
#: The court's own network, and another IPv6 customer's /48.
COURT, NEIGHBOUR = "203.0.113.24", "2001:db8:1::1"


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path, **LIMITS)
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def post(world: RemovalWorld, address: str, path: str, body: dict[str, str]) -> Response:
    """``body`` posted to ``path`` from the socket address ``address``."""
    return TestClient(world.client.app, client=(address, 40000)).post(path, json=body)


def password(world: RemovalWorld, address: str, secret: str = PASSWORD, username: str = "judge") -> Response:
    return post(world, address, "/api/auth/login", {"username": username, "password": secret})


def code(world: RemovalWorld, address: str, secret: str) -> Response:
    return post(world, address, "/api/auth/access-code", {"case_no": CASE_A, "code": secret})


def test_one_home_line_cannot_lock_the_judge_out(world: RemovalWorld) -> None:
    """12 of the home line's /64s guess the judge's password twice each (below the pair limit of 3, and the address
    limit of 5): 24 guesses would pass the judge's brake of 8. Its /48 is one network, refused after 6 failures, so
    the brake is never reached and the judge signs in from the court's network with the right password."""
    attack = [password(world, HOME[n // 2], "a wrong guess!") for n in range(24)]
    assert password(world, COURT).status_code == 200  # the judge, from the court
    assert [a.status_code for a in attack] == [401] * 6 + [429] * 18
    assert all("for this network;" in a.json()["detail"] for a in attack[6:]), attack[6].json()
    assert "此网络登录失败次数过多" in attack[6].json()["detail"] and int(attack[6].headers["Retry-After"]) > 0
    # The whole /48 waits — from a /64 not used yet, with the right password, for another user too —; another
    # customer's /48 does not.
    assert password(world, HOME[200]).status_code == 429
    assert password(world, HOME[201], username="clerk").status_code == 429
    assert password(world, NEIGHBOUR).status_code == 200


def test_one_home_line_cannot_lock_the_debtor_out(world: RemovalWorld) -> None:
    """The debtor portal's code sign-in, throttled as the password's (the case counting as the username): 12 of the
    home line's /64s, 2 wrong codes each, are refused after 6 and never reach the case's brake; the debtor's right
    code works from elsewhere, and waits from the home line."""
    issued = world.client.post(f"/api/cases/{c(CASE_A)}/access-code", headers=world.as_("clerk"))
    assert issued.status_code == 201, issued.text
    attack = [code(world, HOME[n // 2], "2222-2222-2222-2222") for n in range(24)]
    assert code(world, COURT, issued.json()["code"]).status_code == 200
    assert [a.status_code for a in attack] == [401] * 6 + [429] * 18
    assert all("for this network;" in a.json()["detail"] for a in attack[6:])
    assert code(world, HOME[200], issued.json()["code"]).status_code == 429


def test_ipv4_addresses_are_not_grouped(world: RemovalWorld) -> None:
    """IPv4 is throttled per address, as before: 7 guesses from 4 neighbouring addresses (more than one IPv6 /48 may
    fail) are all answered, and the judge, the 8th failure within the brake, still signs in from the next one."""
    statuses = [password(world, f"198.51.100.{40 + n // 2}", "a wrong guess!").status_code for n in range(7)]
    assert statuses == [401] * 7
    assert password(world, "198.51.100.44").status_code == 200
