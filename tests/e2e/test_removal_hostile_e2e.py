"""The disarm's path as it goes wrong in the field, with the real parts: ``seal-server run`` as its own process, a
private Mosquitto, the real agent on gpiozero mock pins.

- The seal is offline longer than the disarm lives, and the clerk re-sends it meanwhile: when the seal is back, the
  broker hands it every disarm its session kept, it refuses each as expired (by its own clock), and the request says
  so — ``refused``, the seal armed — until a new disarm, sent while it listens, is acknowledged.
- The court server restarts between the disarm's publication and the seal's answer: the command is published once,
  the seal answers once, and the restarted server settles the request from the acknowledgement it finds.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from gpiozero.pins.mock import MockFactory

from seal_dev.broker import PrivateBroker
from server.core.db import make_engine, make_session_factory, session_scope
from server.seals.registry import register_seal
from tests.agent.helpers import RuntimeFactory, verify_key, wait_until
from tests.e2e.test_removal_e2e import CASE, SEAL, Court, CourtServer, MovableClock, install_court
from tests.server.removal_world import pdf_bytes

#: The disarm's life when the seal stays away longer than that: long enough for the broker to take it on a loaded
#: machine (an expired command is not published), short enough to wait out.
TTL_S = 8
#: The disarm's life across a court restart: the seal must get it after the server stopped and the seal started.
RESTART_TTL_S = 120


@contextmanager
def _running_court(
    tmp_path: Path, broker: PrivateBroker, database_url: str, ttl_s: float
) -> Iterator[tuple[CourtServer, Path]]:
    config, seal_config = install_court(tmp_path, broker, database_url, ttl_s=ttl_s)
    server = CourtServer(config, tmp_path / "server.log")
    try:
        server.start()
        yield server, seal_config
    finally:
        server.api.http.close()
        server.stop()


@pytest.fixture
def installed(tmp_path: Path, broker: PrivateBroker, database_url: str) -> Iterator[tuple[CourtServer, Path]]:
    with _running_court(tmp_path, broker, database_url, TTL_S) as running:
        yield running


@pytest.fixture
def installed_long(tmp_path: Path, broker: PrivateBroker, database_url: str) -> Iterator[tuple[CourtServer, Path]]:
    with _running_court(tmp_path, broker, database_url, RESTART_TTL_S) as running:
        yield running


def _register(database_url: str, seal_config: Path) -> None:
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            key = base64.b64encode(bytes(verify_key(seal_config))).decode("ascii")
            register_seal(session, actor=None, device_id=SEAL, case_no=CASE, public_key=key, location="仓库大门")
    finally:
        engine.dispose()


def _filed(api: Court) -> int:
    """The debtor signs in with the access code the clerk issued and files; return the request's id."""
    for who in ("clerk", "judge", "officer"):
        api.login(who)
    case = quote(CASE, safe="")
    code = api.call("clerk", "POST", f"/api/cases/{case}/access-code", status=201)["code"]
    signed_in = api.http.post("/api/auth/access-code", json={"case_no": CASE, "code": code})
    assert signed_in.status_code == 200, signed_in.text
    api.tokens["debtor"] = signed_in.json()["access_token"]
    filed = api.call(
        "debtor",
        "POST",
        f"/api/cases/{case}/removal-requests",
        status=201,
        data={"ground": "paid_in_full", "statement": "案款已全部付清。"},
        files=[("files", ("回单.pdf", pdf_bytes(), "application/pdf"))],
    )
    request_id: int = filed["request_id"]
    return request_id


def _seal(api: Court, request_id: int) -> dict[str, Any]:
    [seal] = api.request(request_id)["seals"]
    return dict(seal)


def _approved(api: Court, request_id: int) -> int:
    """The judge takes the request up and approves it; the id of the disarm sent to its one seal."""
    api.call("judge", "POST", f"/api/removal-requests/{request_id}/review", json={"note": "受理"})
    approved = api.call("judge", "POST", f"/api/removal-requests/{request_id}/approve", json={"reasons": "已清偿"})
    return int(approved["seals"][0]["command_id"])


def _accepted(api: Court, command_id: int) -> bool:
    return api.call("judge", "GET", f"/api/commands/{command_id}")["broker_accepted_at"] is not None


def _events(api: Court, kind: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = api.call("judge", "GET", f"/api/cases/{quote(CASE, safe='')}/events?type={kind}")[
        "events"
    ]
    return events


def _filed_then_away(
    installed: tuple[CourtServer, Path], runtimes: RuntimeFactory, database_url: str
) -> tuple[CourtServer, Path, MovableClock, int]:
    """The seal connects once (the broker keeps a session for it from then on) and is heard; the debtor files; the
    seal goes away. Returns the server, the seal's configuration, its clock and the request's id."""
    server, seal_config = installed
    clock = MovableClock()
    first = runtimes(seal_config, clock=clock)
    _register(database_url, seal_config)
    first.start()
    request_id = _filed(server.api)
    heard = lambda: server.api.call("judge", "GET", f"/api/seals/{SEAL}")["last_event_at"] is not None  # noqa: E731
    assert wait_until(heard, 30)
    first.close()
    return server, seal_config, clock, request_id


@pytest.mark.timeout(300)
def test_a_seal_away_longer_than_its_disarms_live_never_gets_them_and_a_new_one_is_carried_out(
    installed: tuple[CourtServer, Path], runtimes: RuntimeFactory, mock_pins: MockFactory, database_url: str
) -> None:
    server, seal_config, clock, request_id = _filed_then_away(installed, runtimes, database_url)
    api = server.api

    sent = [_approved(api, request_id)]
    assert wait_until(lambda: _accepted(api, sent[0]), 30), server.log.read_text()
    assert wait_until(lambda: _seal(api, request_id)["status"] == "waiting_for_seal", TTL_S + 30)
    assert wait_until(lambda: api.call("judge", "GET", f"/api/commands/{sent[0]}")["state"] == "expired", 30)
    # The clerk re-sends while the seal is still away: the broker keeps that one for it as well.
    again = api.call("clerk", "POST", f"/api/removal-requests/{request_id}/resend-disarm", json={})
    sent.append(again["seals"][0]["command_id"])
    assert sent[1] > sent[0] and wait_until(lambda: _accepted(api, sent[1]), 30)
    assert wait_until(lambda: _seal(api, request_id)["status"] == "waiting_for_seal", TTL_S + 30)

    assert wait_until(lambda: api.call("judge", "GET", f"/api/commands/{sent[1]}")["state"] == "expired", TTL_S + 30)

    # Back: both disarms were published with their lifetime as the message's expiry (MQTT v5): the broker dropped
    # them from the seal's session, so the seal never obeys a stale disarm nor signs a refusal; the request waits.
    second = runtimes(seal_config, clock=clock)
    second.start()
    assert api.request(request_id)["state"] == "disarm_pending"
    assert second.agent.armed
    assert api.call("officer", "POST", f"/api/removal-requests/{request_id}/lifted", status=409, json={})

    # A new disarm while it listens is carried out and acknowledged: disarmed, then lifted.
    third = api.call("judge", "POST", f"/api/removal-requests/{request_id}/resend-disarm", json={})
    assert third["seals"][0]["commands"] == 3
    assert wait_until(lambda: api.request(request_id)["state"] == "disarmed", 30), server.log.read_text()
    assert not second.agent.armed and _seal(api, request_id)["status"] == "disarmed"
    # Behind the stale ones in the seal's session, had the broker kept them: they never reached it.
    assert [api.call("judge", "GET", f"/api/commands/{i}")["state"] for i in sent] == ["expired"] * 2
    assert _events(api, "command_rejected") == []
    lifted = api.call("officer", "POST", f"/api/removal-requests/{request_id}/lifted", json={"note": "现场拆除"})
    assert lifted["state"] == "lifted"


@pytest.mark.timeout(300)
def test_a_court_restart_between_the_disarm_and_its_ack_settles_once(
    installed_long: tuple[CourtServer, Path], runtimes: RuntimeFactory, mock_pins: MockFactory, database_url: str
) -> None:
    server, seal_config, clock, request_id = _filed_then_away(installed_long, runtimes, database_url)
    api = server.api

    command_id = _approved(api, request_id)
    assert wait_until(lambda: _accepted(api, command_id), 30), server.log.read_text()
    server.stop()  # the court goes down with the disarm in the broker, the seal still away

    second = runtimes(seal_config, clock=clock)
    second.start()
    assert wait_until(lambda: not second.agent.armed, 30)  # it obeyed while the court was down
    server.start()
    for who in ("judge", "officer"):
        api.login(who)
    assert wait_until(lambda: api.request(request_id)["state"] == "disarmed", 30), server.log.read_text()
    shown = api.call("judge", "GET", f"/api/commands/{command_id}")
    assert (shown["state"], shown["publish_attempts"], shown["result"]["result"]) == ("acknowledged", 1, "disarmed")
    assert [e["payload"]["command_id"] for e in _events(api, "command_ack")] == [command_id]
    assert _events(api, "command_rejected") == []
    lifted = api.call("officer", "POST", f"/api/removal-requests/{request_id}/lifted", json={"note": "现场拆除"})
    assert lifted["state"] == "lifted"
